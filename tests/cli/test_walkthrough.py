"""The README's migration walkthrough and nightly command, run as written (against the emulator)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bulksync.emulator import EmulatorServer, Faults
from bulksync.state import open_state
from tests.helpers import finish, spawn, wait_for_contacts

ROWS = 300


def kit_export(path: Path) -> Path:
    lines = ["first_name,email,state,created_at,confirmed_at,tags,source,company"]
    for i in range(ROWS):
        state = "cancelled" if i % 7 == 0 else "active"
        lines.append(f"Name{i},person{i}@example.com,{state},2021-03-04T10:22:11Z,2021-03-04T10:25:40Z,"
                     f'"News, Jazz",Homepage form,')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_migration_walkthrough(cli: Any, loops: EmulatorServer, workdir: Path) -> None:
    emulator = loops.emulator
    kit_export(workdir / "export.csv")

    check = cli("check", "export.csv", "--preset", "kit")  # 1. preflight
    assert check.status == 1 and "Properties that do not exist in Loops yet" in check.out

    plan = cli("sync", "export.csv", "--preset", "kit", "--state", "migration.db", "--dry-run",  # 2.
               "--plan", "migration.plan", report=False)
    assert plan.status == 0 and (workdir / "migration.plan").exists()
    assert re.search(rf"would be created +{ROWS}\n", plan.out)
    assert emulator.contacts() == []

    trial = cli("sync", "export.csv", "--preset", "kit", "--state", "migration.db", "--create-properties",  # 3.
                "--limit", "100", report=False, create_properties=False)
    assert trial.status == 0 and len(emulator.contacts()) == 100

    emulator.configure(faults=Faults(latency_ms=20))
    full = spawn(loops, workdir, "sync", "export.csv", "--preset", "kit", "--state", "migration.db",  # 4.
                 "--report-dir", "reports", "--rate-limit", "60")
    wait_for_contacts(emulator, 150)
    full.kill()  # 5. interrupted ...
    finish(full)
    assert 100 < len(emulator.contacts()) < ROWS

    again = cli("sync", "export.csv", "--preset", "kit", "--state", "migration.db",  # ... and run again
                "--create-properties", "--report-dir", "reports", report=False, create_properties=False)
    assert again.status == 0
    held = {c["email"]: c for c in emulator.contacts()}
    assert sorted(held) == sorted(f"person{i}@example.com" for i in range(ROWS))
    assert [i for i in range(ROWS) if held[f"person{i}@example.com"]["subscribed"] is False] == list(range(0, ROWS, 7))
    with open_state(workdir / "migration.db", readonly=True) as state:
        assert state.count() == ROWS


def test_nightly_command(cli: Any, loops: EmulatorServer, workdir: Path) -> None:
    (workdir / "exports").mkdir()
    (workdir / "exports" / "users.csv").write_text((workdir / "contacts.csv").read_text())
    nightly = ("sync", "exports/users.csv", "--state", "state/users.db", "--report-dir", "reports",
               "--log-file", "logs/bulksync.log", "--delete-missing")

    first = cli(*nightly, report=False)
    before = loops.emulator.stats()["requests"]
    second = cli(*nightly, report=False)

    assert (first.status, second.status) == (0, 0)
    assert loops.emulator.stats()["requests"] - before == 1  # nothing changed: the key check only
    assert len(list((workdir / "reports").glob("*-report.csv"))) == 2
    assert len(list((workdir / "reports").glob("*-summary.json"))) == 2
    assert (workdir / "logs" / "bulksync.log").exists()
