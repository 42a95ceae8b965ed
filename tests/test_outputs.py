import pytest

from cs336.errors import CS336Error
from cs336.outputs import output_dir, output_file, write_atomic


def test_output_file_creates_its_parent_and_refuses_a_directory(tmp_path):
    assert output_file(tmp_path / "a" / "b" / "ids.npy") == tmp_path / "a" / "b" / "ids.npy"
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "ids.npy").exists()
    with pytest.raises(CS336Error, match="is a directory; give a file name"):
        output_file(tmp_path / "a")


def test_a_file_in_the_way_of_a_directory_is_named(tmp_path):
    (tmp_path / "f").write_text("keep me")
    with pytest.raises(CS336Error, match=r"output directory .*f is a file"):
        output_dir(tmp_path / "f")
    with pytest.raises(CS336Error, match=r"cannot create .*f is a file"):
        output_dir(tmp_path / "f" / "sub", create=False)
    with pytest.raises(CS336Error, match="cannot create"):
        output_file(tmp_path / "f" / "sub" / "x.npy")
    assert (tmp_path / "f").read_text() == "keep me"


def test_checking_only_creates_nothing(tmp_path):
    assert output_dir(tmp_path / "x" / "y", create=False) == tmp_path / "x" / "y"
    assert not (tmp_path / "x").exists()
    output_dir(tmp_path / "x" / "y")
    assert (tmp_path / "x" / "y").is_dir()


def test_an_unwritable_directory_is_refused(tmp_path, monkeypatch):
    # simulated: the tests may run as root, for whom permission bits mean nothing
    monkeypatch.setattr("cs336.outputs.os.access", lambda path, mode: False)
    with pytest.raises(CS336Error, match="permission denied"):
        output_dir(tmp_path)
    with pytest.raises(CS336Error, match="permission denied"):
        output_dir(tmp_path / "new", create=False)
    with pytest.raises(CS336Error, match="permission denied"):
        output_file(tmp_path / "ids.npy", "output")


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_atomic(path, "old\n")
    write_atomic(path, b"new\n")
    assert path.read_text() == "new\n"

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cs336.outputs.os.replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, "half")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
