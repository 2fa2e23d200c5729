"""The emulator on a loopback socket: a threaded HTTP/1.1 server with keep-alive."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from bulksync.emulator.core import LoopsEmulator
from bulksync.emulator.faults import Faults
from bulksync.emulator.wire import EmulatorResponse, error_response, json_response, strip_api_prefix

CONTROL_PREFIX = "/_emulator/"
_POLL_INTERVAL_S = 0.05
"""How often the serving thread checks for stop(); the default 0.5 s makes every stop slow."""
_IDLE_TIMEOUT_S = 60.0
"""A kept-alive connection idle this long is closed, so abandoned clients do not pin threads."""


def loopback_host(host: str) -> str:
    """The address to bind for `host`; ValueError unless it is a loopback address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(f"the emulator only listens on loopback addresses, not {host!r}")
    return str(address)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: LoopsEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report handler crashes, but not clients hanging up: retrying clients do that all the time."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for the
    # client's delayed ACK (about 40 ms), which would cap a keep-alive connection at ~25 requests/s.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and demos read the emulator's stats instead."""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(error_response(400, "Unreadable request body."))
            return
        path = strip_api_prefix(urlsplit(self.path).path)
        if path.startswith(CONTROL_PREFIX):
            self._send(control(self.server.emulator, self.command, path[len(CONTROL_PREFIX) :], body))
            return
        if (arrival := self.server.emulator.arrival_delay()) > 0:
            time.sleep(arrival)
        answer = self.server.emulator.handle(self.command, self.path, dict(self.headers.items()), body)
        if answer.hang:
            # The client's own timeout usually ends it first; the thread then drops a dead connection.
            self.server.emulator.wait_for_outage_end(answer.delay_s)
        elif answer.delay_s > 0:
            time.sleep(answer.delay_s)
        if answer.drop:
            self._drop()
        else:
            self._send(answer)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(iter(self._read_chunk, b""))
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunk(self) -> bytes:
        size = int(self.rfile.readline().split(b";")[0], 16)
        chunk = self.rfile.read(size)
        self.rfile.readline()  # the CRLF after the chunk (or after the last, empty one)
        return chunk

    def _send(self, answer: EmulatorResponse) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _drop(self) -> None:
        """Hang up without a byte of response, like a proxy that lost the upstream."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


_DONE = {"success": True}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_text(body: Any, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _configure(emulator: LoopsEmulator, body: Any) -> Any:
    faults, strict = body.get("faults"), body.get("strict_properties")
    if strict is not None and not isinstance(strict, bool):
        raise TypeError("strict_properties must be a boolean")
    emulator.configure(
        rate_limit=_optional_float(body.get("rate_limit")),
        faults=Faults(**faults) if faults is not None else None,
        background_rps=_optional_float(body.get("background_rps")),
        strict_properties=strict,
        rate_algorithm=_optional_text(body, "rate_algorithm"),
    )
    return _DONE


def _start_outage(emulator: LoopsEmulator, body: Any) -> Any:
    """{"seconds": 40, "kind": "500", "after": 0}: every key optional; no seconds means until DELETE."""
    unknown = set(body) - {"seconds", "kind", "after"}
    if unknown:
        raise ValueError(f"unknown outage key {sorted(unknown)[0]!r}")
    emulator.start_outage(
        _optional_float(body.get("seconds")),
        _optional_text(body, "kind") or "500",
        after=_optional_float(body.get("after")) or 0.0,
    )
    return emulator.outage()


def _end_outage(emulator: LoopsEmulator, _body: Any) -> Any:
    emulator.end_outage()
    return emulator.outage()


def _reset(emulator: LoopsEmulator, _body: Any) -> Any:
    emulator.reset()
    return _DONE


def _seed(emulator: LoopsEmulator, body: Any) -> Any:
    if not isinstance(body, list):
        raise TypeError("seed takes a JSON list of contacts")
    emulator.seed(body)
    return _DONE


def _add_property(emulator: LoopsEmulator, body: Any) -> Any:
    emulator.add_property(body["name"], body["type"])
    return _DONE


def _add_list(emulator: LoopsEmulator, body: Any) -> Any:
    emulator.add_list(body["id"], body["name"], body.get("isPublic", True))
    return _DONE


_CONTROL: dict[tuple[str, str], Callable[[LoopsEmulator, Any], Any]] = {
    ("GET", "contacts"): lambda emulator, _body: emulator.contacts(),
    ("GET", "stats"): lambda emulator, _body: emulator.stats(),
    ("GET", "requests"): lambda emulator, _body: emulator.request_log(),
    ("GET", "config"): lambda emulator, _body: emulator.settings(),
    ("POST", "reset"): _reset,
    ("POST", "config"): _configure,
    ("POST", "seed"): _seed,
    ("POST", "properties"): _add_property,
    ("POST", "lists"): _add_list,
    ("GET", "outage"): lambda emulator, _body: emulator.outage(),
    ("POST", "outage"): _start_outage,
    ("DELETE", "outage"): _end_outage,
}


def control(emulator: LoopsEmulator, method: str, action: str, body: bytes) -> EmulatorResponse:
    """Answer a control request (no auth, rate limit, faults or stats): inspect or set up the emulator."""
    operation = _CONTROL.get((method, action))
    if operation is None:
        return error_response(404, f"No control endpoint {method} {CONTROL_PREFIX}{action}.")
    try:
        payload = json.loads(body) if body.strip() else {}
        return json_response(200, operation(emulator, payload))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        return error_response(400, f"Bad control request: {error}")


class EmulatorServer:
    """A LoopsEmulator served over HTTP on a loopback address, in a background thread."""

    def __init__(self, emulator: LoopsEmulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator or LoopsEmulator()
        self.host = loopback_host(host)
        self.port = port
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        """Bind and serve; `url` then holds the base URL, such as http://127.0.0.1:54321/api."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self.emulator)
        self.port = self._server.server_address[1]
        shown_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown_host}:{self.port}/api"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_INTERVAL_S,), name="loops-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
