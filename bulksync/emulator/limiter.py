"""Loops' per-team rate limit under four algorithms, the team's other traffic, and the headers that report it.

Loops does not document its limiter, so the emulator offers the usual ones. Each allows a budget of
N = floor(rate) requests per window of N / rate seconds (1.0 s for whole rates; a fractional rate keeps
its mean: 2.5/s is 2 per 0.8 s). What a request answered 429 costs differs, as in common implementations:

- token-bucket: a 429 takes no token (the bucket refills continuously, `rate` per second, capacity N).
- sliding-log: only admitted requests enter the log, so "at most N answered requests in any window"
  holds, and a client that backs off gets in as soon as the oldest entry leaves the window (counting
  429s too would lock out any client retrying at the limit for as long as it keeps retrying).
- fixed-window: every request counts, 429s included (the INCR-then-compare of Redis-style counters);
  within a window that changes nothing but the count, and the next window starts from zero.
- sliding-counter: a request is admitted while previous*(1-elapsed_fraction)+current is under N,
  checked before counting it (as Cloudflare and Upstash do); 429s do not count.

Every algorithm runs on the injected clock only, so tests drive exact schedules without sleeping.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

UNLIMITED = 1_000_000
"""The rate-limit header values sent when the emulator runs without a rate limit."""
ALGORITHMS = ("token-bucket", "sliding-log", "fixed-window", "sliding-counter")
DEFAULT_ALGORITHM = "sliding-log"
"""The strictest realistic one: no more than `rate` requests in any 1.0 s span."""
_EPS = 1e-9
"""Absorbs float error from clocks advanced in fractional steps (0.1 ten times is not quite 1.0)."""
_REPLAYED_ARRIVALS = 10_000
"""After a long idle gap only the last this many background arrivals (and at least 3 windows) are replayed."""


@dataclass
class BackgroundStats:
    """What the team's other clients sent and how much of it was answered 429 (estimates for token-bucket)."""

    requests: float = 0.0
    rate_limited: float = 0.0

    def snapshot(self) -> dict[str, int]:
        """The counts, rounded: a token bucket drains fractions of a request."""
        return {"requests": round(self.requests), "rate_limited": round(self.rate_limited)}


def _rate_ok(rate: float) -> bool:
    """A usable rate: 0 or more and finite (NaN fails, as every comparison with it does)."""
    return 0 <= rate < math.inf


def rate_headers(limit: int, remaining: int) -> dict[str, str]:
    """The headers every rate-limited answer carries."""
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining)}


class RateLimiter(ABC):
    """One team's rate limit, drained by the emulator's clients and by the team's other traffic."""

    algorithm: ClassVar[str]

    def __init__(
        self,
        rate: float,
        background_rps: float,
        clock: Callable[[], float],
        background: BackgroundStats | None = None,
    ) -> None:
        if not (_rate_ok(rate) and _rate_ok(background_rps)):
            raise ValueError("rate_limit and background_rps must be 0 or more")
        self.now = clock
        self.rate = rate
        self.background_rps = background_rps
        self.background = background if background is not None else BackgroundStats()
        self.budget = max(1, math.floor(rate + _EPS)) if rate > 0 else UNLIMITED
        self.window = self.budget / rate if rate > 0 else 1.0
        self.refill()

    @property
    def limit(self) -> int:
        """The limit the headers report."""
        return self.budget

    def refill(self) -> None:
        """Forget past traffic: the whole budget is available now, and background arrivals start afresh."""
        self._restart_background(self.now())
        self._clear()

    def set_background(self, background_rps: float) -> None:
        """Change the rate of the team's other traffic from now on."""
        if not _rate_ok(background_rps):
            raise ValueError("background_rps must be 0 or more")
        now = self.now()
        self._run_background(now)
        self.background_rps = background_rps
        self._restart_background(now)

    def run_background(self) -> None:
        """Let the team's other traffic take its share up to now (before stats are read, or a swap)."""
        self._run_background(self.now())

    def admit(self) -> tuple[bool, dict[str, str]]:
        """Count one request: whether it may pass, and the rate-limit headers of its answer."""
        now = self.now()
        self._run_background(now)
        if self.rate <= 0:
            return True, rate_headers(UNLIMITED, UNLIMITED)
        allowed, remaining = self._take(now)
        return allowed, rate_headers(self.limit, remaining)

    # -- what each algorithm defines --------------------------------------------------------------------

    @abstractmethod
    def _clear(self) -> None:
        """Reset the algorithm's state to a full budget."""

    @abstractmethod
    def _take(self, now: float) -> tuple[bool, int]:
        """Count a request arriving at `now` (never before the previous one): (allowed, remaining)."""

    # -- the team's other traffic: evenly spaced arrivals at background_rps -------------------------------

    def _restart_background(self, now: float) -> None:
        self._origin = now
        self._arrivals = 0  # the k-th arrival comes at origin + k / background_rps

    def _run_background(self, now: float) -> None:
        """Let every background arrival up to `now` take its share, in order, through the same algorithm."""
        if self.background_rps <= 0:
            return
        gap = 1.0 / self.background_rps
        due = math.floor((now - self._origin) / gap + _EPS)
        # Only the last few windows shape the state: after a long gap, older arrivals are counted, not
        # replayed one by one (a fake clock jumping a day ahead would otherwise replay a day of traffic).
        replayed = max(_REPLAYED_ARRIVALS, math.ceil(3 * self.window / gap))
        first_replayed = max(self._arrivals + 1, due - replayed)
        if first_replayed > self._arrivals + 1:
            skipped = first_replayed - 1 - self._arrivals
            self.background.requests += skipped
            if self.rate > 0:  # at a steady pace, what exceeds the limit is what gets 429
                self.background.rate_limited += skipped * max(0.0, 1.0 - self.rate / self.background_rps)
            self._arrivals = first_replayed - 1
        while self._arrivals < due:
            self._arrivals += 1
            arrival = self._origin + self._arrivals * gap
            allowed = self.rate <= 0 or self._take(min(arrival, now))[0]
            self.background.requests += 1
            self.background.rate_limited += 0 if allowed else 1


