"""Servers on 127.0.0.1 for the URL sources: an S3-compatible one (moto's) and a small web server.

``FileServer`` serves ``files`` (name -> bytes) with ``Range`` and ``HEAD``, as a CDN or a bucket's
https endpoint does, plus ways to fail: ``/cut/NAME`` promises the whole file and sends half of it,
``/403/NAME`` refuses, and any name it does not hold is a 404. Every request is logged.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

BUCKET = "exports"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}


@dataclass
class FileServer:
    """A threaded HTTP/1.1 server of ``files``; use as a context manager."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range

    def __enter__(self) -> FileServer:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{path}"


def _handler(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: the test reads ``requests``
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            server.requests.append((self.command, self.path, self.headers.get("Range")))
            path = unquote(self.path.partition("?")[0]).lstrip("/")
            mode, _, name = path.partition("/") if path.startswith(("cut/", "403/")) else ("", "", path)
            if mode == "403":
                return self._status(403, b"<Error><Code>AccessDenied</Code></Error>")
            if name not in server.files:
                return self._status(404, b"not found")
            data = server.files[name]
            start, end = 0, len(data)
            wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if wanted:
                first, last = wanted.groups()
                start, end = ((max(0, len(data) - int(last)), len(data)) if not first
                              else (int(first), min(len(data), int(last) + 1 if last else len(data))))
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
            self.send_header("ETag", '"v1"')
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return None
            if mode == "cut":  # the promised length, half of it sent, the connection closed
                self.wfile.write(data[start:start + (end - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            self.wfile.write(data[start:end])
            return None

        def _status(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)

    return Handler


@dataclass
class S3Server:
    """moto's S3 on 127.0.0.1 with one bucket; ``put`` stores an object, ``environ`` points a client at it."""

    client: Any
    endpoint: str

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"s3://{BUCKET}/{key}"

    @property
    def environ(self) -> dict[str, str]:
        """What a runner's environment would hold: credentials, the endpoint, plain http allowed."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}


@contextmanager
def running_s3() -> Iterator[S3Server]:
    """moto's server on a free loopback port, stopped afterwards."""
    import boto3  # noqa: PLC0415 (dev dependencies, for these tests only)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_REGION"],
                              aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket=BUCKET)
        yield S3Server(client, endpoint)
    finally:
        moto.stop()
