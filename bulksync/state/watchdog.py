"""The client's own bound on each wait for the state database.

The server's timeouts end what the server is running; nothing on the server can end a wait for a
statement it never received (a proxy that stops forwarding fails nothing, and its end of the TCP
connection still acknowledges, so keepalives see nothing wrong). A watched wait that outlasts its
bound, or outlasts ``STOP_GRACE_S`` once the run was asked to stop, has its socket shut down: the
blocked read returns at once, as if the server had hung up, and the statement fails.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOP_GRACE_S = 5.0  # as long as requests in flight get after a stop
POLL_S = 0.25  # how often a watched wait looks at the stop


class Watchdog:
    """Watches the waits of one connection (its socket ``fd``) from a thread of its own."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._started: float | None = None  # when the watched wait (or its last renewal) began
        self._limit = 0.0
        self._depth = 0
        self._stop: threading.Event | None = None
        self._closed = False
        self.cut: str | None = None  # why the socket was shut down, once it was
        threading.Thread(target=self._watch, name="bulksync-state-watchdog", daemon=True).start()

    def stop_on(self, stop: threading.Event | None) -> None:
        """From now on, a wait still going ``STOP_GRACE_S`` after ``stop`` is set is cut."""
        with self._cond:
            self._stop = stop
            self._cond.notify()

    @contextmanager
    def watching(self, limit_s: float) -> Iterator[None]:
        """Bound the waits of the block (a nested block shares the outer one's start, at its larger limit)."""
        with self._cond:
            self._depth += 1
            if self._depth == 1:
                self._started, self._limit = time.monotonic(), limit_s
            else:
                self._limit = max(self._limit, limit_s)
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._started = None

    def renew(self) -> None:
        """A block of many statements: the next one gets the whole bound again."""
        with self._cond:
            if self._started is not None:
                self._started = time.monotonic()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        stopped_at: float | None = None
        with self._cond:
            while not self._closed:
                if self._started is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                until, why = self._started + self._limit, f"no answer for {self._limit:g}s"
                if self._stop is not None and self._stop.is_set():
                    stopped_at = stopped_at or now
                    if (grace_end := max(self._started, stopped_at) + STOP_GRACE_S) < until:
                        until, why = grace_end, f"no answer {STOP_GRACE_S:g}s after the run was asked to stop"
                if now >= until:
                    self.cut, self._started = why, None
                    self._shut()
                    continue
                self._cond.wait(min(until - now, POLL_S) if self._stop is not None else until - now)

    def _shut(self) -> None:
        """Shut the socket down through a duplicate of its descriptor (the connection still owns it)."""
        try:
            with socket.socket(fileno=os.dup(self._fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed meanwhile: nothing left to wait for
