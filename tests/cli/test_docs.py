"""The README documents every option of every command (a flag nobody can find does not exist)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bulksync.cli import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def options(parser: argparse.ArgumentParser, path: str = "bulksync") -> dict[str, set[str]]:
    found: dict[str, set[str]] = {path: set()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(options(sub, f"{path} {name}"))
        else:
            found[path].update(flag for flag in action.option_strings if flag.startswith("--") and flag != "--help")
    return found


def test_every_option_is_in_the_readme() -> None:
    missing = {
        command: sorted(flag for flag in flags if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", README))
        for command, flags in options(build_parser()).items()
    }
    assert {command: flags for command, flags in missing.items() if flags} == {}


def test_every_command_is_in_the_readme() -> None:
    assert all(f"{command}" in README for command in options(build_parser()) if command != "bulksync")
