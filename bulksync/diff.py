"""Stage 3: decide per contact: create, update (field by field), delete, or leave alone.

No I/O here. ``classify`` is one polars join of the source against the state's hashes; the
``plan_*`` functions turn only the changed rows into :class:`Action` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import polars_hash as plh

from bulksync.config import KeyField
from bulksync.fields import is_list_field
from bulksync.fingerprint import HASH
from bulksync.normalise import KEY
from bulksync.read import ROW
from bulksync.state import STATE_HASH, Fields

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


def classify(
    contacts: pl.DataFrame,
    state_hashes: pl.DataFrame,
    delete_missing: bool,
    recheck: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> Classified:
    """Join source rows (with ``HASH``) to the state's hashes by key; ``recheck`` keys count as changed."""
    joined, on = _join_by_key(contacts, state_hashes)
    known = pl.col(STATE_HASH).is_not_null()
    differs = pl.col(HASH) != pl.col(STATE_HASH)
    recheck = list(recheck)
    if recheck:
        differs = differs | pl.col(KEY).is_in(recheck)
    own = [c for c in joined.columns if c in contacts.columns]
    new = joined.filter(~known).select(own).sort(ROW)
    changed = joined.filter(known & differs).select(own).sort(ROW)
    unchanged = joined.height - new.height - changed.height
    missing: list[str] = []
    if delete_missing and contacts.height:  # a source with no valid rows never deletes anything
        # ``keep``: keys of rows that were rejected: still in the source, so never deleted
        present = pl.concat([contacts.select(KEY), pl.DataFrame({KEY: list(keep)}, schema={KEY: pl.String})])
        gone = on(state_hashes).join(on(present), on=_JOIN_KEY, how="anti")
        missing = gone[KEY].sort().to_list()
    return Classified(new=new, changed=changed, missing=missing, unchanged=unchanged)


_JOIN_KEY = "__join_key"
_STATE_KEY = "__state_key"


def _hash_keyed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(plh.col(KEY).nchash.xxhash64().alias(_JOIN_KEY))


def _text_keyed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(KEY).alias(_JOIN_KEY))


def _join_by_key(
    contacts: pl.DataFrame, state_hashes: pl.DataFrame
) -> tuple[pl.DataFrame, Callable[[pl.DataFrame], pl.DataFrame]]:
    """Left-join by key, on a 64-bit hash of it: three times faster than joining the strings.

    Keys are compared after the join; if two keys ever share a hash, the join is redone on the
    strings, so a collision costs time, never correctness. Also returns how to key other frames.
    """
    state = _hash_keyed(state_hashes).rename({KEY: _STATE_KEY})
    joined = _hash_keyed(contacts).join(state, on=_JOIN_KEY, how="left")
    collided = (pl.col(_STATE_KEY).is_not_null() & (pl.col(KEY) != pl.col(_STATE_KEY))).any()
    if joined.height == contacts.height and not joined.select(collided).item():
        return joined, _hash_keyed
    return contacts.join(state_hashes, on=KEY, how="left"), _text_keyed


def row_fields(row: Mapping[str, Any]) -> dict[str, str | None]:
    """A source row's fields, without bulksync's own columns."""
    return {name: value for name, value in row.items() if not name.startswith("__")}


def identity_fields(key_field: KeyField) -> tuple[str, ...]:
    # Under --key userId the email rides along: it changes the contact's email when it differs,
    # and lets Loops' upsert recreate a contact that was deleted on their side.
    return ("userId", "email") if key_field == "userId" else ("email",)


def plan_create(row: Mapping[str, Any], options: PlanOptions) -> Action:
    send: dict[str, str | None] = {name: value for name, value in row_fields(row).items() if value is not None}
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
