import argparse
import subprocess
import sys

import pytest

from cs336.cli import build_parser, main


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


@pytest.mark.parametrize("words, parser", list(all_parsers()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_help_describes_the_command_and_every_option(words, parser, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert parser.description, f"cs336 {' '.join(words)} has no description"
    for action in parser._actions:
        assert action.help, f"cs336 {' '.join(words)}: {action.option_strings or action.dest} has no help"
        has_default = action.default not in (None, False, [], argparse.SUPPRESS) and not action.required
        if has_default and action.option_strings:
            assert "default" in action.help, f"cs336 {' '.join(words)} {action.option_strings[0]}: default not shown"


def test_top_level_help_lists_commands_in_pipeline_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    positions = [out.index(f"\n    {name} ") for name in ("train-bpe", "encode", "train", "generate", "export")]
    assert positions == sorted(positions)
