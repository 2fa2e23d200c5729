"""Pace requests to the team's rate limit, and back off when Loops says the budget is shared.

Loops allows 10 requests/s per team, shared with every other client of the team. The limiter
spaces requests evenly at the current rate; a 429 cuts the rate and pauses (honouring
``Retry-After``); the rate climbs back slowly, and only while ``x-ratelimit-remaining`` shows
headroom. Clock and sleep are injected so tests never really wait.
"""

from __future__ import annotations

import threading
import time

from bulksync.config import Clock, Sleep


class RateLimiter:
    """Thread-safe pacing: each ``acquire`` returns at the caller's time slot."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        min_rate: float = 0.5,
        decrease: float = 0.7,
        recovery_per_s: float = 0.1,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.max_rate = rate
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._min_rate = min(min_rate, rate)
        self._decrease = decrease
        self._recovery = recovery_per_s * rate / 10  # scaled so 10/s climbs back 0.1/s per second
        self._next = clock()
        self._last_change = self._next
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the next free slot."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
        if slot > now:
            self._sleep(slot - now)

    def throttled(self, retry_after: float | None = None) -> None:
        """A 429: slow down and hold every worker back for a moment."""
        with self._lock:
            now = self._clock()
            self.rate = max(self._min_rate, self.rate * self._decrease)
            pause = retry_after if retry_after is not None else 1.0
            self._next = max(self._next, now + pause)
            self._last_change = now

    def on_response(self, status: int, limit: int | None, remaining: int | None, retry_after: float | None) -> None:
        """Feed every response in: a 429 slows down, anything else may let the rate recover."""
        if status == 429:
            self.throttled(retry_after)
        else:
            self.observe(limit, remaining)

    def observe(self, limit: int | None, remaining: int | None) -> None:
        """A successful response: climb back towards the maximum while the bucket has headroom."""
        with self._lock:
            now = self._clock()
            elapsed, self._last_change = now - self._last_change, now
            if self.rate >= self.max_rate:
                return
            if limit and remaining is not None and remaining < max(1, limit // 4):
                return  # near the team's edge: hold the rate where it is
            self.rate = min(self.max_rate, self.rate + self._recovery * elapsed)
