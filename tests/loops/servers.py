"""A small misbehaving HTTP server on 127.0.0.1: answers like Loops, or trickles, hangs, redirects.

Routes are ``"METHOD /v1/path"`` -> a behaviour; unrouted requests get Loops-like successes. Every
request seen is logged, so a test acts once progress is visible instead of after a fixed sleep.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

API_KEY_ANSWER = {"success": True, "teamName": "Hostile team"}


@dataclass(frozen=True)
class Answer:
    """A whole response at once."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"success": True})
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # the body as is, instead of ``body`` as JSON

    def encoded(self) -> bytes:
        content = self.raw if self.raw is not None else json.dumps(self.body).encode()
        head = [f"HTTP/1.1 {self.status} X", f"Content-Length: {len(content)}"]
        if self.raw is None:
            head.append("Content-Type: application/json")
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + content


@dataclass(frozen=True)
class Trickle:
    """A valid response, one byte every ``interval_s`` (status line and headers too); ``forever`` pads
    the headers without end, so no response ever completes."""

    answer: Answer = field(default_factory=Answer)
    interval_s: float = 0.1
    forever: bool = False


@dataclass(frozen=True)
class Hang:
    """Read the request, then say nothing until the server stops."""


Behaviour = Answer | Trickle | Hang


class MisbehavingServer:
    """A threaded HTTP/1.1 server; use as a context manager, which stops it and its threads."""

    def __init__(self, routes: dict[str, Behaviour] | None = None) -> None:
        self.routes: dict[str, Behaviour] = dict(routes or {})
        self.seen: list[str] = []  # "METHOD /path" of every request, in arrival order
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/api"

    def __enter__(self) -> MisbehavingServer:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._connections:
                _quietly(conn.shutdown, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()

    def saw(self, request: str) -> bool:
        with self._lock:
            return request in self.seen

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(conn, buffer, self._stop)
                if request is None:
                    return
                with self._lock:
                    self.seen.append(request)
                if not self._respond(conn, self.routes.get(request, _default(request))):
                    return
        except OSError:
            return
        finally:
            _quietly(conn.close)

    def _respond(self, conn: socket.socket, behaviour: Behaviour) -> bool:
        """Answer one request; False when the connection is done with."""
        if isinstance(behaviour, Hang):
            self._stop.wait()
            return False
        if isinstance(behaviour, Answer):
            conn.sendall(behaviour.encoded())
            return True
        data = behaviour.answer.encoded()
        if behaviour.forever:  # a status line, then one header that never ends
            data = data.partition(b"\r\n")[0] + b"\r\nX-Padding: "
        for byte in itertools.chain(data, itertools.repeat(ord("z")) if behaviour.forever else ()):
            if self._stop.wait(behaviour.interval_s):
                return False
            conn.sendall(bytes([byte]))
        return True


def _default(request: str) -> Answer:
    if request == "GET /v1/api-key":
        return Answer(body=API_KEY_ANSWER)
    if request in ("GET /v1/contacts/properties", "GET /v1/lists"):
        return Answer(body=[])
    return Answer()


def _read_request(conn: socket.socket, buffer: bytes, stop: threading.Event) -> tuple[str | None, bytes]:
    """One request's ``"METHOD /v1/path"`` (base path and query left off), its body dropped; None at the end."""
    conn.settimeout(0.1)
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(conn, stop)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buffer) < length:
        chunk = _recv(conn, stop)
        if not chunk:
            return None, b""
        buffer += chunk
    path = target.split("?")[0].removeprefix("/api")
    return f"{method} {path}", buffer[length:]


def _recv(conn: socket.socket, stop: threading.Event) -> bytes:
    while not stop.is_set():
        try:
            return conn.recv(65536)
        except TimeoutError:
            continue
    return b""


def _quietly(call: Any, *args: Any) -> None:
    with contextlib.suppress(OSError):  # the peer may be gone already
        call(*args)
