"""Stage 3: decide per contact: create, update (field by field), delete, or leave alone.

No I/O here. ``mark`` looks a batch of source rows up in the state's key-hash index (``StateIndex``)
and ``split`` turns the marked rows into creates, updates and deletes; ``classify`` does both for a
whole source at once. The ``plan_*`` functions turn only the changed rows into :class:`Action` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import polars_hash as plh

from bulksync.columns import HASH, KEY, KEY_HASH, ROW, STATE_HASH, STATE_ROW, STATUS
from bulksync.config import KeyField
from bulksync.fields import is_list_field
from bulksync.state.sqlite import Fields

ActionKind = Literal["create", "update", "delete", "refresh"]
# Loops has no "no value" for these: an emptied cell leaves them as they are.
NEVER_CLEARED = frozenset({"email", "userId", "subscribed"})


@dataclass(frozen=True)
class PlanOptions:
    key: KeyField = "email"
    keep_empty: bool = False
    resubscribe: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: str | None
    after: str | None


@dataclass(slots=True)
class Action:
    """One contact's planned write. ``send`` holds canonical text values; ``None`` clears a field.

    A ``refresh`` sends nothing: the source row changed in a way Loops must not see (for example
    ``subscribed: true`` for someone bulksync unsubscribed), so only the stored hash moves on.
    ``withheld`` marks an update that leaves out the source's ``subscribed: true``.
    """

    kind: ActionKind
    key: str
    row: int | None
    row_hash: int | None
    before: Fields
    send: dict[str, str | None]
    identity: tuple[str, ...] = field(default=())
    withheld: bool = False

    @property
    def changes(self) -> list[Change]:
        return [
            Change(name, self.before.get(name), value)
            for name, value in self.send.items()
            if self.before.get(name) != value
        ]


@dataclass
class Classified:
    """The source split against the state: rows to create, rows changed, keys gone, and a count."""

    new: pl.DataFrame
    changed: pl.DataFrame
    missing: list[str]
    unchanged: int


UNCHANGED, CHANGED, NEW = 0, 1, 2


def key_hash(column: str = KEY) -> pl.Expr:
    """A 64-bit hash of a key, to find it by number rather than by text."""
    return plh.col(column).nchash.xxhash64()


@dataclass(frozen=True)
class StateIndex:
    """The state's keys and row hashes ordered by key hash: a batch of source rows finds its
    contacts by binary search, without joining (and hashing) the whole state once per batch.

    Matches are checked on the key text too. If two state keys ever share a hash (astronomically
    rare), lookups fall back to a join on the text: slower, never wrong.
    """

    frame: pl.DataFrame  # KEY, STATE_HASH, KEY_HASH; sorted by KEY_HASH
    by_hash: bool

    @classmethod
    def of(cls, state_hashes: pl.DataFrame) -> StateIndex:
        """The index of ``state_hashes`` (KEY, STATE_HASH); a saved index frame is only checked."""
        frame = state_hashes
        if KEY_HASH not in frame.columns:
            frame = frame.with_columns(key_hash().alias(KEY_HASH))
        frame = frame.select(KEY, STATE_HASH, KEY_HASH)
        if not frame[KEY_HASH].is_sorted():
            frame = frame.sort(KEY_HASH)
        frame = frame.rechunk()  # gathering from one chunk is ten times faster than from many
        return cls(frame, by_hash=frame[KEY_HASH].n_unique() == frame.height)

    @property
    def height(self) -> int:
        return self.frame.height

    def positions(self, keys: pl.DataFrame) -> pl.Series:
        """Where each row's ``KEY`` is in the index (``KEY_HASH`` computed), or null where it is not."""
        if self.height == 0:
            return pl.Series(STATE_ROW, [None] * keys.height, dtype=pl.UInt32)
        if not self.by_hash:
            positions = self.frame.select(KEY).with_row_index(STATE_ROW)
            joined = keys.select(KEY).join(positions, on=KEY, how="left", maintain_order="left")
            return joined[STATE_ROW].cast(pl.UInt32)
        hashes = keys[KEY_HASH].rechunk()
        # Binary searches in key-hash order walk the index once instead of jumping about it.
        order = hashes.arg_sort()
        found = self.frame[KEY_HASH].search_sorted(hashes.gather(order), side="left")
        at = pl.zeros(keys.height, pl.UInt32, eager=True).scatter(order, found).clip(upper_bound=self.height - 1)
        match = (self.frame[KEY_HASH].gather(at) == hashes) & (self.frame[KEY].gather(at) == keys[KEY])
        return pl.select(pl.when(match).then(at).otherwise(None).cast(pl.UInt32).alias(STATE_ROW)).to_series()


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


