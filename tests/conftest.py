"""Shared fixtures: a real emulator on 127.0.0.1, and the CLI run in-process with captured output."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bulksync.cli import main
from bulksync.emulator.core import LoopsEmulator
from bulksync.emulator.server import EmulatorServer

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
API_KEY = "test-key"


@dataclass
class CliResult:
    status: int
    out: str
    err: str
    workdir: Path

    def summary(self) -> dict[str, Any]:
        return json.loads((self.workdir / "summary.json").read_text())  # type: ignore[no-any-return]

    def report(self) -> list[dict[str, str]]:
        with open(self.workdir / "report.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


@pytest.fixture
def loops() -> Iterator[EmulatorServer]:
    """The emulator behind a real server, with no rate limit: tests that need one configure it."""
    with EmulatorServer(LoopsEmulator(api_key=API_KEY, rate_limit=0, seed=1)) as server:
        yield server


@pytest.fixture
def emulator(loops: EmulatorServer) -> LoopsEmulator:
    return loops.emulator


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("contacts.csv", "contacts.jsonl", "contacts_changed.csv"):
        shutil.copy(SAMPLE_DATA / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def cli(workdir: Path, monkeypatch: pytest.MonkeyPatch, loops: EmulatorServer) -> Any:
    """Run ``bulksync ARGS`` against the emulator; report and summary go to fixed names in workdir."""
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", loops.url)

    def run(*args: str, report: bool = True, sleep: Any = None, create_properties: bool = True) -> CliResult:
        """``create_properties``: custom columns get their Loops property made on first use."""
        argv = list(args)
        if argv and argv[0] == "sync" and report:
            argv += ["--report", "report.csv", "--summary-json", "summary.json"]
        if argv and argv[0] == "sync" and create_properties and "--dry-run" not in argv:
            argv += ["--create-properties"]
        if argv and argv[0] == "sync" and "--rate-limit" not in argv:
            argv += ["--rate-limit", "1000"]
        out, err = io.StringIO(), io.StringIO()
        status = main(argv, out=out, err=err, sleep=sleep)
        return CliResult(status, out.getvalue(), err.getvalue(), workdir)

    return run


def expected_contacts(path: Path) -> dict[str, dict[str, str]]:
    """The valid contacts of a sample CSV as the emulator should hold them (last row wins)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    contacts: dict[str, dict[str, str]] = {}
    for row in rows:
        email = row["email"].strip().lower()
        if "@" not in email or row["subscribed"] not in ("true", "false", "yes", "no", "1", "0"):
            continue
        if any(len(value) > 498 for value in row.values()):
            continue
        contacts[email] = row
    return contacts
