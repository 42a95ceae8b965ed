import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from cs336.errors import CS336Error
from cs336.figures import save_figure


def a_figure(seed: int = 0):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [seed, 1, 0], label="a")
    ax.legend()
    return fig


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_saving_a_figure_twice_writes_identical_bytes(tmp_path, suffix):
    # separate figures and separate files: nothing may depend on the time or on object ids
    first = save_figure(a_figure(), tmp_path / f"a.{suffix}", close=True).read_bytes()
    second = save_figure(a_figure(), tmp_path / f"b.{suffix}", close=True).read_bytes()
    assert first == second
    assert matplotlib.__version__.encode() not in first  # no "Matplotlib version x.y" stamp


def test_a_different_figure_gives_different_bytes(tmp_path):
    assert save_figure(a_figure(0), tmp_path / "a.png").read_bytes() != save_figure(a_figure(1), tmp_path / "b.png").read_bytes()


def test_svg_ids_do_not_change_the_global_settings(tmp_path):
    salt = plt.rcParams["svg.hashsalt"]
    save_figure(a_figure(), tmp_path / "a.svg", close=True)
    assert plt.rcParams["svg.hashsalt"] == salt


def test_unknown_format_and_directory_target_are_errors(tmp_path):
    fig = a_figure()
    with pytest.raises(CS336Error, match=r"\.png, \.svg or \.pdf"):
        save_figure(fig, tmp_path / "a.jpeg")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(CS336Error, match="is a directory"):
        save_figure(fig, tmp_path / "d.png")
    plt.close(fig)


def test_close_frees_the_figure(tmp_path):
    fig = a_figure()
    save_figure(fig, tmp_path / "a.png", close=True)
    assert not plt.fignum_exists(fig.number)
