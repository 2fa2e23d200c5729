"""Reliability: the run lock, signals, kill -9 and resume, shared rate budget, timeouts, secrets.

Tests that kill or signal a run start the CLI as its own process against the emulator.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.state.lock import lock_path, run_lock
from tests.helpers import (
    assert_loops_equals_source,
    emails_in_state,
    finish,
    generated,
    spawn,
    wait_for_contacts,
)

# -- one run at a time -------------------------------------------------------------------------------


def test_second_run_refuses_naming_the_running_one(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    with run_lock(workdir / "bulksync.state.db"):
        result = cli("sync", "contacts.csv")

    assert result.status == 2
    expected = f"bulksync: error: bulksync.state.db is in use by another bulksync run (pid {os.getpid()} on "
    assert result.err.startswith(expected)
    assert ", started 20" in result.err and result.err.endswith("wait for it to finish, or stop it\n")
    assert emulator.stats()["requests"] == 0


def test_lock_left_by_a_killed_run_is_taken_over(cli: Any, workdir: Path) -> None:
    lock_path(workdir / "bulksync.state.db").write_text(
        json.dumps({"pid": 999999, "host": "gone", "started": "2026-01-01T00:00:00Z"})
    )

    result = cli("sync", "contacts.csv")

    assert result.status == 0
    assert "taking over the lock of pid 999999 on gone, started 2026-01-01T00:00:00Z" in result.err
    assert lock_path(workdir / "bulksync.state.db").read_text() == ""  # released cleanly


def test_dry_run_needs_no_lock(cli: Any, workdir: Path) -> None:
    with run_lock(workdir / "bulksync.state.db"):
        assert cli("sync", "contacts.csv", "--dry-run").status == 0


# -- signals and kill -9 -------------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_saves_state_and_exits_143(loops: EmulatorServer, workdir: Path) -> None:
    loops.emulator.configure(faults=Faults(latency_ms=50))
    generated(workdir, 200)
    run = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "40", "--summary-json", "summary.json",
                "--report", "report.csv")
    wait_for_contacts(loops.emulator, 10)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)

    assert run.returncode == 143, err
    assert "stopping: finishing requests in flight" in err
    summary = json.loads((workdir / "summary.json").read_text())
    done = emails_in_state(workdir / "bulksync.state.db")
    assert 0 < summary["created"] == len(done) < 200
    assert done == {c["email"] for c in loops.emulator.contacts()}  # nothing confirmed is forgotten
    assert "Sync finished" in out

    rerun = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "200")
    assert finish(rerun) == 0
    assert_loops_equals_source(loops.emulator, 200)


def test_sigint_exits_130(loops: EmulatorServer, workdir: Path) -> None:
    loops.emulator.configure(faults=Faults(latency_ms=50))
    generated(workdir, 100)
    run = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "20")
    wait_for_contacts(loops.emulator, 5)
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=30)
    assert run.returncode == 130


def test_kill_9_at_random_moments_then_rerun_converges(loops: EmulatorServer, workdir: Path) -> None:
    loops.emulator.configure(faults=Faults(latency_ms=20, jitter_ms=30))
    generated(workdir, 150)
    chance = random.Random(7)
    for _ in range(4):
        before = len(loops.emulator.contacts())
        run = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "100", "--concurrency", "6")
        more = chance.randint(1, 25)  # the moment of the kill: after some random number of new contacts
        wait_for_contacts(loops.emulator, min(150, before + more))
        run.kill()
        finish(run)
        # The state never claims a write Loops did not confirm.
        assert emails_in_state(workdir / "bulksync.state.db") <= {c["email"] for c in loops.emulator.contacts()}
    final = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "200", "--summary-json", "summary.json")
    assert finish(final) == 0
    assert_loops_equals_source(loops.emulator, 150)
    assert emails_in_state(workdir / "bulksync.state.db") == {c["email"] for c in loops.emulator.contacts()}


def test_fault_injection_with_kills_ends_equal_to_the_source(loops: EmulatorServer, workdir: Path) -> None:
    loops.emulator.configure(faults=Faults(
        fail_rate=0.10, drop_rate=0.02, drop_after_write_share=0.5, html_502_rate=0.02,
        latency_ms=10, spike_rate=0.02, spike_ms=700,
    ))
    generated(workdir, 120)
    common = ("--rate-limit", "100", "--timeout", "0.4", "--max-retries", "8")
    for progress in (15, 40):
        run = spawn(loops, workdir, "sync", "people.csv", *common)
        wait_for_contacts(loops.emulator, progress)
        run.kill()
        finish(run)
    final = spawn(loops, workdir, "sync", "people.csv", *common, "--summary-json", "summary.json")
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert_loops_equals_source(loops.emulator, 120)
    stats = loops.emulator.stats()
    assert stats["by_status"].get("500", 0) > 0 and stats["dropped"] > 0  # the faults really happened


# -- the team's shared rate budget ---------------------------------------------------------------------


def test_shared_budget_no_failed_row_and_at_most_2_percent_429(cli: Any, emulator: LoopsEmulator,
                                                                 workdir: Path) -> None:
    # Scaled up tenfold to keep the test short: a 100/s team limit, 30/s used by another client.
    emulator.configure(rate_limit=100, background_rps=30)
    generated(workdir, 400)

    result = cli("sync", "people.csv", "--rate-limit", "100", "--concurrency", "4")

    assert result.status == 0
    stats = emulator.stats()
    assert result.summary()["failed"] == 0 and result.summary()["created"] == 400
    assert stats["rate_limited"] <= 0.02 * stats["requests"], stats


# -- timeouts, transport, keys -------------------------------------------------------------------------


def test_a_hanging_server_never_hangs_the_run(
    cli: Any, loops: EmulatorServer, emulator: LoopsEmulator, workdir: Path
) -> None:
    # Through a real socket (asking for ``loops`` routes ``cli`` there): timeouts are a transport's.
    emulator.configure(faults=Faults(spike_rate=0.2, spike_ms=1500))
    generated(workdir, 20)

    result = cli("sync", "people.csv", "--timeout", "0.3", sleep=lambda s: None)

    assert result.status == 0
    assert len(emulator.contacts()) == 20
    # The client gave up on the hanging responses after --timeout and retried them.
    assert "timed out (ReadTimeout)" in result.err


def test_plain_http_to_a_remote_host_is_refused(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts.csv", "--base-url", "http://loops.example.com/api")

    assert result.status == 2
    assert result.err == (
        "bulksync: error: refusing base URL 'http://loops.example.com/api': the API key is only sent over https "
        "(plain http is allowed for 127.0.0.1/localhost only)\n"
    )


def test_the_key_appears_nowhere(cli: Any, emulator: LoopsEmulator, workdir: Path, monkeypatch: Any) -> None:
    secret = "sk_live_bulksync_SECRET_4242"
    emulator.api_key = secret
    monkeypatch.setenv("LOOPS_API_KEY", secret)
    emulator.configure(faults=Faults(fail_rate=0.2))

    outputs = [cli("--debug", "sync", "contacts.csv", "--state", "s.db", sleep=lambda s: None, report=False)]
    outputs.append(cli("sync", "contacts_changed.csv", "--state", "s.db", "--dry-run", "--plan", "p.plan"))
    monkeypatch.setenv("LOOPS_API_KEY", secret + "-wrong")
    outputs.append(cli("--debug", "sync", "contacts_changed.csv", "--state", "s.db"))

    assert outputs[-1].status == 4
    texts = [o.out + o.err for o in outputs]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in workdir.iterdir() if p.is_file()]
    assert not [t for t in texts if secret in t]
