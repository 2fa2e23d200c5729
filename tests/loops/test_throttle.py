"""RateLimiter: exact schedules on a fake clock under the limit, the window cap, 429s, recovery, neighbours."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator

import pytest

from bulksync.loops.throttle import GUARD, GUARD_GROWTH, MAX_GUARD, PACE, PAUSE_AFTER_429_S, WINDOW, RateLimiter


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


def limiter(ceiling: float | None = None, clock: FakeClock | None = None) -> tuple[RateLimiter, FakeClock]:
    clock = clock or FakeClock()
    return RateLimiter(ceiling, clock=clock, sleep=clock.sleep), clock


def slots(rate_limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """The clock reading each of ``n`` successive acquires returns at."""
    times = []
    for _ in range(n):
        rate_limiter.acquire()
        times.append(clock())
    return times


def test_it_paces_a_little_under_loops_ten_a_second() -> None:
    rate_limiter, clock = limiter()

    assert slots(rate_limiter, clock, 4) == pytest.approx([0.0, 1 / 9.8, 2 / 9.8, 3 / 9.8])
    assert PACE == 0.98


def test_a_ceiling_under_the_limit_is_the_pace() -> None:
    rate_limiter, clock = limiter(4, FakeClock(start=100.0))

    assert slots(rate_limiter, clock, 3) == pytest.approx([100.0, 100.25, 100.5])


def test_the_announced_limit_wins_over_the_assumed_ten() -> None:
    rate_limiter, clock = limiter()

    rate_limiter.on_response(200, 20, 19, None)

    assert rate_limiter.target() == pytest.approx(19.6)
    clock.now += 10.0  # the pace climbs to the new target by time, not at once
    rate_limiter.on_response(200, 20, 19, None)
    first, second = slots(rate_limiter, clock, 2)
    assert second - first == pytest.approx(1 / 19.6)


def test_no_window_of_a_second_ever_holds_more_than_the_limit() -> None:
    rate_limiter, clock = limiter()
    rate_limiter.rate = 50.0  # as if spacing alone would allow a burst

    times = slots(rate_limiter, clock, 40)

    assert all(later - first >= WINDOW + GUARD - 1e-9 for first, later in zip(times, times[10:], strict=False))


class LateWaker(FakeClock):
    """A busy machine: the third sleep returns 50 ms late."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + (0.05 if len(self.sleeps) == 3 else 0.0))


def test_a_worker_that_wakes_late_is_logged_when_it_really_sends() -> None:
    rate_limiter, clock = limiter(clock=LateWaker())

    times = slots(rate_limiter, clock, 30)  # when each caller really sends

    assert all(later - first >= WINDOW + GUARD - 1e-9 for first, later in zip(times, times[10:], strict=False))


def test_a_worker_stopped_for_longer_than_the_log_remembers_still_sends() -> None:
    """SIGSTOP, then SIGCONT a minute later: the other workers' claims have pruned its slot meanwhile."""
    clock = FakeClock()
    rate_limiter = RateLimiter(clock=clock, sleep=lambda seconds: None)
    rate_limiter.acquire()
    slot = clock.now + 0.5
    rate_limiter._sent.append(slot)  # a slot claimed ahead, whose worker is stopped before it wakes
    clock.now += 60
    rate_limiter.acquire()  # another worker's claim prunes the log

    assert rate_limiter._sending(slot) == clock.now


def test_idle_time_is_not_banked_as_a_burst() -> None:
    rate_limiter, clock = limiter(5)
    rate_limiter.acquire()
    clock.now = 5.0

    assert slots(rate_limiter, clock, 3) == pytest.approx([5.0, 5.2, 5.4])


