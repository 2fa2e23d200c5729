"""Decide per contact: create, update, delete, or leave alone.

No I/O here. ``mark`` looks a batch of source rows up in the state's key-hash index (``StateIndex``)
and ``split`` turns the marked rows into creates, updates and deletes; ``classify`` does both for a
whole source at once. ``plan/actions.py`` turns only the changed rows into actions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from bulksync.columns import HASH, KEY, KEY_HASH, ROW, STATE_HASH, STATE_ROW, STATUS
from bulksync.plan.index import StateIndex, kept_positions, key_hash


@dataclass
class Classified:
    """The source split against the state: rows to create, rows changed, keys gone, and a count."""

    new: pl.DataFrame
    changed: pl.DataFrame
    missing: list[str]
    unchanged: int

    @property
    def total(self) -> int:
        """How many actions the plan holds."""
        return self.new.height + self.changed.height + len(self.missing)

    def filled(self, fields: list[str]) -> list[str]:
        """The ``fields`` that a row this run sends (a new or changed contact) gives a value."""
        # Each frame's column names as a set once: ``name in f.columns`` per field is quadratic in columns.
        rows = [(f, set(f.columns)) for f in (self.new, self.changed)]
        return [name for name in fields if any(name in names and f[name].null_count() < f.height for f, names in rows)]


UNCHANGED, CHANGED, NEW = 0, 1, 2


def mark(contacts: pl.DataFrame, index: StateIndex, recheck: pl.Series | None = None) -> pl.DataFrame:
    """``contacts`` (with ``HASH``) plus ``KEY_HASH``, ``STATE_ROW`` and ``STATUS``: NEW, CHANGED or
    UNCHANGED against the state; a key in ``recheck`` counts as changed even if its hash is not."""
    contacts = contacts.with_columns(key_hash().alias(KEY_HASH))
    positions = index.positions(contacts)
    stored = index.frame[STATE_HASH].gather(positions.fill_null(0)) if index.height else pl.lit(None, pl.Int64)
    same = pl.col(HASH) == pl.lit(stored) if index.height else pl.lit(False)
    if recheck is not None and recheck.len():
        same = same & ~pl.col(KEY).is_in(recheck.implode())
    status = (
        pl.when(pl.col(STATE_ROW).is_null()).then(pl.lit(NEW))
        .when(same).then(pl.lit(UNCHANGED))
        .otherwise(pl.lit(CHANGED))
    )
    return contacts.with_columns(positions).with_columns(status.cast(pl.UInt8).alias(STATUS))


def split(
    marked: pl.DataFrame,
    rows: pl.DataFrame,
    index: StateIndex,
    delete_missing: bool,
    present: Iterable[pl.Series] = (),
) -> Classified:
    """Classified rows: ``marked`` (one per contact, from :func:`mark`) says what each is; ``rows``
    holds at least the full rows of the new and changed ones. With ``delete_missing``, state contacts
    at none of the ``STATE_ROW`` positions of ``marked`` and ``present`` are missing."""
    status = marked[STATUS]
    new = _rows(rows, marked.filter(status == NEW)[ROW])
    changed = _rows(rows, marked.filter(status == CHANGED)[ROW])
    unchanged = int((status == UNCHANGED).sum())
    missing: list[str] = []
    if delete_missing and marked.height:  # a source with no valid rows never deletes anything
        seen = pl.concat([marked[STATE_ROW], *present]).drop_nulls()
        gone = index.frame.with_row_index(STATE_ROW).filter(~pl.col(STATE_ROW).is_in(seen.implode()))
        missing = gone[KEY].sort().to_list()
    return Classified(new=new, changed=changed, missing=missing, unchanged=unchanged)


def _rows(rows: pl.DataFrame, wanted: pl.Series) -> pl.DataFrame:
    picked = rows.filter(pl.col(ROW).is_in(wanted.implode()))
    return picked.drop(KEY_HASH, STATE_ROW, STATUS, strict=False).sort(ROW)


def classify(
    contacts: pl.DataFrame,
    state_hashes: pl.DataFrame,
    delete_missing: bool,
    recheck: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> Classified:
    """The whole source at once: ``contacts`` (one row per key, with ``HASH``) against the state's
    hashes. ``recheck`` keys count as changed; ``keep`` keys (rows rejected, still in the source)
    are never missing."""
    index = StateIndex.of(state_hashes)
    marked = mark(contacts, index, pl.Series(list(recheck), dtype=pl.String))
    return split(marked, marked, index, delete_missing, [kept_positions(index, keep)])
