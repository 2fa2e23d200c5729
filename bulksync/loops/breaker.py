"""Riding out an outage: when every request fails for a while, stop sending and probe.

Loops has had a 38-minute database outage and hours of intermittent 500s. Retrying each row on
its own would fail every row (or, with a black hole that never answers, run for days holding the
lock). The breaker opens once requests have failed back to back for a while: workers then wait
(their rows are not failed, and the waiting costs them no retry), one probe goes out at growing
intervals, and the first answer closes it. Past ``outage_wait`` the run stops cleanly: rows not
sent are reported as not processed and go out on the next run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bulksync.config import Clock, Sleep
from bulksync.errors import NotSent

log = logging.getLogger("bulksync")

OPEN_AFTER_FAILURES = 6  # failures in a row ...
OPEN_AFTER_S = 5.0  # ... spread over at least this long (a burst of 500s is the retry policy's job)
FIRST_PROBE_S = 2.0
MAX_PROBE_INTERVAL_S = 15.0  # at most this long lost after Loops is back; 4 probes a minute while down
WAIT_STEP_S = 1.0  # how often a waiting worker looks at the stop flag


class OutageTooLong(NotSent):
    """Loops has not answered for longer than ``--outage-wait``: the run stops sending."""


class OutageBreaker:
    """Shared by every worker of a run; all its waits go through the run's sleep (a signal ends them)."""

    def __init__(self, outage_wait_s: float, *, clock: Clock, sleep: Sleep) -> None:
        self.outage_wait_s = outage_wait_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._failures = 0
        self._first_failure = 0.0
        self.opened_at: float | None = None
        self._next_probe = 0.0
        self._interval = FIRST_PROBE_S
        self._probing = False
        self.gave_up = False
        self.probes = 0

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def before_request(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait while the breaker is open; True if this request is the probe (its failure is the
        outage's, not the row's). Raises OutageTooLong past ``outage_wait``."""
        while True:
            with self._lock:
                if self.opened_at is None:
                    return False
                now = self._clock()
                if self.gave_up or now - self.opened_at > self.outage_wait_s:
                    self._give_up(now)
                    raise OutageTooLong(
                        f"not sent: Loops did not answer for {now - self.opened_at:.0f}s (--outage-wait "
                        f"{self.outage_wait_s:g}s); it goes out on the next run"
                    )
                if not self._probing and now >= self._next_probe:
                    self._probing = True
                    self.probes += 1
                    return True
                wait = min(WAIT_STEP_S, max(0.01, self._next_probe - now))
            if stopping():
                raise NotSent("not sent: the run was stopped")
            self._sleep(wait)

    def succeeded(self, probe: bool = False) -> None:
        """Loops answered (any answer that is not a 5xx or a transport failure)."""
        with self._lock:
            self._failures = 0
            if probe or self.opened_at is not None:
                self._probing = False
            if self.opened_at is not None:
                log.warning("Loops answers again after %.0fs: resuming", self._clock() - self.opened_at)
                self.opened_at = None
                self._interval = FIRST_PROBE_S

    def failed(self, probe: bool = False) -> None:
        """A 5xx, a dropped connection or a timeout."""
        with self._lock:
            now = self._clock()
            if self._failures == 0:
                self._first_failure = now
            self._failures += 1
            if probe:
                self._probing = False
                self._interval = min(MAX_PROBE_INTERVAL_S, self._interval * 2)
                self._next_probe = now + self._interval
            elif self.opened_at is None and self._failures >= OPEN_AFTER_FAILURES and (
                now - self._first_failure >= OPEN_AFTER_S
            ):
                self.opened_at = now
                self._next_probe = now + FIRST_PROBE_S
                log.warning(
                    "Loops has failed every request for %.0fs: holding the rest, probing with one request "
                    "at growing intervals (at most %gs in all, --outage-wait)",
                    now - self._first_failure, self.outage_wait_s,
                )

    def _give_up(self, now: float) -> None:
        if not self.gave_up:
            self.gave_up = True
            log.warning("Loops has not answered for %.0fs: stopping; the rest goes out on the next run",
                        now - (self.opened_at or now))