def kept_positions(index: StateIndex, keys: Iterable[str]) -> pl.Series:
    """The index positions of ``keys`` (for rejected rows: still in the source, so never missing)."""
    frame = pl.DataFrame({KEY: list(keys) if not isinstance(keys, pl.Series) else keys}, schema={KEY: pl.String})
    return index.positions(frame.with_columns(key_hash().alias(KEY_HASH)))


def row_fields(row: Mapping[str, Any]) -> dict[str, str | None]:
    """A source row's fields, without bulksync's own columns."""
    return {name: value for name, value in row.items() if not name.startswith("__")}


def identity_fields(key_field: KeyField) -> tuple[str, ...]:
    # Under --key userId the email rides along: it changes the contact's email when it differs,
    # and lets Loops' upsert recreate a contact that was deleted on their side.
    return ("userId", "email") if key_field == "userId" else ("email",)


def plan_create(row: Mapping[str, Any], options: PlanOptions) -> Action:
    send: dict[str, str | None] = {
        name: value for name, value in row.items() if value is not None and not name.startswith("__")
    }
    return Action("create", row[KEY], row[ROW], row[HASH], {}, send, identity_fields(options.key))


def plan_update(row: Mapping[str, Any], before: Fields, options: PlanOptions) -> Action:
    """Send the identifier plus only the fields whose value differs from what Loops has from us."""
    source = row_fields(row)
    identity = identity_fields(options.key)
    send: dict[str, str | None] = {name: source[name] for name in identity}
    withheld = False
    for name in sorted(set(source) | set(before)):
        new, old = source.get(name), before.get(name)
        if new == old or name in identity:
            continue
        if new is None and (options.keep_empty or name in NEVER_CLEARED or is_list_field(name)):
            continue  # an empty cell leaves Loops' value alone; lists are only ever added or removed
        if name == "subscribed" and new == "true" and not options.resubscribe:
            withheld = True  # never re-subscribe someone unless asked to
            continue
        send[name] = new
    changed = any(before.get(name) != value for name, value in send.items())
    kind: ActionKind = "update" if changed else "refresh"
    return Action(kind, row[KEY], row[ROW], row[HASH], before, send, identity, withheld)


def plan_delete(key: str, before: Fields, options: PlanOptions) -> Action:
    return Action("delete", key, None, None, before, {options.key: key}, (options.key,))


def plan_updates(
    rows: Iterable[Mapping[str, Any]], previous: Mapping[str, Fields], options: PlanOptions
) -> Iterator[Action]:
    for row in rows:
        yield plan_update(row, previous[row[KEY]], options)


def held_back(action: Action, sent: Mapping[str, str | None]) -> bool:
    """Whether the source's ``subscribed: true`` was not sent (no --resubscribe, or the 409 fallback).

    The state remembers it, so that a later ``--resubscribe`` run finds these contacts again.
    """
    return action.withheld or (action.send.get("subscribed") == "true" and sent.get("subscribed") != "true")


def applied(before: Fields, sent: Mapping[str, str | None]) -> Fields:
    """The fields Loops holds after ``sent`` was confirmed on top of ``before``."""
    after = dict(before)
    for name, value in sent.items():
        if value is None:
            after.pop(name, None)
        else:
            after[name] = value
    return after
