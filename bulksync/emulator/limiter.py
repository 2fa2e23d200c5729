"""Loops' per-team rate limit: a token bucket, and the headers that report it."""

from __future__ import annotations

import math
from collections.abc import Callable

UNLIMITED = 1_000_000
"""The rate-limit header values sent when the emulator runs without a rate limit."""


class TokenBucket:
    """Loops' per-team rate limit, with the team's other traffic draining the same bucket."""

    def __init__(self, rate: float, background_rps: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.now = clock
        self.rate = rate
        self.background_rps = background_rps
        self.refill()

    @property
    def limit(self) -> int:
        """The limit the headers report."""
        return int(self.rate) if self.rate > 0 else UNLIMITED

    def refill(self) -> None:
        """Fill the bucket to capacity."""
        self._capacity = max(self.rate, 1.0)
        self._tokens = self._capacity
        self._stamp = self._clock()

    def set_background(self, background_rps: float) -> None:
        """Change the rate of the team's other traffic from now on."""
        self._advance()
        self.background_rps = background_rps

    def take(self) -> tuple[bool, int]:
        """Take one token: (allowed, tokens left)."""
        if self.rate <= 0:
            return True, UNLIMITED
        self._advance()
        # The epsilon absorbs float error from clocks advanced in fractional steps.
        if self._tokens < 1.0 - 1e-9:
            return False, 0
        self._tokens = max(0.0, self._tokens - 1.0)
        return True, math.floor(self._tokens + 1e-9)

    def admit(self) -> tuple[bool, dict[str, str]]:
        """Take one token: whether the request may pass, and the rate-limit headers of its answer."""
        allowed, remaining = self.take()
        return allowed, {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(remaining)}

    def _advance(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        net_rate = self.rate - self.background_rps
        self._tokens = min(self._capacity, max(0.0, self._tokens + elapsed * net_rate))
