"""The state's interface: what bulksync last pushed successfully, per contact, and the run's notes.

A store records a contact only after Loops confirmed the write. SQLite (``sqlite.py``) is the
embedded default, PostgreSQL (``postgres.py``) the one for runners that share a state; every store
offers exactly these methods, so the stages above never know which one they talk to.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import polars as pl

from bulksync.errors import StateError, printable
from bulksync.location import StateLocation

Fields = dict[str, str]
# key, hash of the synced source row, fields now in Loops, held back, Loops' id for the contact (if known)
Record = tuple[str, int, Fields, bool, str | None]


@dataclass(frozen=True)
class Tombstone:
    """What Loops had for a contact bulksync deleted, so a re-added row never undoes an unsubscribe."""

    key: str
    deleted_at: str
    unsubscribed: bool
    left_lists: tuple[str, ...] = ()  # lists bulksync had added it to that it had left


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StateStore(ABC):
    """One audience's state. Read-only stores (a dry run) refuse every write."""

    path: StateLocation
    readonly: bool

    # -- the run's notes (key, generation, account, last run) ------------------------------------
    @abstractmethod
    def meta(self, name: str) -> str | None:
        """A note by name, or None."""

    @abstractmethod
    def set_meta(self, values: Mapping[str, str]) -> None:
        """Set notes, in one transaction."""

    def generation(self) -> int:
        """Bumped by every write to the contacts: a plan is valid only at the generation it saw."""
        return int(self.meta("generation") or 0)

    def check_key(self, key: str) -> None:
        """A state identifies contacts one way for life; using it the other way is an error."""
        stored = self.meta("key")
        if stored is not None and stored != key:
            other = "another --state file" if isinstance(self.path, Path) else "another schema (?schema=NAME)"
            raise StateError(f"{self.path} identifies contacts by {stored}, not {key}; pass --key {stored} "
                             f"or use {other}")

    # -- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def count(self) -> int:
        """How many contacts the state holds."""

    @abstractmethod
    def hashes(self) -> pl.DataFrame:
        """Every key (``KEY``) with its row hash (``STATE_HASH``), as a frame."""

    @abstractmethod
    def fields_for(self, keys: Iterable[str]) -> dict[str, Fields]:
        """The fields Loops has, as bulksync set them, for each known key among ``keys``."""

    @abstractmethod
    def contacts(self) -> Iterator[tuple[str, Fields]]:
        """Every contact with its fields, in key order."""

    @abstractmethod
    def held_back_keys(self) -> list[str]:
        """Keys whose source says ``subscribed: true`` that bulksync did not send (see ``--resubscribe``)."""

    # -- writing ---------------------------------------------------------------------------------
    @abstractmethod
    def save(self, records: Iterable[Record]) -> None:
        """Record confirmed contacts, in one transaction."""

    @abstractmethod
    def loops_ids(self, keys: Iterable[str]) -> dict[str, str]:
        """Loops' contact id, for each known key among ``keys`` whose id was recorded."""

    @abstractmethod
    def tombstones_for(self, keys: Iterable[str]) -> dict[str, Tombstone]:
        """The tombstones of deleted contacts among ``keys``."""

    @abstractmethod
    def save_tombstones(self, tombstones: Iterable[Tombstone]) -> None:
        """Remember deleted contacts (replacing an older tombstone of the same key)."""

    @abstractmethod
    def drop_tombstone(self, key: str) -> bool:
        """Forget one tombstone on purpose; True if there was one."""

    @abstractmethod
    def tombstone_count(self) -> int:
        """How many tombstones the state keeps."""

    @abstractmethod
    def save_frame(self, frame: pl.DataFrame, key: str, row_hash: str, fields: list[str]) -> None:
        """Record a whole frame of contacts at once (a baseline)."""

    @abstractmethod
    def forget(self, keys: Iterable[str]) -> None:
        """Drop deleted contacts."""

    @abstractmethod
    def save_snapshot(self, hashes: pl.DataFrame) -> None:
        """Remember ``hashes`` (equal to the contacts now, by key and row hash) for the next plan."""

    @abstractmethod
    def check_alive(self) -> None:
        """Raise if the store can take no more writes (its connection, and with it its lock, is gone):
        the run must then stop sending at once. Cheap, and safe to call from any thread."""

    def stop_on(self, stop: threading.Event | None) -> None:  # noqa: B027 (a file's waits are its disk's)
        """From now on, a wait for the state ends soon after ``stop`` is set (a signal must end a run)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dump_fields(fields: Mapping[str, Any]) -> str:
    """Fields as stored: canonical JSON text."""
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def load_fields(location: StateLocation, key: str, text: str) -> Fields:
    """Stored fields; a null member (as polars writes absent values) means the field is not set."""
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not all(isinstance(v, str | None) for v in fields.values()):
        what = "the state file" if isinstance(location, Path) else "the state"
        raise StateError(
            f"{location}: {what} is damaged (the fields of {printable(key[:80])} are not a JSON "
            "object of text values); restore it from a backup or pass another --state"
        )
    return {name: value for name, value in fields.items() if value is not None}


def batches(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    """``keys`` sorted (neighbouring pages of an index), ``size`` at a time."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]
