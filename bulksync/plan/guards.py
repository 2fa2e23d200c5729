"""The checks that refuse a whole run before anything is sent, and the trimming a run's flags ask for.

Pure apart from reading the state: a refused run has written nothing and sent nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import polars as pl

from bulksync.columns import KEY, ROW
from bulksync.config import Mode, RunLimit
from bulksync.errors import ClearGuardError, DeleteGuardError, StateError
from bulksync.fields import is_list_field
from bulksync.plan.actions import NEVER_CLEARED, SLICE_ROWS, Action
from bulksync.plan.diff import Classified
from bulksync.state.store import StateStore

Skipped = tuple[str, pl.DataFrame, str]  # action not taken, its rows, why


def refuse_empty_source(source: Path | str, valid_rows: int, known: int) -> None:
    """A source with no valid row is a broken export, never an instruction to delete everyone."""
    if valid_rows == 0 and known:
        raise DeleteGuardError(
            f"{source} has no valid rows: refusing to delete all {known:,} contacts in state, "
            "whatever --max-delete says. Nothing was sent. Check the export"
        )


def check_delete_limit(deletes: int, known: int, limit: RunLimit) -> None:
    """The guard against mirroring a truncated export: refuse the whole run, send nothing."""
    if deletes and not limit.allows(deletes, known):
        share = 100 * deletes / known if known else 100
        raise DeleteGuardError(
            f"refusing to delete {deletes:,} of the {known:,} contacts in state ({share:.0f}%): more than "
            f"{limit.describe('--max-delete')}. Nothing was sent. If the source is complete, pass "
            f"--max-delete {deletes} (or a share such as --max-delete 50%)"
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


def count_clears(changed: pl.DataFrame, state: StateStore) -> dict[str, int]:
    """How many changed contacts each field would be cleared for (sent ``null``): a field bulksync
    set before whose cell is now empty, or whose column is gone from the source."""
    clears: Counter[str] = Counter()
    for chunk in changed.iter_slices(SLICE_ROWS):
        previous = state.fields_for(chunk[KEY].to_list())
        for row in chunk.iter_rows(named=True):
            for name in previous.get(row[KEY], {}):
                if row.get(name) is None and name not in NEVER_CLEARED and not is_list_field(name):
                    clears[name] += 1
    return dict(clears)


def check_clear_limit(clears: dict[str, int], known: int, limit: RunLimit) -> None:
    """The guard against an export that lost a column: clearing a field for much of the audience."""
    over = {name: count for name, count in sorted(clears.items()) if not limit.allows(count, known)}
    if not over:
        return
    listed = ", ".join(f"{name} for {count:,} ({100 * count / known:.0f}%)" for name, count in over.items())
    most = max(over.values())
    raise ClearGuardError(
        f"refusing to clear {listed} of the {known:,} contacts in state: more than {limit.describe('--max-clear')}. "
        f"Nothing was sent. If the source really empties these fields, pass --max-clear {most} (or a share "
        "such as --max-clear 50%); to leave empty cells alone in Loops, pass --keep-empty"
    )
