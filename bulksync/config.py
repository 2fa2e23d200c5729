"""The settings of one run, built by the CLI from flags and environment and passed to the library."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from bulksync.errors import ConfigError
from bulksync.location import StateLocation, StateURL, state_location

DEFAULT_BASE_URL = "https://app.loops.so/api"
DEFAULT_STATE_PATH = Path("bulksync.state.db")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
KeyField = Literal["email", "userId"]
CreateVia = Literal["create", "update"]
Mode = Literal["upsert", "create-only", "update-only"]


@dataclass(frozen=True)
class RunLimit:
    """How many contacts a run may delete (``--max-delete``) or clear a field of (``--max-clear``):
    a count, or a share of the contacts in state."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> RunLimit:
        """``"25"`` or ``"5%"``; raises ValueError otherwise."""
        text = text.strip()
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= 100:
                raise ValueError(f"{text}: a share must be between 0% and 100%")
            return cls(percent=percent)
        count = int(text)
        if count < 0:
            raise ValueError(f"{text}: a count must be 0 or more")
        return cls(count=count)

    def describe(self, flag: str) -> str:
        if self.count is not None:
            return f"{flag} {self.count}"
        if self.percent is not None:
            return f"{flag} {self.percent:g}%"
        return "the default limit (more than 10 contacts and more than 10% of the state)"

    def allows(self, contacts: int, known: int) -> bool:
        if self.count is not None:
            return contacts <= self.count
        if self.percent is not None:
            return contacts <= known * self.percent / 100
        # The default: refuse only when a run would touch more than 10 contacts AND more than 10%.
        return contacts <= 10 or contacts <= known * 0.10


@dataclass(frozen=True)
class HttpConfig:
    """How to reach Loops and how hard to push."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    rate_limit: float | None = None  # a ceiling; None: the limit Loops announces (10/s until it says)
    concurrency: int = 32  # a ceiling: the pool is sized from the latency measured (loops/inflight.py)
    max_retries: int = 6
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    outage_wait: float = 900.0  # seconds a run rides out Loops failing every request (--outage-wait)


@dataclass(frozen=True)
class SyncConfig:
    """Everything ``run_sync`` needs to know about one run."""

    source: Path | str  # a local file; standard input ("-") and URLs stay text (see source_location)
    state_path: StateLocation = DEFAULT_STATE_PATH  # a file, or a PostgreSQL URL
    key: KeyField = "email"
    dry_run: bool = False
    delete_missing: bool = False
    keep_empty: bool = False
    resubscribe: bool = False
    max_delete: RunLimit = field(default_factory=RunLimit)
    max_clear: RunLimit = field(default_factory=RunLimit)
    report_path: Path | None = None
    summary_json_path: Path | None = None
    report_dir: Path | None = None
    plan_path: Path | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    source_format: str | None = None  # --format: csv, tsv, jsonl or parquet (default: from the name)
    storage_options: tuple[tuple[str, str], ...] = ()  # --storage-option KEY=VALUE, for a URL source
    mapping_path: Path | None = None
    preset: str | None = None
    create_properties: bool = False
    mode: Mode = "upsert"
    limit: int | None = None
    report_format: Literal["csv", "jsonl"] = "csv"
    progress: bool = True
    create_via: CreateVia = "update"
    http: HttpConfig = field(default_factory=HttpConfig)

    def __post_init__(self) -> None:
        if self.delete_missing and self.mode != "upsert":
            raise ConfigError(f"--delete-missing works with --mode upsert only, not --mode {self.mode}")
        if self.delete_missing and self.limit is not None:
            raise ConfigError("--limit is for trial runs and cannot be combined with --delete-missing")
        if self.plan_path is not None and not self.dry_run:
            raise ConfigError("--plan writes a plan without sending anything: use it with --dry-run")

    def inputs(self) -> dict[str, Path | None]:
        """The files the run reads (or keeps, as the state), by the flag that names them."""
        state = self.state_path if isinstance(self.state_path, Path) else None  # a URL's state is no file
        source = self.source if isinstance(self.source, Path) else None  # stdin and URLs are no local file
        return {"SOURCE": source, "--state": state, "--mapping": self.mapping_path}

    def outputs(self) -> dict[str, Path | None]:
        """The files the run writes besides the state, by the flag that names them."""
        return {"--report": self.report_path, "--summary-json": self.summary_json_path, "--plan": self.plan_path}


def positive_number(value: Any) -> float:
    """A finite number above 0 (a rate, a timeout); raises ValueError otherwise."""
    number = _number(value, float)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"must be a finite number above 0, got {value}")
    return number


def whole_number(value: Any, minimum: int) -> int:
    """A whole number of at least ``minimum``; raises ValueError otherwise (2.5 is not rounded)."""
    number = _number(value, float)
    if not number.is_integer() or number < minimum:
        raise ValueError(f"must be a whole number, {minimum} or more, got {value}")
    return int(number)


def _number(value: Any, kind: type[float]) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value}")
    return kind(value)


def duration(value: Any) -> float:
    """Seconds from ``90``, ``90s``, ``15m`` or ``1h`` (0 or more); raises ValueError otherwise."""
    text = str(value).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    number = _number(text[:-1] if scale else text, float) * (scale or 1)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"expected a duration such as 90s, 15m or 1h, got {value}")
    return number


def delimiter(value: Any) -> str:
    """One separator character; ``tab`` or ``\\t`` for a tab."""
    text = {"\\t": "\t", "tab": "\t"}.get(str(value), str(value))
    if len(text) != 1:
        raise ValueError(f"expected one character such as ';' or 'tab', got {value!r}")
    return text


SOURCE_FORMATS = ("csv", "tsv", "jsonl", "parquet")
STDIN = "-"


def source_location(value: str | Path) -> Path | str:
    """SOURCE as a run holds it: a local file's Path; standard input (``-``) and URLs (``s3://``,
    ``https://``, ...) as given, since a Path would fold their ``//``. ``./-`` is a file named ``-``."""
    text = os.fspath(value)
    return text if text == STDIN or "://" in text else Path(value)


