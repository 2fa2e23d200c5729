"""How many requests to keep in flight: enough to fill the rate budget at the latency measured.

Little's law: requests in flight = rate x time each one takes. At 10/s and 60 ms answers one
worker nearly suffices; at 700 ms it takes seven, and a fixed pool of four would cap the run at
5.7/s whatever the limit. So the pool is sized from the latency seen, with a margin for its
spread, under the user's ``--concurrency`` ceiling. Fewer workers than the ceiling also means
fewer rate-limiter slots claimed ahead of time, so a 429's pause holds back fewer requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bulksync.config import Clock
from bulksync.errors import ApiError

INITIAL = 4  # before the first answer: the latency is not known yet
FLOOR = 2  # one worker waiting out a retry's backoff must not stall the run
MARGIN = 1.25  # over rate x latency: answers vary, and a slot missed is budget lost for good
SMOOTHING = 1 / 8  # of the mean latency, as TCP smooths its round-trip time (RFC 6298)
SPREAD_SMOOTHING = 1 / 4  # of the mean deviation


class InFlight:
    """Thread-safe: workers time their requests, the dispatcher asks how many may be in flight."""

    def __init__(self, ceiling: int, *, clock: Clock = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError("the ceiling of requests in flight must be at least 1")
        self.ceiling = ceiling
        self._clock = clock
        self._lock = threading.Lock()
        self._mean: float | None = None
        self._deviation = 0.0

    @property
    def latency(self) -> float | None:
        """Seconds a request is expected to take at most, usually: the mean plus twice its deviation."""
        with self._lock:
            return None if self._mean is None else self._mean + 2 * self._deviation

    def observe(self, seconds: float) -> None:
        """One request's time from sending to its answer."""
        with self._lock:
            if self._mean is None:
                self._mean, self._deviation = seconds, seconds / 2
                return
            self._deviation += (abs(seconds - self._mean) - self._deviation) * SPREAD_SMOOTHING
            self._mean += (seconds - self._mean) * SMOOTHING

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Time the request in the block; one that raised without an answer (a timeout, a dropped
        connection) is not counted: its time says how long bulksync waited, not how fast Loops is."""
        started = self._clock()
        try:
            yield
        except ApiError as exc:
            if exc.status is not None:  # Loops answered, if only with an error: that took time too
                self.observe(self._clock() - started)
            raise
        self.observe(self._clock() - started)

    def size(self, rate: float) -> int:
        """Requests to keep in flight to sustain ``rate`` a second."""
        latency = self.latency
        if latency is None:
            return min(self.ceiling, INITIAL)
        return max(min(FLOOR, self.ceiling), min(self.ceiling, math.ceil(rate * latency * MARGIN) + 1))
