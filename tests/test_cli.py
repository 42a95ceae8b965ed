import argparse
import subprocess
import sys

import pytest

from cs336.cli import _positive_int, build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cs336" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "cs336", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: cs336" in out.stdout


def all_parsers(parser=None, prefix=()):
    """(command words, parser) for every subcommand and sub-subcommand."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name), child
                yield from all_parsers(child, (*prefix, name))


def optional_with_a_value(parser, action) -> bool:
    """An option that takes a value and may be left out (not one of a required either-or pair)."""
    in_required_group = any(action in g._group_actions and g.required for g in parser._mutually_exclusive_groups)
    return bool(action.option_strings) and action.nargs != 0 and not action.required and not in_required_group


@pytest.mark.parametrize("words, parser", list(all_parsers()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_help_describes_the_command_and_every_option(words, parser, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert parser.description, f"cs336 {' '.join(words)} has no description"
    for action in parser._actions:
        assert action.help, f"cs336 {' '.join(words)}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("words, parser", list(all_parsers()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_option_that_may_be_left_out_shows_its_default(words, parser):
    """As `--help` prints it: the value itself where there is one, else what happens without it."""
    options = [a for a in parser._actions if optional_with_a_value(parser, a)]
    for action in options:
        shown = parser._get_formatter()._expand_help(action)
        if action.default in (None, []):
            assert "default: " in shown, f"cs336 {' '.join(words)} {action.option_strings[0]}: {shown!r}"
        else:
            assert f"(default: {action.default})" in shown, f"cs336 {' '.join(words)} {action.option_strings[0]}: {shown!r}"


def test_every_count_option_takes_whole_numbers_from_one(capsys):
    whole = {(*words, a.option_strings[0]): a.type for words, p in all_parsers() for a in p._actions if a.type in (int, _positive_int)}
    assert [k for k, t in whole.items() if t is int] == [("generate", "--seed")]  # a seed may be 0: not a count
    assert ("sweep", "--parallel") in whole and ("train-bpe", "--workers") in whole and ("encode", "--workers") in whole
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--run", "r", "--prompt", "p", "--max-new-tokens", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: argument --max-new-tokens: must be at least 1, got 0 (see `cs336 generate --help`)\n"


def test_top_level_help_lists_commands_in_pipeline_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    positions = [out.index(f"\n    {name} ") for name in ("train-bpe", "encode", "train", "generate", "export")]
    assert positions == sorted(positions)