def storage_option(value: Any) -> tuple[str, str]:
    """One ``--storage-option KEY=VALUE`` as (key, value); raises ValueError (never showing the value,
    which may be a secret) otherwise."""
    key, equals, setting = str(value).partition("=")
    if not equals or not key.strip():
        raise ValueError("expected KEY=VALUE, such as aws_region=eu-west-1")
    return key.strip().lower(), setting


# The ``sync`` command's long options, underscored: what bulksync.sync(**options) and the CLI both accept.
# Each maps to (SyncConfig or HttpConfig field, conversion).
_PATH, _TEXT = "path", "text"
SYNC_OPTIONS: dict[str, tuple[str, str]] = {
    "mapping": ("mapping_path", _PATH), "preset": ("preset", _TEXT), "delimiter": ("delimiter", "delimiter"),
    "encoding": ("encoding", _TEXT), "format": ("source_format", "format"),
    "storage_option": ("storage_options", "storage_options"), "key": ("key", "key"), "plan": ("plan_path", _PATH),
    "report_dir": ("report_dir", _PATH), "report_format": ("report_format", "report_format"),
    "summary_json": ("summary_json_path", _PATH), "delete_missing": ("delete_missing", "flag"),
    "max_delete": ("max_delete", "limit"), "max_clear": ("max_clear", "limit"), "keep_empty": ("keep_empty", "flag"),
    "resubscribe": ("resubscribe", "flag"), "create_properties": ("create_properties", "flag"),
    "mode": ("mode", "mode"), "limit": ("limit", "count"), "create_via": ("create_via", "create_via"),
    "rate_limit": ("http.rate_limit", "positive"), "concurrency": ("http.concurrency", "count"),
    "max_retries": ("http.max_retries", "retries"), "timeout": ("http.read_timeout", "positive"),
    "outage_wait": ("http.outage_wait", "duration"),
}
_CHOICES = {"key": ("email", "userId"), "report_format": ("csv", "jsonl"), "format": SOURCE_FORMATS,
            "mode": ("upsert", "create-only", "update-only"), "create_via": ("create", "update")}


