"""The README documents every option of every command (a flag nobody can find does not exist)."""

from __future__ import annotations

import argparse
import functools
import inspect
import re
import shutil
from pathlib import Path

import pytest

import bulksync
from bulksync.cli import build_parser
from bulksync.config import SYNC_OPTIONS, Runtime
from bulksync.emulator import LoopsEmulator
from tests.helpers import API_KEY, IN_PROCESS_URL, SAMPLE_DATA, FakeClock

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


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


def python_example() -> str:
    section = README.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_python_example_runs_against_loops(
    emulator: LoopsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sample_data").mkdir()
    shutil.copy(SAMPLE_DATA / "contacts.csv", tmp_path / "sample_data" / "contacts.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", IN_PROCESS_URL)
    clock = FakeClock()  # the example's 53 requests at 10/s take no real time
    runtime = Runtime(transport=emulator.transport(), clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(bulksync, "sync", functools.partial(bulksync.sync, runtime=runtime))

    exec(compile(python_example(), "README.md", "exec"), {})

    assert capsys.readouterr().out == (
        "47 created, 0 updated, 0 deleted, 0 unchanged, 5 rejected, 0 failed in 53 requests; "
        "report: reports/nightly.csv\n"
    )
    assert len(emulator.contacts()) == 47 and (tmp_path / "reports" / "nightly.csv").exists()


def test_every_sync_option_is_a_python_option() -> None:
    """``bulksync.sync(**options)`` takes every long option of ``bulksync sync``, underscored."""
    explicit = {"--dry-run", "--state", "--report", "--base-url", "--no-progress"}  # named parameters
    logging = {"--verbose", "--debug", "--log-file", "--log-format"}  # the logger's business, not the run's
    flags = options(build_parser())["bulksync sync"] - explicit - logging
    assert sorted(flag[2:].replace("-", "_") for flag in flags) == sorted(SYNC_OPTIONS)
    assert set(inspect.signature(bulksync.sync).parameters) >= {"api_key", "base_url", "dry_run", "progress",
                                                                "report", "state", "source"}