@pytest.mark.parametrize("ceiling", [0.0, -1.0, float("inf"), float("nan")])
def test_the_ceiling_must_be_a_positive_number(ceiling: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(ceiling)


def test_a_429_beside_other_clients_cuts_the_rate_pauses_briefly_and_remembers_where_the_limit_is() -> None:
    rate_limiter, clock = limiter()
    neighbour_seen(rate_limiter, clock, theirs=3, answers=40)
    before, start = rate_limiter.rate, clock.now

    rate_limiter.on_response(429, 10, 0, None)

    assert rate_limiter.rate == pytest.approx(before * 0.9)
    assert rate_limiter.target() == pytest.approx(before * PACE)  # the cap: just under where it tripped
    assert rate_limiter.guard == GUARD
    rate_limiter.acquire()
    assert clock.now - start == pytest.approx(PAUSE_AFTER_429_S)


def test_a_429_alone_on_the_limit_widens_the_window_guard_instead() -> None:
    """Within the limit by our own log, yet refused: requests arrived closer together than they left."""
    rate_limiter, clock = limiter()
    before = rate_limiter.rate
    guard = GUARD_GROWTH * GUARD

    rate_limiter.on_response(429, 10, 0, None)

    assert rate_limiter.guard == pytest.approx(guard)
    assert rate_limiter.rate == pytest.approx(10 / (WINDOW + guard))  # slower by the window, not cut on top
    assert rate_limiter.rate < before
    assert rate_limiter.target() == pytest.approx(10 / (WINDOW + guard))  # and no cap learnt
    rate_limiter.acquire()
    assert clock.now == pytest.approx(1 / rate_limiter.rate)  # a pause of one slot
    times = slots(rate_limiter, clock, 40)
    assert all(later - first >= WINDOW + guard - 1e-9 for first, later in zip(times, times[10:], strict=False))

    clock.now += 1_000
    rate_limiter.on_response(200, 10, 5, None)  # quiet for long: the guard is back where it started
    assert rate_limiter.guard == pytest.approx(GUARD)


def test_429s_the_guard_cannot_explain_teach_a_lower_limit() -> None:
    """A server that announces 10/s and allows fewer: once the guard is as wide as it goes, 429s cap the rate."""
    rate_limiter, _ = limiter()
    while rate_limiter.guard < MAX_GUARD:
        rate_limiter.on_response(429, 10, 0, None)
    rate = rate_limiter.rate

    rate_limiter.on_response(429, 10, 0, None)

    assert rate_limiter.target() == pytest.approx(rate * PACE)


def test_a_429_honours_retry_after() -> None:
    rate_limiter, clock = limiter()

    rate_limiter.on_response(429, None, None, 3.0)
    rate_limiter.acquire()

    assert clock.now == pytest.approx(3.0)


def test_the_rate_climbs_back_by_time_even_with_no_headroom_shown() -> None:
    rate_limiter, clock = limiter()
    rate_limiter.on_response(429, 10, 0, None)
    cut = rate_limiter.rate

    for _ in range(30):
        clock.now += 1.0
        rate_limiter.on_response(200, 10, 0, None)  # remaining 0 at full pace is normal: it must not hold us

    assert rate_limiter.rate > cut
    assert rate_limiter.rate == pytest.approx(rate_limiter.target())
    clock.now += 120.0
    rate_limiter.on_response(200, 10, 1, None)
    assert rate_limiter.target() == pytest.approx(9.8)  # the remembered cap relaxes too


def own_in_window(rate_limiter: RateLimiter, now: float) -> int:
    return rate_limiter.sent_between(now - WINDOW, now)


def test_a_neighbour_is_left_its_share_and_a_margin_while_seen() -> None:
    rate_limiter, clock = limiter()
    for _ in range(40):  # we send 6 a second; Loops' remaining shows 3 more, the neighbour's
        rate_limiter.acquire()
        clock.now += 1 / 6
        rate_limiter.on_response(200, 10, 10 - 3 - own_in_window(rate_limiter, clock.now), None, sent_at=clock.now)

    assert rate_limiter.others == pytest.approx(3, abs=0.3)
    assert rate_limiter.target() == pytest.approx((10 - rate_limiter.others - 0.5) * PACE)

    for _ in range(60):  # the neighbour stops
        rate_limiter.acquire()
        rate_limiter.on_response(200, 10, 10 - own_in_window(rate_limiter, clock.now), None, sent_at=clock.now)

    assert rate_limiter.others == 0 and rate_limiter.target() == pytest.approx(9.8)


def neighbour_seen(rate_limiter: RateLimiter, clock: FakeClock, theirs: int, answers: int) -> None:
    """``answers`` answers 1/6 s apart whose remaining shows ``theirs`` requests besides ours."""
    for _ in range(answers):
        rate_limiter.acquire()
        clock.now += 1 / 6
        rate_limiter.on_response(200, 10, 10 - theirs - own_in_window(rate_limiter, clock.now), None, sent_at=clock.now)


def test_the_neighbour_estimate_follows_a_rise_at_once_and_a_fall_slowly() -> None:
    """Yielding fast and reclaiming slowly: a limiter that does not count the requests it refuses shows
    a squeezed neighbour as a smaller one, for exactly as long as it is squeezed."""
    rising, rising_clock = limiter()
    neighbour_seen(rising, rising_clock, theirs=3, answers=3)
    falling, falling_clock = limiter()
    neighbour_seen(falling, falling_clock, theirs=3, answers=40)
    neighbour_seen(falling, falling_clock, theirs=0, answers=3)

    assert rising.others > 2.5  # three answers: most of the way up
    assert 3 - falling.others < 1.5  # three answers: less than half the way down


def test_slots_claimed_ahead_are_not_counted_as_sent_yet() -> None:
    clock = FakeClock()
    rate_limiter = RateLimiter(clock=clock, sleep=lambda seconds: None)
    for _ in range(5):
        rate_limiter.acquire()  # five workers claim their slots, about 0.1 s apart; none has been sent
    first = clock.now

    assert own_in_window(rate_limiter, first) == 1  # what Loops had seen when the first one arrived
    assert rate_limiter.sent_between(first - WINDOW, first + 0.5) == 5


def test_a_neighbour_behind_a_fixed_window_is_seen_from_the_fullest_windows() -> None:
    """Per clock second: an answer early in the second has counted little of anyone's traffic yet."""
    rate_limiter, clock = limiter()
    clock.now = 0.0
    log: list[float] = []
    for _ in range(60):  # we send 6 a second, the neighbour 3, counted per whole second
        rate_limiter.acquire()
        log.append(clock.now)
        second = int(clock.now)
        ours = sum(1 for at in log if int(at) == second)
        theirs = int((clock.now - second) * 3) + 1
        rate_limiter.on_response(200, 10, 10 - ours - theirs, None, sent_at=clock.now)
        clock.now += 1 / 6

    assert rate_limiter.others == pytest.approx(3, abs=0.6)  # a plain average would say about 1


def test_a_request_answered_429_is_not_counted_as_ours_in_the_window() -> None:
    rate_limiter, clock = limiter()
    rate_limiter.acquire()
    rate_limiter.on_response(429, 10, 0, None, sent_at=clock.now)  # most limiters do not count a 429

    assert own_in_window(rate_limiter, clock.now) == 0


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("eager_thread_switching")
def test_acquire_hands_out_distinct_evenly_spaced_slots_across_threads() -> None:
    handed: list[float] = []
    rate_limiter = RateLimiter(5, clock=lambda: 0.0, sleep=handed.append)  # 5/s: the window never binds
    threads_n, per_thread = 8, 50
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

    given = sorted([0.0, *handed])
    assert given == pytest.approx([i / 5 for i in range(threads_n * per_thread)])
    assert min(b - a for a, b in itertools.pairwise(given)) >= 1 / 5 - 1e-9


def test_a_caller_that_claimed_its_slot_before_a_429_waits_out_the_pause_and_claims_afresh() -> None:
    clock = FakeClock(start=0.0)
    answers = iter([429])

    def sleep_while_another_request_meets_a_429(seconds: float) -> None:
        if next(answers, None) == 429:
            rate_limiter.throttled(2.0)
        clock.sleep(seconds)

    rate_limiter = RateLimiter(clock=clock, sleep=sleep_while_another_request_meets_a_429)
    rate_limiter.acquire()  # no wait: the first slot
    rate_limiter.acquire()  # while it sleeps for its slot, another worker's request is answered 429
    after_pause = clock.now
    rate_limiter.acquire()

    # Not at 0.1 s: the pause holds an already claimed slot too. And not then at once with every
    # other slot claimed before the pause: evenly spaced after it.
    assert after_pause == pytest.approx(2.0)
    assert clock.now == pytest.approx(2.0 + 1 / rate_limiter.rate)
    assert own_in_window(rate_limiter, clock.now) == 2  # the given-up slot is not counted as sent
