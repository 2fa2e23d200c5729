"""What many tests share: the sample data, the CLI's captured result, and looks into the emulator.

Fixtures live in conftest.py; plain helpers live here, and tests import them from here only.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.generate import contacts, write
from bulksync.config import SyncConfig, sync_config
from bulksync.emulator import EmulatorServer, LoopsEmulator
from bulksync.location import StateLocation
from bulksync.state import open_state

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
API_KEY = "test-key"
IN_PROCESS_URL = "http://127.0.0.1:9/api"  # never dialled: the emulator's transport answers in-process


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


WRITES = ("POST /v1/contacts/create", "PUT /v1/contacts/update", "POST /v1/contacts/delete")


def writes(emulator: LoopsEmulator, since: int = 0) -> list[dict[str, Any]]:
    """Write requests the emulator received, from the ``since``-th request of its log on."""
    return [r for r in emulator.request_log()[since:] if f"{r['method']} {r['path']}" in WRITES]


def by_email(emulator: LoopsEmulator) -> dict[str, dict[str, Any]]:
    return {c["email"]: c for c in emulator.contacts()}


def spawn(
    loops: EmulatorServer, workdir: Path, *args: str, key: str = API_KEY, stdin: Any = None
) -> subprocess.Popen[str]:
    """``bulksync ARGS`` as a process of its own; ``stdin``: what it reads as standard input (a pipe)."""
    env = {**os.environ, "LOOPS_API_KEY": key, "LOOPS_BASE_URL": loops.url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "bulksync", *args, "--create-properties"], cwd=workdir, env=env, text=True,
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(run: subprocess.Popen[str], timeout: float = 120) -> int:
    """Wait for the process and close its pipes; its exit status."""
    run.communicate(timeout=timeout)
    return run.returncode


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


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a child process's progress, seen in the emulator) instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def wait_for_contacts(emulator: LoopsEmulator, count: int) -> None:
    """Wait until the emulator holds ``count`` contacts: a child run's progress, to act on mid-run."""
    wait_until(lambda: len(emulator.contacts()) >= count, f"{count} contacts in the emulator")


class FakeClock:
    """Time that passes only when someone sleeps: throttles, retries and the emulator's rate limit run
    at full speed and exactly, with every wait recorded in ``slept``."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)


def run_config(source: str = "contacts.csv", **options: Any) -> SyncConfig:
    """A run's config as ``bulksync sync SOURCE --state state.db --report report.csv`` would make it."""
    options.setdefault("summary_json", "summary.json")
    options.setdefault("report", "report.csv")
    return sync_config(source, "state.db", api_key=API_KEY, base_url=IN_PROCESS_URL, environ={}, **options)


def report_rows(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "report.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def state_fields(workdir: Path) -> dict[str, dict[str, str]]:
    with open_state(workdir / "state.db", readonly=True) as state:
        return dict(state.contacts())


def api_create(client: httpx.Client, **body: Any) -> httpx.Response:
    """``POST /v1/contacts/create`` through a client of the emulator."""
    return client.post("/v1/contacts/create", json=body)


def api_update(client: httpx.Client, **body: Any) -> httpx.Response:
    """``PUT /v1/contacts/update`` through a client of the emulator."""
    return client.put("/v1/contacts/update", json=body)


def api_find(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """``GET /v1/contacts/find``, which must answer 200."""
    response = client.get("/v1/contacts/find", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def generated(workdir: Path, rows: int, name: str = "people.csv") -> Path:
    """A CSV of ``rows`` generated contacts: user<i>@example.com, First<i>, u<i>, every 17th unsubscribed."""
    return write(contacts(0, rows, 2), workdir / name)


def emails_in_state(location: StateLocation) -> set[str]:
    with open_state(location, readonly=True) as state:
        return {key for key, _ in state.contacts()}


def assert_loops_equals_source(emulator: LoopsEmulator, rows: int) -> None:
    """Loops holds exactly the ``rows`` contacts of :func:`generated`, each as the source has it."""
    held = {c["email"]: c for c in emulator.contacts()}
    assert sorted(held) == sorted(f"user{i}@example.com" for i in range(rows))
    for i in range(rows):
        contact = held[f"user{i}@example.com"]
        assert (contact["firstName"], contact["userId"]) == (f"First{i}", f"u{i}")
        assert contact["subscribed"] is (i % 17 != 0)
