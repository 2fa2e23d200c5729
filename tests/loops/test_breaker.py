"""The outage breaker: hold the run while Loops fails everything, probe at growing intervals, give up cleanly."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.loops.breaker import OPEN_AFTER_FAILURES, OutageBreaker, OutageTooLong
from bulksync.sync import run_sync
from tests.helpers import FakeClock, report_rows, run_config, state_fields


def failing(breaker: OutageBreaker, clock: FakeClock, times: int, every: float = 1.0) -> None:
    for _ in range(times):
        breaker.failed()
        clock.sleep(every)


def test_it_opens_only_after_failures_in_a_row_spread_over_seconds() -> None:
    clock = FakeClock()
    breaker = OutageBreaker(900, clock=clock, sleep=clock.sleep)

    for _ in range(20):
        breaker.failed()  # a burst at one moment: the retry policy's job, not an outage
    assert not breaker.is_open
    breaker.succeeded()
    failing(breaker, clock, OPEN_AFTER_FAILURES)
    assert breaker.is_open


def test_it_probes_at_growing_intervals_and_closes_on_the_first_answer() -> None:
    clock = FakeClock()
    breaker = OutageBreaker(900, clock=clock, sleep=clock.sleep)
    failing(breaker, clock, OPEN_AFTER_FAILURES)
    probes = []
    for _ in range(6):
        assert breaker.before_request() is True  # waits (on the fake clock) for the probe's turn
        probes.append(clock())
        breaker.failed(probe=True)
    # At most 15 s apart: once Loops is back, a run loses no more than that.
    assert [round(b - a) for a, b in itertools.pairwise(probes)] == [4, 8, 15, 15, 15]

    assert breaker.before_request() is True
    breaker.succeeded(probe=True)
    assert not breaker.is_open and breaker.before_request() is False


def test_past_outage_wait_it_gives_up() -> None:
    clock = FakeClock()
    breaker = OutageBreaker(30, clock=clock, sleep=clock.sleep)
    failing(breaker, clock, OPEN_AFTER_FAILURES)

    with pytest.raises(OutageTooLong, match=r"--outage-wait 30s"):
        while True:
            breaker.before_request()
            breaker.failed(probe=True)

    assert breaker.gave_up and 30 <= clock() - 1_000 - OPEN_AFTER_FAILURES <= 30 + 64  # the last probe's wait


def test_a_40_s_outage_mid_run_fails_no_row(workdir: Path, team: LoopsEmulator, clock: FakeClock) -> None:
    team.configure(rate_algorithm="token-bucket")
    rows = "".join(f"u{i}@example.com,User{i}\n" for i in range(300))
    (workdir / "many.csv").write_text("email,firstName\n" + rows)
    team.start_outage(40, after=10)  # 10 s into a 30 s run
    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep)

    result = run_sync(run_config("many.csv", concurrency=1), runtime)

    assert (result.summary.created, result.summary.failed) == (300, 0)
    assert len(state_fields(workdir)) == 300 and len(team.contacts()) == 300
    assert team.outage()["requests"] <= 60  # held and probed, not hammered


def test_an_outage_longer_than_outage_wait_stops_cleanly(workdir: Path, team: LoopsEmulator, clock: FakeClock) -> None:
    team.configure(rate_algorithm="token-bucket")
    (workdir / "many.csv").write_text("email,firstName\n" + "".join(f"u{i}@example.com,U\n" for i in range(100)))
    team.start_outage(None, after=3)  # Loops never comes back
    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep)
    started = clock()

    result = run_sync(run_config("many.csv", concurrency=1, outage_wait="2m"), runtime)

    assert clock() - started < 3 + 10 + 120 + 70  # the bound: failing for a while, then --outage-wait
    summary = result.summary
    assert summary.created + summary.failed + summary.skipped == 100 and summary.failed >= 1
    assert len(state_fields(workdir)) == summary.created  # nothing claimed that was not sent
    rows = report_rows(workdir)
    assert [row["key"] for row in rows if row["status"] == "skipped"] == [
        f"u{i}@example.com" for i in range(summary.created + summary.failed, 100)
    ]
    assert {row["error"] for row in rows if row["status"] == "skipped"} == {
        "not processed: Loops failed every request for longer than --outage-wait; sent next run"
    }
