"""README.md is true to the code: its command tables name every flag the parser has, and only those."""

import argparse
import re
from pathlib import Path

from resnet_limits.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands_section() -> str:
    text = README.read_text()
    return text[text.index("## Commands"):text.index("## Side effects")]


def _parser_flags() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
            for name, p in sub.choices.items()}


def test_every_command_and_flag_is_in_the_readme():
    section = _commands_section()
    for command, flags in _parser_flags().items():
        assert f"resnet-limits {command}" in section, command
        missing = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", section))
        assert not missing, f"README's Commands section lacks {command} {missing}"


def test_every_flag_in_the_readme_exists():
    known = set().union(*_parser_flags().values())
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", _commands_section()))
    assert named <= known, sorted(named - known)


def test_the_quick_start_is_two_commands():
    text = README.read_text()
    block = text[text.index("## Quick start"):].split("```")[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert len(lines) == 2 and lines[1] == "python -m pytest -q"
