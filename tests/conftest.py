"""Shared fixtures: the emulator (in-process, or behind a real server on 127.0.0.1) and the CLI run
in-process with captured output."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulksync.cli import main
from bulksync.config import Runtime
from bulksync.emulator import EmulatorServer, LoopsEmulator
from tests.helpers import API_KEY, IN_PROCESS_URL, SAMPLE_DATA, CliResult, FakeClock


@pytest.fixture
def emulator() -> LoopsEmulator:
    """The emulated Loops team, with no rate limit: tests that need one configure it."""
    return LoopsEmulator(api_key=API_KEY, rate_limit=0, seed=1)


@pytest.fixture
def loops(emulator: LoopsEmulator) -> Iterator[EmulatorServer]:
    """The same emulator behind a real server on 127.0.0.1, for tests of sockets, timeouts and processes."""
    with EmulatorServer(emulator) as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BULKSYNC_STATE", raising=False)  # a developer's own state stays out of the tests
    for name in ("contacts.csv", "contacts.jsonl", "contacts_changed.csv"):
        shutil.copy(SAMPLE_DATA / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def cli(workdir: Path, monkeypatch: pytest.MonkeyPatch, emulator: LoopsEmulator, request: pytest.FixtureRequest) -> Any:
    """Run ``bulksync ARGS`` against the emulator, in-process (through a real socket when the test
    also asks for ``loops``); report and summary go to fixed names in workdir."""
    socket = "loops" in request.fixturenames
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", request.getfixturevalue("loops").url if socket else IN_PROCESS_URL)

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
        status = main(argv, out=out, err=err, sleep=sleep, transport=None if socket else emulator.transport())
        return CliResult(status, out.getvalue(), err.getvalue(), workdir)

    return run


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def team(clock: FakeClock) -> LoopsEmulator:
    """A Loops team limited to 10 requests a second, as Loops is, on the fake clock."""
    return LoopsEmulator(api_key=API_KEY, rate_limit=10, clock=clock, seed=1)


@pytest.fixture
def runtime(team: LoopsEmulator, clock: FakeClock) -> Runtime:
    return Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep)
