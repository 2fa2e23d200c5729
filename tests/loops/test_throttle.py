"""RateLimiter: exact slot schedules on a fake clock, thread safety, 429 back-off and recovery."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator

import pytest

from bulksync.loops.throttle import RateLimiter


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(rate: float = 10.0, clock: FakeClock | None = None, **kwargs: float) -> tuple[RateLimiter, FakeClock]:
    clock = clock or FakeClock()
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs), clock


def slots(rate_limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """The clock reading each of ``n`` successive acquires returns at."""
    times = []
    for _ in range(n):
        rate_limiter.acquire()
        times.append(clock())
    return times


def test_ten_per_second_gives_slots_a_tenth_of_a_second_apart() -> None:
    rate_limiter, clock = limiter(10)

    assert slots(rate_limiter, clock, 5) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1, 0.1])


def test_schedule_at_other_rates_and_start_times() -> None:
    rate_limiter, clock = limiter(4, FakeClock(start=100.0))

    assert slots(rate_limiter, clock, 4) == pytest.approx([100.0, 100.25, 100.5, 100.75])


def test_first_acquire_does_not_sleep() -> None:
    rate_limiter, clock = limiter(10)

    rate_limiter.acquire()

    assert clock.sleeps == []


def test_idle_time_is_not_banked_as_a_burst() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.acquire()
    clock.now = 5.0  # the caller did other work for 5 s

    assert slots(rate_limiter, clock, 3) == pytest.approx([5.0, 5.1, 5.2])
    assert clock.sleeps == pytest.approx([0.1, 0.1])


def test_a_caller_arriving_mid_gap_waits_only_the_rest_of_it() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.acquire()
    clock.now = 0.04

    rate_limiter.acquire()

    assert clock.sleeps == pytest.approx([0.06])
    assert clock() == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [0, -1.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate)


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    """Switch threads as often as possible, so a missing lock would show as overlapping slots."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("eager_thread_switching")
def test_acquire_hands_out_distinct_evenly_spaced_slots_across_threads() -> None:
    # The clock stands still at 0, so each caller's slot is exactly how long it is told to sleep.
    handed: list[float] = []
    rate_limiter = RateLimiter(20, clock=lambda: 0.0, sleep=handed.append)
    threads_n, per_thread = 8, 100
    start = threading.Barrier(threads_n)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            rate_limiter.acquire()

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    given = sorted([0.0, *handed])  # the very first slot (0) needs no sleep
    assert len(given) == threads_n * per_thread
    assert given == pytest.approx([i / 20 for i in range(threads_n * per_thread)])
    gaps = [b - a for a, b in itertools.pairwise(given)]
    assert min(gaps) >= 1 / 20 - 1e-9


def test_throttled_cuts_the_rate_and_pauses_one_second_by_default() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.acquire()  # slot 0; the next one would be 0.1

    rate_limiter.throttled()

    assert rate_limiter.rate == pytest.approx(7.0)
    assert slots(rate_limiter, clock, 3) == pytest.approx([1.0, 1.0 + 1 / 7, 1.0 + 2 / 7])


def test_throttled_honours_retry_after_exactly() -> None:
    rate_limiter, clock = limiter(10)
    clock.now = 2.0

    rate_limiter.throttled(retry_after=3.0)
    rate_limiter.acquire()

    assert clock.sleeps == [3.0]
    assert clock() == 5.0


def test_a_short_retry_after_never_pulls_a_later_slot_earlier() -> None:
    rate_limiter, clock = limiter(1)
    rate_limiter.acquire()  # slot 0, next at 1.0

    rate_limiter.throttled(retry_after=0.0)
    rate_limiter.acquire()

    assert clock() == pytest.approx(1.0)


def test_repeated_429s_keep_cutting_down_to_the_floor() -> None:
    rate_limiter, _ = limiter(10)
    rates = []
    for _ in range(12):
        rate_limiter.throttled(retry_after=0.0)
        rates.append(rate_limiter.rate)

    assert rates[:4] == pytest.approx([7.0, 4.9, 3.43, 2.401])
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[:8]))
    assert rates[-1] == 0.5  # min_rate
    assert rate_limiter.max_rate == 10


def test_the_floor_is_never_above_the_configured_rate() -> None:
    rate_limiter, _ = limiter(0.2)

    rate_limiter.throttled()

    assert rate_limiter.rate == pytest.approx(0.2)


def test_observe_recovers_a_tenth_per_second_at_ten_per_second() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.throttled()  # 7.0 at t=0

    clock.now = 10.0
    rate_limiter.observe(limit=10, remaining=9)

    assert rate_limiter.rate == pytest.approx(8.0)


def test_recovery_scales_with_the_configured_rate() -> None:
    rate_limiter, clock = limiter(100)
    rate_limiter.throttled()  # 70 at t=0

    clock.now = 10.0
    rate_limiter.observe(limit=None, remaining=None)

    assert rate_limiter.rate == pytest.approx(80.0)


def test_recovery_stops_at_the_maximum() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.throttled()

    clock.now = 1000.0
    rate_limiter.observe(limit=10, remaining=10)

    assert rate_limiter.rate == 10.0


def test_recovery_holds_while_the_team_bucket_is_nearly_empty() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.throttled()  # 7.0

    clock.now = 10.0
    rate_limiter.observe(limit=10, remaining=1)  # under a quarter of the limit: hold
    assert rate_limiter.rate == pytest.approx(7.0)
    clock.now = 20.0
    rate_limiter.observe(limit=10, remaining=0)
    assert rate_limiter.rate == pytest.approx(7.0)

    clock.now = 25.0
    rate_limiter.observe(limit=10, remaining=2)  # a quarter (10 // 4): headroom again
    assert rate_limiter.rate == pytest.approx(7.5)  # only the 5 s since the last response count


def test_observe_at_full_rate_changes_nothing() -> None:
    rate_limiter, clock = limiter(10)
    clock.now = 50.0

    rate_limiter.observe(limit=10, remaining=10)

    assert rate_limiter.rate == 10.0
    assert slots(rate_limiter, clock, 2) == pytest.approx([50.0, 50.1])


def test_on_response_routes_429_to_throttled_with_its_retry_after() -> None:
    rate_limiter, clock = limiter(10)

    rate_limiter.on_response(429, 10, 0, 2.5)
    rate_limiter.acquire()

    assert rate_limiter.rate == pytest.approx(7.0)
    assert clock() == pytest.approx(2.5)


def test_on_response_routes_other_statuses_to_observe() -> None:
    rate_limiter, clock = limiter(10)
    rate_limiter.on_response(429, None, None, None)
    clock.now = 10.0

    rate_limiter.on_response(200, 10, 8, None)
    assert rate_limiter.rate == pytest.approx(8.0)
    clock.now = 20.0
    rate_limiter.on_response(500, 10, 0, 7.0)  # a 5xx is no reason to pause every worker
    assert rate_limiter.rate == pytest.approx(8.0)
    rate_limiter.acquire()
    assert clock.sleeps == []
