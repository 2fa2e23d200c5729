"""Requests in flight sized by Little's law from the latency measured, under the --concurrency ceiling."""

from __future__ import annotations

import threading

import pytest

from bulksync.config import HttpConfig, Runtime
from bulksync.emulator import Faults, LoopsEmulator
from bulksync.errors import ApiError, RetriableError
from bulksync.loops.connection import Connection
from bulksync.loops.inflight import INITIAL, InFlight
from bulksync.loops.push import Outcome, push_all
from bulksync.plan.actions import Action
from tests.helpers import API_KEY, IN_PROCESS_URL, FakeClock


def steady(latency_s: float, *, ceiling: int = 32, answers: int = 60) -> InFlight:
    clock = FakeClock()
    in_flight = InFlight(ceiling, clock=clock)
    for _ in range(answers):
        with in_flight.timing():
            clock.sleep(latency_s)
    return in_flight


def test_before_any_answer_the_pool_starts_small() -> None:
    assert InFlight(32).size(9.8) == INITIAL
    assert InFlight(2).size(9.8) == 2  # the ceiling wins


@pytest.mark.parametrize(
    ("latency_s", "size"),
    [
        (0.0, 2),  # loopback: two, so one worker waiting out a retry's backoff cannot stall the run
        (0.06, 2),  # 9.8/s x 60 ms = 0.6 in flight, + 25% + 1
        (0.3, 5),  # 9.8 x 0.3 = 2.94 -> x 1.25 = 3.7 -> 4, + 1
        (0.7, 10),  # 9.8 x 0.7 = 6.9 -> x 1.25 = 8.6 -> 9, + 1: four workers would cap the run at 5.7/s
        (3.0, 32),  # 38 wanted: the ceiling
    ],
)
def test_steady_latency_sizes_the_pool_by_littles_law(latency_s: float, size: int) -> None:
    assert steady(latency_s).size(9.8) == size


def test_spread_latency_keeps_a_margin_for_the_slow_answers() -> None:
    clock = FakeClock()
    in_flight = InFlight(32, clock=clock)
    for n in range(200):  # 490..910 ms: 700 +-30%
        with in_flight.timing():
            clock.sleep(0.49 + 0.42 * ((n * 37) % 100) / 99)

    assert in_flight.latency is not None
    assert 0.8 < in_flight.latency < 1.0  # mean 0.7 plus twice the mean deviation
    assert in_flight.size(9.8) in (11, 12, 13)  # enough for the slowest answers at the full rate


def test_the_ceiling_caps_the_pool() -> None:
    assert steady(0.7, ceiling=6).size(9.8) == 6
    assert steady(0.0, ceiling=1).size(9.8) == 1


def test_answered_errors_count_and_unanswered_ones_do_not() -> None:
    clock = FakeClock()
    in_flight = InFlight(32, clock=clock)
    with pytest.raises(RetriableError), in_flight.timing():
        clock.sleep(30.0)
        raise RetriableError("timed out (ReadTimeout)")  # no status: how long we waited, not Loops' speed
    assert in_flight.latency is None

    with pytest.raises(ApiError), in_flight.timing():
        clock.sleep(0.5)
        raise ApiError("400: bad email", 400)  # Loops answered
    assert in_flight.latency == pytest.approx(1.0)  # 0.5 plus twice the first guess of its spread (half)


def test_the_connection_sizes_its_pool_from_the_answers_it_timed() -> None:
    clock = FakeClock()
    team = LoopsEmulator(api_key=API_KEY, rate_limit=10, clock=clock, seed=1, faults=Faults(latency_ms=700))
    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep)
    http = HttpConfig(api_key=API_KEY, base_url=IN_PROCESS_URL, concurrency=32)
    with Connection(http, runtime) as loops:
        assert loops.workers() == INITIAL
        for _ in range(30):
            loops.properties()

        assert loops.in_flight.latency == pytest.approx(0.7, abs=0.01)
        assert loops.workers() == 10


def test_the_pool_grows_when_the_size_does() -> None:
    sizes = iter([1, 1, 3, 3, 3, 3])
    together = threading.Barrier(3, timeout=10)  # three at once: only with three workers
    names: set[str] = set()

    def execute(action: Action) -> Outcome:
        names.add(threading.current_thread().name)
        if (action.row or 0) >= 2:
            together.wait()
        return Outcome(action, True, dict(action.send), 200, 1)

    actions = [Action("create", f"u{n}@example.com", n, 99, {}, {"email": f"u{n}@example.com"}, ("email",))
               for n in range(5)]
    handed: list[Outcome] = []
    push_all(actions, execute, lambda: next(sizes, 3), handed.append)

    assert sorted(outcome.action.row or 0 for outcome in handed) == [0, 1, 2, 3, 4]
    assert all(outcome.ok for outcome in handed)
    assert len(names) == 3
