"""The checks that refuse a whole run before anything is sent, and the trimming a run's flags ask for.

Pure apart from reading the state: a refused run has written nothing and sent nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from bulksync.columns import ROW
from bulksync.config import DeleteLimit, Mode
from bulksync.errors import DeleteGuardError, StateError
from bulksync.plan.actions import Action
from bulksync.plan.diff import Classified
from bulksync.state.store import StateStore

Skipped = tuple[str, pl.DataFrame, str]  # action not taken, its rows, why


def refuse_empty_source(source: Path, valid_rows: int, known: int) -> None:
    """A source with no valid row is a broken export, never an instruction to delete everyone."""
    if valid_rows == 0 and known:
        raise DeleteGuardError(
            f"{source} has no valid rows: refusing to delete all {known:,} contacts in state, "
            "whatever --max-delete says. Nothing was sent. Check the export"
        )


def check_delete_limit(deletes: int, known: int, limit: DeleteLimit) -> None:
    """The guard against mirroring a truncated export: refuse the whole run, send nothing."""
    if deletes and not limit.allows(deletes, known):
        share = 100 * deletes / known if known else 100
        raise DeleteGuardError(
            f"refusing to delete {deletes:,} of the {known:,} contacts in state ({share:.0f}%): more than "
            f"{limit.describe()}. Nothing was sent. If the source is complete, pass --max-delete {deletes} "
            "(or a share such as --max-delete 50%)"
        )


def limited(frame: pl.DataFrame, limit: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first ``limit`` valid rows of the source, and the rest (a trial run processes only those)."""
    if limit is None or frame.height <= limit:
        return frame, frame.clear()
    ordered = frame.sort(ROW)
    return ordered.head(limit), ordered.slice(limit)


def for_mode(classified: Classified, mode: Mode) -> tuple[Classified, list[Skipped]]:
    """Drop what the sync mode forbids; returns what was dropped as (action, rows, reason)."""
    if mode == "create-only" and classified.changed.height:
        reason = "changed, but --mode create-only never updates an existing contact"
        return replace(classified, changed=classified.changed.clear()), [("update", classified.changed, reason)]
    if mode == "update-only" and classified.new.height:
        reason = "new to the state: --mode update-only only updates contacts bulksync synced before"
        return replace(classified, new=classified.new.clear()), [("create", classified.new, reason)]
    return classified, []


def check_plan_is_current(generation: int, actions: list[Action], state: StateStore) -> None:
    """A plan is only valid against the state it was made from: say what moved if it is not."""
    now = state.generation()
    if now == generation:
        return
    fields = state.fields_for(action.key for action in actions)
    moved = [action.key for action in actions if fields.get(action.key, {}) != action.before]
    detail = (
        f"{len(moved)} planned contact(s) changed: {', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}"
        if moved else "other contacts changed"
    )
    raise StateError(
        f"{state.path} changed since the plan was made (generation {generation} -> {now}; {detail}); "
        "nothing was sent: make a new plan with 'bulksync sync SOURCE --dry-run --plan PATH'"
    )
