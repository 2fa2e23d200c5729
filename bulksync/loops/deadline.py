"""A deadline on the whole request, and a cut-off once a stopped run's grace is over.

httpx's timeouts are per socket operation: a server that trickles one byte every few seconds never
trips its read timeout, so one request could hold a run (and its lock) forever. httpx has no total
timeout, and a request cannot be interrupted from another thread; but every socket operation goes
through httpcore's network backend. So the transport's backend is wrapped here: each read, write,
connect and TLS handshake gets at most the time left before the request's deadline, and reads wait
in short slices so that a stopped run's requests are cut off at the end of the grace period, on
whichever thread they block (a worker, or the main thread reading the account).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

SLICE_S = 0.25  # how long a read waits before looking at the deadline and the stop again
CUT_OFF = "cut off: the run was stopped and its grace period is over"


class RequestGuard:
    """Deadlines of the requests in flight (one per thread: httpx sends on the caller's thread)."""

    def __init__(self, should_stop: Callable[[], bool] = lambda: False, grace_s: float = 5.0) -> None:
        self._local = threading.local()
        self._should_stop = should_stop
        self._grace_s = grace_s
        self._stop_seen: float | None = None

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Everything this thread sends and receives inside must be over ``seconds`` from now."""
        self._local.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.deadline = None

    def cut_off(self) -> bool:
        """Whether the run was stopped more than the grace period ago: requests in flight are abandoned."""
        end = self._stop_end()
        return end is not None and time.monotonic() >= end

    def _stop_end(self) -> float | None:
        if self._stop_seen is None and self._should_stop():
            self._stop_seen = time.monotonic()  # the grace runs from the first look after the stop
        return None if self._stop_seen is None else self._stop_seen + self._grace_s

    def left(self, timeout: float | None, started: float | None = None) -> tuple[float, bool]:
        """Seconds one socket operation may take, and whether the limit is the stop's cut-off."""
        now = time.monotonic()
        ends = [getattr(self._local, "deadline", None)]
        if timeout is not None:
            ends.append((now if started is None else started) + timeout)
        limit = min((end for end in ends if end is not None), default=float("inf"))
        stop_end = self._stop_end()
        if stop_end is not None and stop_end <= limit:
            return stop_end - now, True
        return limit - now, False


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every socket operation bounded by a :class:`RequestGuard`."""

    def __init__(self, inner: httpcore.NetworkBackend, guard: RequestGuard) -> None:
        self._inner = inner
        self._guard = guard

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bound = _bound(self._guard, timeout, httpcore.ConnectTimeout)
        return GuardedStream(self._inner.connect_tcp(host, port, bound, local_address, socket_options), self._guard)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bound = _bound(self._guard, timeout, httpcore.ConnectTimeout)
        return GuardedStream(self._inner.connect_unix_socket(path, bound, socket_options), self._guard)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedStream(httpcore.NetworkStream):
    """One connection's socket: reads wait in slices, so the deadline and the stop are seen in time."""

    def __init__(self, inner: httpcore.NetworkStream, guard: RequestGuard) -> None:
        self._inner = inner
        self._guard = guard

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        started = time.monotonic()
        while True:
            left, stopping = self._guard.left(timeout, started)
            if left <= 0:
                raise _expired(stopping, httpcore.ReadTimeout)
            try:
                return self._inner.read(max_bytes, min(left, SLICE_S))
            except httpcore.ReadTimeout:
                continue  # a quiet slice is no error yet: nothing was consumed, look at the clock again

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Not sliced: a write that timed out half-way cannot be resumed. Request bodies are small, so
        # a write waits only when the server stops reading, and then at most until the deadline.
        self._inner.write(buffer, _bound(self._guard, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        bound = _bound(self._guard, timeout, httpcore.ConnectTimeout)
        return GuardedStream(self._inner.start_tls(ssl_context, server_hostname, bound), self._guard)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _bound(guard: RequestGuard, timeout: float | None, timed_out: type[Exception]) -> float:
    left, stopping = guard.left(timeout)
    if left <= 0:
        raise _expired(stopping, timed_out)
    return left


def _expired(stopping: bool, timed_out: type[Exception]) -> Exception:
    # A cut-off is no timeout: the client reports the request's fate as unknown instead of retrying it.
    return httpcore.ReadError(CUT_OFF) if stopping else timed_out("no complete answer before the deadline")


def guard_transport(transport: httpx.BaseTransport, guard: RequestGuard) -> None:
    """Route an httpx transport's sockets through ``guard``; other transports (in-process) are left alone."""
    pool = getattr(transport, "_pool", None)  # httpx.HTTPTransport's httpcore pool (a proxy's too)
    if isinstance(transport, httpx.HTTPTransport):
        # httpx takes no network backend of its own; httpcore's pool keeps it in this attribute.
        if pool is None or not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            raise RuntimeError("this httpcore keeps its network backend elsewhere: --timeout cannot be enforced")
        pool._network_backend = GuardedBackend(pool._network_backend, guard)
