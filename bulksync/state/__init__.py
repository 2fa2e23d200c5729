"""Where bulksync remembers what Loops confirmed, and the lock that keeps one run at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from bulksync.errors import StateError
from bulksync.location import StateLocation, StateURL
from bulksync.state.lock import run_lock
from bulksync.state.sqlite import SQLiteStateStore
from bulksync.state.store import StateStore

POSTGRES_EXTRA = "pip install 'bulksync[postgres]'"


def open_state(location: StateLocation, *, readonly: bool = False) -> StateStore:
    """Open the state at ``location`` (created unless ``readonly``): a file is SQLite, the embedded
    default; a ``postgresql://`` URL is a schema in PostgreSQL, locked while opened for writing."""
    if isinstance(location, StateURL):
        with _psycopg_needed():
            from bulksync.state.postgres import PostgresStateStore  # noqa: PLC0415 (an optional extra)
        return PostgresStateStore.open(location, readonly=readonly)
    return SQLiteStateStore.open(location, readonly=readonly)


def lock_for(location: StateLocation) -> AbstractContextManager[None]:
    """One run at a time, held around everything a run does to the state: a file's ``flock``. A
    PostgreSQL store holds its own lock on its connection from the moment it is opened for writing
    (refusing a second run then), so there is nothing more to hold here."""
    return run_lock(location) if isinstance(location, Path) else nullcontext()


def state_exists(location: StateLocation) -> bool:
    """Whether a run made this state already (``state show`` and ``drop-tombstone`` need one)."""
    if isinstance(location, Path):
        return location.exists()
    with _psycopg_needed():
        from bulksync.state.postgres import state_exists as schema_exists  # noqa: PLC0415 (an optional extra)
    return schema_exists(location)


@contextmanager
def _psycopg_needed() -> Iterator[None]:
    try:
        yield
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise StateError(f"a PostgreSQL state needs psycopg, which is not installed: {POSTGRES_EXTRA}") from None


__all__ = ["StateStore", "lock_for", "open_state", "state_exists"]
