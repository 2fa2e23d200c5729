"""Pace requests just under the team's rate limit, whatever algorithm Loops' limiter uses.

Loops documents 10 requests a second per team, shared with the team's other traffic, and neither
the limiter's algorithm nor its window. So the pace is kept safe for the strictest common one, a
sliding log (no more than ``limit`` requests in any second):

- requests leave evenly spaced at ``PACE`` of the limit, and a log of the real send times holds
  each one back until no window of ``WINDOW + GUARD`` seconds would hold more than ``limit``: a
  worker that wakes late never lets the next one follow too closely;
- ``x-ratelimit-limit`` from any response replaces the assumed limit (``--rate-limit`` stays a
  ceiling the user set);
- what the team's other clients use shows as ``limit - remaining - our own requests in the window``;
  while they are seen, the pace leaves them their share and a small margin;
- a 429 holds everyone back briefly. Beside other clients it cuts the rate, remembered as the place
  the limit really is, and the rate then climbs back by time and success, never waiting for headroom
  to show. Alone on the limit, and so within it by our own log, a 429 means requests reached Loops
  closer together than they left (network jitter): the window's guard widens instead (which slows
  the pace by itself), and narrows back slowly. Once the guard is as wide as it goes, 429s cut the
  rate as beside others: the limit is lower than announced.

Clock and sleep are injected so tests never really wait.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right, insort
from collections import deque
from contextlib import suppress

from bulksync.config import Clock, Sleep

DEFAULT_LIMIT = 10.0  # Loops' documented limit, until a response says otherwise
WINDOW = 1.0  # the limit is per second
GUARD = 0.02  # seconds of scheduling and network jitter a window is widened by, at first
MAX_GUARD = 0.16  # widened by 429s up to this (the pace then at most limit / 1.16)
GUARD_GROWTH = 1.25  # each 429 alone on the limit widens the guard this much: 20, 25, 31, 39 ms, ...
GUARD_RELAX_S = 120.0  # a widened guard narrows back towards GUARD with this time constant
PACE = 0.98  # the share of the limit aimed at
NEIGHBOUR_MARGIN = 0.5  # requests a second left spare while other clients are seen
DECREASE = 0.9  # a 429 cuts the rate to this share
RECOVERY_S = 10.0  # a cut rate climbs back to its cap in about this long
CAP_RELAX_S = 600.0  # the cap a 429 left grows by 1% in 6 s: a limit that showed itself twice stays learnt
PAUSE_AFTER_429_S = 0.5  # without Retry-After
MIN_RATE = 0.5
HISTORY_S = 15.0  # own send times kept: a response answers a request sent up to this long ago
WAKE_SLACK = 0.001  # a worker waking later than its slot by more than this is logged at its real time
SAMPLES_S = 3.0  # answers looked back on to estimate the others' traffic
YIELD_WEIGHT, RECLAIM_WEIGHT = 0.5, 0.2  # how fast the others' estimate follows a sample above it, below it
SEEN_AT_LEAST = 0.25  # other clients' requests a second below which they count as none


class RateLimiter:
    """Thread-safe pacing: each ``acquire`` returns when its caller may send."""

    def __init__(
        self,
        ceiling: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        limit: float = DEFAULT_LIMIT,
    ) -> None:
        if ceiling is not None and not (math.isfinite(ceiling) and ceiling > 0):
            raise ValueError("rate must be positive")
        self.ceiling = ceiling
        self.limit = limit
        self._others = 0.0  # smoothed estimate of the team's other clients' requests a second
        self._samples: deque[tuple[float, int, int]] = deque()  # (sent at, remaining, others seen)
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._next = clock()
        self._cap = math.inf  # where a 429 showed the real limit to be, relaxed over time
        self.guard = GUARD  # the seconds a window is widened by: more after 429s that our log cannot explain
        self._pause_until = -math.inf
        self.rate = self.target()
        self._last_change = self._next
        self._lock = threading.Lock()
        self._mine = threading.local()  # each worker's last slot: its response is about that request

    @property
    def others(self) -> float:
        """Requests a second the team's other clients are seen to use (0 when too few to tell)."""
        return self._others if self._others >= SEEN_AT_LEAST else 0.0

    def target(self) -> float:
        """The rate aimed at now: the limit less what others use, under the user's ceiling."""
        usable = self.limit - self.others - (NEIGHBOUR_MARGIN if self.others > 0 else 0.0)
        pace = min(PACE, 1.0 / (WINDOW + self.guard))  # even spacing that fits the widened window
        return max(MIN_RATE, min(self.ceiling or math.inf, usable * pace, self._cap))

    def acquire(self) -> None:
        """Claim the next free slot (evenly spaced, and within the limit over any window) and wait
        for it. At most two claims, however the caller's sleep behaves: tests may pass one that
        returns at once."""
        slot = self._claim_and_wait()
        paused = self._pause_until - self._clock()
        if paused > 0:
            # A 429 while this caller waited: its slot, claimed before, would now fire together with
            # every other one claimed before the pause. Give it up, wait the pause out, claim afresh.
            self._forget_send(slot)
            self._sleep(paused)
            slot = self._claim_and_wait()
        self._mine.sent_at = self._sending(slot)

    def _claim_and_wait(self) -> float:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            slot = max(slot, slot + self._window_wait(slot))
            self._next = slot + 1.0 / self.rate
            self._sent.append(slot)
        if slot > now:
            self._sleep(slot - now)
        return slot

    def _sending(self, slot: float) -> float:
        """The time the caller really sends at, in the log. A worker that wakes late (a busy machine)
        moves its entry to now, so no later claim can follow it too closely; if a request before it
        woke late too, the window may have to hold it back a little more."""
        with self._lock:
            now = self._clock()
            if now <= slot + WAKE_SLACK:
                return slot
            with suppress(ValueError):  # gone already if the process was stopped past HISTORY_S (SIGSTOP)
                self._sent.remove(slot)
            before = bisect_right(self._sent, now)
            budget = self._budget()
            wait = self._sent[before - budget] + WINDOW + self.guard - now if before >= budget else 0.0
            sent = now + max(0.0, wait)
            insort(self._sent, sent)
        if wait > 0:
            self._sleep(wait)
        return sent

    def _forget_send(self, slot: float) -> None:
        """Take a slot out of the log: its request was not sent, or Loops turned it away with a 429
        (most limiters do not count those; counting it would hide a neighbour behind our own)."""
        with self._lock, suppress(ValueError):
            self._sent.remove(slot)

    def _budget(self) -> int:
        """Our own requests any window may hold: the limit less what others use."""
        return max(1, math.floor(self.limit - self.others))

    def _window_wait(self, now: float) -> float:
        """How long until one more request keeps every window within the limit."""
        budget = self._budget()
        while self._sent and self._sent[0] <= now - HISTORY_S:
            self._sent.popleft()
        if len(self._sent) < budget or self._sent[-budget] <= now - WINDOW - self.guard:
            return 0.0
        return self._sent[-budget] + WINDOW + self.guard - now

    def sent_between(self, start: float, end: float) -> int:
        """Our own requests sent after ``start`` and up to ``end`` (send times only ever grow)."""
        with self._lock:
            return bisect_right(self._sent, end) - bisect_right(self._sent, start)

    def throttled(self, retry_after: float | None = None) -> None:
        """A 429: hold every worker back briefly; beside others (or past what the guard explains) cut the
        rate and remember where the limit showed itself, alone on the limit widen the window's guard."""
        with self._lock:
            now = self._clock()
            if self.others > 0 or self.guard >= MAX_GUARD:
                self._cap = max(MIN_RATE, self.rate * PACE)
                self.rate = max(MIN_RATE, self.rate * DECREASE)
                pause = PAUSE_AFTER_429_S
            else:  # the wider window slows the pace by itself: no cut on top, and a pause of one slot
                self.guard = min(MAX_GUARD, self.guard * GUARD_GROWTH)
                self.rate = min(self.rate, self.target())
                pause = 1.0 / self.rate
            pause = retry_after if retry_after is not None else pause
            self._next = max(self._next, now + pause)
            self._pause_until = max(self._pause_until, now + pause)
            self._last_change = now

    def on_response(
        self, status: int, limit: int | None, remaining: int | None, retry_after: float | None,
        sent_at: float | None = None,
    ) -> None:
        """Feed every response in: its headers tell the limit and the others' share; a 429 slows down."""
        if limit:
            self.limit = float(limit)
        sent_at = sent_at if sent_at is not None else getattr(self._mine, "sent_at", None)
        if status == 429:
            if sent_at is not None:
                self._forget_send(sent_at)
            self.throttled(retry_after)
        else:
            if limit and remaining is not None and sent_at is not None:
                self._observe_others(limit, remaining, sent_at)
            self._recover()

    def _observe_others(self, limit: int, remaining: int, sent_at: float) -> None:
        """``limit - remaining`` is what Loops counted in the window ending at this request; our own
        share of it is what we sent in the second up to it (not the slots claimed since). The rest is
        other clients' traffic.

        Which window Loops counts is not known. In a sliding one every answer tells the same; in a
        fixed one (per clock second) an answer early in the second has counted little of anyone's
        traffic yet, ours included. The answers that saw the fullest window in the last few seconds
        tell the most, whatever the algorithm: their average goes into a smoothed estimate. Single
        counts are noise either way (latencies differ), so they are averaged unclipped.
        """
        own = self.sent_between(sent_at - WINDOW, sent_at)
        seen = limit - remaining - own
        with self._lock:
            samples = self._samples
            samples.append((sent_at, remaining, seen))
            while samples[0][0] < sent_at - SAMPLES_S:
                samples.popleft()
            fullest = min(left for _, left, _ in samples)
            told = [count for _, left, count in samples if left == fullest]
            estimate = sum(told) / len(told)
            # Quick to yield, slower to take back: a neighbour refused by a limiter that does not count
            # refusals (a sliding counter) shows less than it sends, and only for as long as it is squeezed.
            weight = YIELD_WEIGHT if estimate > self._others else RECLAIM_WEIGHT
            self._others = max(0.0, self._others + (estimate - self._others) * weight)

    def _recover(self) -> None:
        """Climb back towards the target by time; the remembered cap relaxes more slowly."""
        with self._lock:
            now = self._clock()
            elapsed, self._last_change = now - self._last_change, now
            self.guard -= (self.guard - GUARD) * min(1.0, elapsed / GUARD_RELAX_S)
            target = self.target()
            if math.isfinite(self._cap):
                self._cap += self._cap * elapsed / CAP_RELAX_S
                if self._cap >= self.limit:
                    self._cap = math.inf
            self.rate = min(target, self.rate + target * elapsed / RECOVERY_S) if self.rate < target else target
