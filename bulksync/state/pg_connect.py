"""Connecting to a PostgreSQL state's database: libpq settings, the server-side bounds on every wait,
and its messages without the URL's passwords."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bulksync.errors import StateError
from bulksync.location import StateURL
from bulksync.logs import redact

# libpq's: a server that vanishes is noticed within a minute idle (keepalives), 30 s when sending.
CONNECTION_DEFAULTS = {"connect_timeout": "10", "application_name": "bulksync", "keepalives_idle": "30",
                        "keepalives_interval": "10", "keepalives_count": "3", "tcp_user_timeout": "30000"}
# The server's, where nobody set one. Nothing else writes a state's schema, so any wait for a lock
# there is someone's LOCK TABLE or migration: the run stops rather than wait for it.
LOCK_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 60.0  # a state statement takes milliseconds; a baseline's get more (BASELINE_S_PER_MILLION)
IDLE_IN_TRANSACTION_S = 60.0  # a run stalled inside a transaction loses its session, and the lock with it
BASELINE_S_PER_MILLION = 120.0  # replacing 1M contacts took 19 s on the test server: six times that
CLIENT_MARGIN_S = 15.0  # the client waits for the server's statement timeout and this much more


def connect(url: StateURL) -> psycopg.Connection[tuple[Any, ...]]:
    """One autocommit connection to the state's database, with bulksync's defaults under the URL's."""
    params = {**CONNECTION_DEFAULTS, **parsed(url)}
    try:
        return psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.Error as exc:
        raise StateError(
            f"cannot connect to the state database {url}: {reason(exc, url)}; check the URL, that the server "
            "is up, and the password (in BULKSYNC_STATE, PGPASSWORD or ~/.pgpass)"
        ) from None


def bound_server(db: psycopg.Connection[tuple[Any, ...]]) -> float:
    """Set the server's timeouts for this session where nobody has (``options=-c name=value`` in the
    URL, ALTER ROLE or ALTER DATABASE win); returns the statement timeout (s) the client waits out."""
    wanted = {"lock_timeout": LOCK_TIMEOUT_S, "statement_timeout": STATEMENT_TIMEOUT_S,
              "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_S}
    rows = db.execute("SELECT name, setting::bigint, source FROM pg_settings WHERE name = ANY(%s)",
                      (list(wanted),)).fetchall()
    statement_s = STATEMENT_TIMEOUT_S
    for name, setting_ms, source in rows:
        ms = round(wanted[name] * 1000) if source == "default" else int(setting_ms)
        if source == "default":
            db.execute("SELECT set_config(%s, %s, false)", (name, f"{ms}ms"))
        if name == "statement_timeout":
            statement_s = ms / 1000
    return statement_s


def parsed(url: StateURL) -> dict[str, str]:
    """The URL as libpq's connection parameters (its own parser: what libpq will do, it does here)."""
    try:
        return {name: str(value) for name, value in conninfo_to_dict(url.conninfo).items() if value is not None}
    except psycopg.Error as exc:
        raise StateError(f"{url}: not a PostgreSQL URL libpq can use ({reason(exc, url)})") from None


def reason(exc: BaseException, url: StateURL) -> str:
    """The server's words (without the row they quote) or libpq's, on one line, without the URL's
    passwords (libpq quotes what it cannot read)."""
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    text = primary or str(exc)
    return redact(" ".join(line.strip() for line in text.splitlines() if line.strip()), url.secrets) or (
        type(exc).__name__)


def readable(fd: int) -> bool:
    """Whether ``fd`` has something to read, or was hung up (poll: select() refuses an fd past 1023)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
