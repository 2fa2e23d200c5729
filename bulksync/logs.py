"""Log lines for people running bulksync unattended: one line per retry or failure, never the key.

Each line carries what a morning reader needs: UTC time, level, source row, contact key, HTTP
status and attempt. ``--log-format json`` writes the same as one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, TextIO

from bulksync.files import open_private

log = logging.getLogger("bulksync")
FIELDS = ("row", "key", "http_status", "attempt")


def context(row: int | None = None, key: str | None = None, http_status: int | None = None,
            attempt: int | None = None) -> dict[str, Any]:
    """The ``extra`` of a log call about one contact."""
    return {"row": row, "key": key, "http_status": http_status, "attempt": attempt}


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in ``text``: the API key must never reach a terminal, log or file."""
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


class _Redacting(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), self._secrets), ()
        return True


def _stamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = _stamp(record)
        about = " ".join(
            f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None)) is not None
        )
        return f"{stamp} {record.levelname} {record.getMessage()}" + (f" [{about}]" if about else "")


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _stamp(record), "level": record.levelname, "message": record.getMessage()}
        line.update({name: value for name in FIELDS if (value := getattr(record, name, None)) is not None})
        return json.dumps(line, ensure_ascii=False)


class _Lines(logging.Handler):
    """Each line to every stream under one lock: the terminal and the log file never differ in order
    (two handlers would each take their own lock, and worker threads interleave between them)."""

    def __init__(self, streams: Sequence[IO[str]]) -> None:
        super().__init__()
        self._streams = streams

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a log line must never stop a run
            self.handleError(record)
            return
        for stream in self._streams:  # a closed stderr must not cost the log file its line
            try:
                stream.write(line)
                stream.flush()
            except Exception:
                self.handleError(record)

    def close(self) -> None:
        for stream in self._streams[1:]:  # the first is the caller's (stderr): not ours to close
            stream.close()
        super().close()


def configure(stream: TextIO, *, level: int, secrets: Sequence[str], log_file: Path | None = None,
              fmt: str = "text") -> None:
    """Warnings (or more, with -v) to ``stream`` and, if given, appended to ``log_file``."""
    streams: list[IO[str]] = [stream]
    if log_file is not None:
        streams.append(open_private(log_file, append=True))  # holds contact keys
    handler = _Lines(streams)
    handler.setFormatter(_Json() if fmt == "json" else _Text())
    handler.addFilter(_Redacting(secrets))
    for old in log.handlers:
        old.close()
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # psycopg's own lines (a PostgreSQL state) the same way, stamped and redacted; its chatter below
    # warnings (every connection attempt, every query with DEBUG) stays out even with --debug.
    driver = logging.getLogger("psycopg")
    driver.handlers[:] = [handler]
    driver.setLevel(logging.WARNING)
    driver.propagate = False
