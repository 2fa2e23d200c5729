"""A signalled run ends, whatever the server does: bulksync as its own process against a server that
hangs or trickles. Every wait is bounded by ``communicate(timeout=...)``; the test acts on progress
the server saw, never after a fixed sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bulksync.loops.push import NOT_SENT, UNANSWERED
from tests.helpers import API_KEY, ROOT, report_rows, wait_until
from tests.loops.servers import Hang, MisbehavingServer, Trickle

BOUND_S = 30  # the run must end well within this: the grace is 5 s
UPDATE, PROPERTIES = "PUT /v1/contacts/update", "GET /v1/contacts/properties"


def start(server: MisbehavingServer, workdir: Path, columns: str, *args: str) -> subprocess.Popen[str]:
    """``bulksync sync people.csv --state state.db ARGS``; stderr goes to ``workdir/stderr`` (read mid-run)."""
    (workdir / "people.csv").write_text(f"email,{columns}\n" + "".join(
        f"user{i}@example.com,{','.join(['v'] * len(columns.split(',')))}\n" for i in range(3)))
    env = {**os.environ, "LOOPS_API_KEY": API_KEY, "LOOPS_BASE_URL": server.url, "PYTHONPATH": str(ROOT)}
    with open(workdir / "stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "bulksync", "sync", "people.csv", "--state", "state.db", "--report", "report.csv",
             "--no-progress", *args], cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=stderr,
        )


def ended(run: subprocess.Popen[str], workdir: Path) -> tuple[int, str]:
    """The exit status and stderr, once the run ended within the bound (killed if not)."""
    try:
        run.communicate(timeout=BOUND_S)
    finally:
        run.kill()
        run.communicate()
    return run.returncode, (workdir / "stderr").read_text()


def test_timeout_bounds_a_write_trickled_forever(hostile: MisbehavingServer, tmp_path: Path) -> None:
    hostile.routes[UPDATE] = Trickle(forever=True, interval_s=0.05)
    run = start(hostile, tmp_path, "firstName", "--timeout", "1", "--max-retries", "1")

    status, err = ended(run, tmp_path)

    assert status == 1, err
    assert {(row["status"], row["error"]) for row in report_rows(tmp_path)} == {("failed", "timed out (ReadTimeout)")}


def test_sigterm_while_every_write_trickles_exits_143_after_the_grace(
    hostile: MisbehavingServer, tmp_path: Path
) -> None:
    hostile.routes[UPDATE] = Trickle(forever=True, interval_s=0.05)
    run = start(hostile, tmp_path, "firstName")  # --timeout 30: the grace ends first
    # Loopback answers in milliseconds, so the pool sizes itself at two workers: two writes in flight.
    wait_until(lambda: hostile.seen.count(UPDATE) == 2, "two writes in flight")
    run.send_signal(signal.SIGTERM)

    status, err = ended(run, tmp_path)

    assert status == 143, err
    assert "stopping: finishing requests in flight" in err
    assert sorted((row["status"], row["error"]) for row in report_rows(tmp_path)) == [
        ("failed", UNANSWERED), ("failed", UNANSWERED), ("failed", NOT_SENT)
    ]
    assert hostile.seen.count(UPDATE) == 2  # the third was never sent


def test_sigterm_during_the_account_fetch_exits_143(hostile: MisbehavingServer, tmp_path: Path) -> None:
    hostile.routes[PROPERTIES] = Hang()
    run = start(hostile, tmp_path, "plan")  # a custom property: the account's properties are read first
    wait_until(lambda: hostile.saw(PROPERTIES), "the properties request")
    run.send_signal(signal.SIGTERM)

    status, err = ended(run, tmp_path)

    assert status == 143, err
    assert err.endswith("bulksync: error: the run was stopped during the account's properties; no contact was sent\n")
    assert UPDATE not in hostile.seen


def test_sigint_during_the_account_fetch_exits_130(hostile: MisbehavingServer, tmp_path: Path) -> None:
    hostile.routes[PROPERTIES] = Hang()
    run = start(hostile, tmp_path, "plan")
    wait_until(lambda: hostile.saw(PROPERTIES), "the properties request")
    run.send_signal(signal.SIGINT)

    status, err = ended(run, tmp_path)

    assert status == 130, err
    assert "the run was stopped during the account's properties" in err


def test_sigterm_twice_during_the_account_fetch_stays_143(hostile: MisbehavingServer, tmp_path: Path) -> None:
    hostile.routes[PROPERTIES] = Hang()
    run = start(hostile, tmp_path, "plan")
    wait_until(lambda: hostile.saw(PROPERTIES), "the properties request")
    run.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping:" in (tmp_path / "stderr").read_text(), "the first signal handled")
    run.send_signal(signal.SIGTERM)

    status, err = ended(run, tmp_path)

    assert status == 143, err
    assert err.endswith("bulksync: error: aborted by a second signal: requests in flight were abandoned; the next "
                        "run settles them\n")
