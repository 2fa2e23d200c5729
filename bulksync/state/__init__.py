"""Where bulksync remembers what Loops confirmed, and the lock that keeps one run at a time."""

from __future__ import annotations

from pathlib import Path

from bulksync.state.sqlite import SQLiteStateStore
from bulksync.state.store import StateStore


def open_state(path: Path, *, readonly: bool = False) -> StateStore:
    """Open the state at ``path`` (created unless ``readonly``): SQLite, the embedded default."""
    return SQLiteStateStore.open(path, readonly=readonly)


__all__ = ["StateStore", "open_state"]