class TokenBucket(RateLimiter):
    """A bucket of N tokens refilled at `rate` per second; each request takes one, a 429 takes none.

    The team's other traffic drains it continuously at background_rps (the model bulksync was tuned on).
    """

    algorithm = "token-bucket"

    def _clear(self) -> None:
        self._capacity = float(self.budget)
        self._tokens = self._capacity
        self._stamp = self.now()

    def _run_background(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        demand = self.background_rps * elapsed
        self.background.requests += demand
        if self.rate <= 0:
            return
        supply = self._tokens + self.rate * elapsed
        self.background.rate_limited += max(0.0, demand - supply)
        self._tokens = min(self._capacity, max(0.0, supply - demand))

    def _take(self, now: float) -> tuple[bool, int]:
        if self._tokens < 1.0 - _EPS:
            return False, 0
        self._tokens = max(0.0, self._tokens - 1.0)
        return True, math.floor(self._tokens + _EPS)


class SlidingLog(RateLimiter):
    """At most N admitted requests in any window: a log of their arrival times, 429s left out."""

    algorithm = "sliding-log"

    def _clear(self) -> None:
        self._log: deque[float] = deque()

    def _take(self, now: float) -> tuple[bool, int]:
        log = self._log
        # The span is half-open: a request exactly one window after another no longer shares its span.
        while log and now - log[0] >= self.window - _EPS:
            log.popleft()
        if len(log) >= self.budget:
            return False, 0
        log.append(now)
        return True, self.budget - len(log)


class FixedWindow(RateLimiter):
    """N requests per window of the clock (floor(now / window): each second, for whole rates); 429s count."""

    algorithm = "fixed-window"

    def _clear(self) -> None:
        self._index: int | None = None
        self._count = 0

    def _take(self, now: float) -> tuple[bool, int]:
        index = math.floor(now / self.window + _EPS)
        if self._index is None or index > self._index:
            self._index, self._count = index, 0
        self._count += 1
        if self._count > self.budget:
            return False, 0
        return True, self.budget - self._count


class SlidingCounter(RateLimiter):
    """Fixed-window counts, weighted: previous * (1 - elapsed_fraction) + current must stay under N."""

    algorithm = "sliding-counter"

    def _clear(self) -> None:
        self._index: int | None = None
        self._previous = 0
        self._current = 0

    def _take(self, now: float) -> tuple[bool, int]:
        position = now / self.window
        index = math.floor(position + _EPS)
        if self._index is None or index > self._index + 1:  # the first request, or after a quiet window
            self._index, self._previous, self._current = index, 0, 0
        elif index == self._index + 1:
            self._index, self._previous, self._current = index, self._current, 0
        elapsed_fraction = min(1.0, max(0.0, position - self._index))
        estimate = self._previous * (1.0 - elapsed_fraction) + self._current
        if estimate + _EPS >= self.budget:
            return False, 0
        self._current += 1
        # What is left: how many more would be admitted right now (while the estimate stays under N).
        return True, max(0, math.ceil(self.budget - estimate - 1.0 - _EPS))


_LIMITERS: dict[str, type[RateLimiter]] = {
    limiter.algorithm: limiter for limiter in (TokenBucket, SlidingLog, FixedWindow, SlidingCounter)
}


def check_algorithm(algorithm: str) -> str:
    """`algorithm` if the emulator has it; ValueError naming the choices otherwise."""
    if algorithm not in _LIMITERS:
        raise ValueError(f"unknown rate algorithm {algorithm!r}: use {', '.join(ALGORITHMS[:-1])} or {ALGORITHMS[-1]}")
    return algorithm


def make_limiter(
    algorithm: str,
    rate: float,
    background_rps: float,
    clock: Callable[[], float],
    background: BackgroundStats | None = None,
) -> RateLimiter:
    """A fresh limiter (full budget) of the named algorithm. Raises ValueError."""
    return _LIMITERS[check_algorithm(algorithm)](rate, background_rps, clock, background)