def sync_config(
    source: str | Path,
    state: str | Path | StateURL = DEFAULT_STATE_PATH,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    dry_run: bool = False,
    progress: bool = False,
    report: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> SyncConfig:
    """A :class:`SyncConfig` from the ``sync`` command's options (underscored); the key and base URL
    default to ``LOOPS_API_KEY`` and ``LOOPS_BASE_URL`` as on the command line."""
    environ = os.environ if environ is None else environ
    dry_run, progress = _converted("dry_run", "flag", dry_run), _converted("progress", "flag", progress)
    values: dict[str, Any] = {}
    key = (api_key or environ.get("LOOPS_API_KEY") or "").strip() or None  # a key file's line end is harmless
    if key is not None:
        check_api_key(key)
    http: dict[str, Any] = {
        "api_key": key,
        "base_url": base_url or environ.get("LOOPS_BASE_URL") or DEFAULT_BASE_URL,
    }
    for name, value in options.items():
        if name not in SYNC_OPTIONS:
            close = difflib.get_close_matches(name, SYNC_OPTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown option {name!r}{hint}; options are those of 'bulksync sync', underscored")
        target, kind = SYNC_OPTIONS[name]
        if value is None:
            continue
        converted = _converted(name, kind, value)
        if target.startswith("http."):
            http[target.removeprefix("http.")] = converted
        else:
            values[target] = converted
    return SyncConfig(
        source=source_location(source), state_path=_state(state), dry_run=dry_run, progress=progress,
        report_path=Path(report) if report is not None else None, http=HttpConfig(**http), **values,
    )


def _state(value: str | Path | StateURL) -> StateLocation:
    try:
        return state_location(value)
    except ValueError as exc:  # the message never holds the password
        raise ConfigError(f"--state {exc}") from None


def check_api_key(key: str) -> None:
    """A key that cannot travel in an HTTP header is refused up front, never echoed: an error about
    the header would print it."""
    if not key.isascii() or not key.isprintable() or any(char.isspace() for char in key):
        raise ConfigError(
            "the API key (LOOPS_API_KEY) holds a line break, a space or a character that is not printable "
            "ASCII, so it cannot be sent (it is not shown here); set it to the key alone, on one line"
        )


def _converted(name: str, kind: str, value: Any) -> Any:
    """One option's value as the config holds it, or a ConfigError naming the option."""
    try:
        if kind == _PATH:
            return Path(value)
        if kind == _TEXT:
            return str(value)
        if kind == "flag":
            if not isinstance(value, bool):
                raise ValueError("expected True or False")
            return value
        if kind in _CHOICES:
            if value not in _CHOICES[kind]:
                raise ValueError(f"expected one of {', '.join(_CHOICES[kind])}")
            return value
        if kind == "limit":
            return value if isinstance(value, RunLimit) else RunLimit.parse(str(value))
        if kind == "delimiter":
            return delimiter(value)
        if kind == "storage_options":
            pairs = value.items() if isinstance(value, Mapping) else [value] if isinstance(value, str) else value
            return tuple((str(pair[0]), str(pair[1])) if isinstance(pair, tuple) else storage_option(pair)
                         for pair in pairs)
        if kind == "positive":
            return positive_number(value)
        if kind == "duration":
            return duration(value)
        return whole_number(value, 0 if kind == "retries" else 1)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {name}={value!r}: {exc}") from None


@dataclass(frozen=True)
class Runtime:
    """What a run needs from its surroundings, injectable for tests."""

    # An httpx transport (the emulator's, in tests); typed loosely so this bottom layer needs no httpx.
    transport: Any = None
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    stop: threading.Event | None = None

    def should_stop(self) -> bool:
        return self.stop is not None and self.stop.is_set()


def check_base_url(base_url: str) -> None:
    """The key only travels over TLS; plain http is allowed to loopback (the emulator) alone."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        return
    raise ConfigError(
        f"refusing base URL {base_url!r}: the API key is only sent over https "
        "(plain http is allowed for 127.0.0.1/localhost only)"
    )


def is_loopback(host: str) -> bool:
    """localhost, or an address in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
