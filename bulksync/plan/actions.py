"""Planned actions: one contact's create, update (field by field), delete or refresh.

Pure: the ``plan_*`` functions turn a source row and what Loops has from us into an :class:`Action`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bulksync.columns import HASH, KEY, ROW
from bulksync.config import CreateVia, KeyField
from bulksync.fields import is_list_field
from bulksync.state.store import Fields, StateStore, Tombstone

if TYPE_CHECKING:
    from bulksync.plan.diff import Classified

SLICE_ROWS = 5_000

ActionKind = Literal["create", "update", "delete", "refresh"]
# Loops has no "no value" for these: an emptied cell leaves them as they are.
NEVER_CLEARED = frozenset({"email", "userId", "subscribed"})


@dataclass(frozen=True)
class PlanOptions:
    key: KeyField = "email"
    keep_empty: bool = False
    resubscribe: bool = False
    create_via: CreateVia = "update"  # how a contact new to the state is written (see plan_create)


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
    ``withheld`` marks an update that leaves out the source's ``subscribed: true``; ``note`` says
    why a write differs from the row (a contact kept unsubscribed). An update's ``row`` fields are
    kept in ``whole`` so a contact Loops lost can be sent whole again.
    """

    kind: ActionKind
    key: str
    row: int | None
    row_hash: int | None
    before: Fields
    send: dict[str, str | None]
    identity: tuple[str, ...] = field(default=())
    withheld: bool = False
    note: str | None = None
    whole: dict[str, str | None] | None = None
    loops_id: str | None = None  # the id Loops gave the contact when bulksync last wrote it

    @property
    def changes(self) -> list[Change]:
        return [
            Change(name, self.before.get(name), value)
            for name, value in self.send.items()
            if self.before.get(name) != value
        ]


def row_fields(row: Mapping[str, Any]) -> dict[str, str | None]:
    """A source row's fields, without bulksync's own columns."""
    return {name: value for name, value in row.items() if not name.startswith("__")}


def identity_fields(key_field: KeyField) -> tuple[str, ...]:
    # Under --key userId the email rides along: it changes the contact's email when it differs,
    # and lets Loops' upsert recreate a contact that was deleted on their side.
    return ("userId", "email") if key_field == "userId" else ("email",)


def plan_create(row: Mapping[str, Any], options: PlanOptions, tombstone: Tombstone | None = None) -> Action:
    """Every field the row gives. Written through Loops' upsert (the default), which may meet a
    contact that exists, ``subscribed: true`` is withheld: the plan shows what is really sent.

    A contact bulksync deleted while Loops had it unsubscribed (its ``tombstone`` says so) comes
    back unsubscribed and off the lists it had left, unless ``--resubscribe``.
    """
    send: dict[str, str | None] = {
        name: value for name, value in row.items() if value is not None and not name.startswith("__")
    }
    note = None
    if tombstone is not None and tombstone.unsubscribed and not options.resubscribe:
        send = unsubscribed(send)
        note = kept_unsubscribed(tombstone)
    withheld = options.create_via == "update" and send.get("subscribed") == "true"
    if withheld:
        del send["subscribed"]
    return Action("create", row[KEY], row[ROW], row[HASH], {}, send, identity_fields(options.key), withheld, note)


def unsubscribed(send: Mapping[str, str | None]) -> dict[str, str | None]:
    """``send`` for a contact that stays unsubscribed: Loops refuses to add one to a list (the lists it
    had left included), so list additions go too."""
    kept = {name: value for name, value in send.items() if not (is_list_field(name) and value == "true")}
    return {**kept, "subscribed": "false"}


def kept_unsubscribed(tombstone: Tombstone) -> str:
    return (
        f"kept unsubscribed: unsubscribed in Loops when bulksync deleted it ({tombstone.deleted_at}); "
        "--resubscribe re-subscribes"
    )


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
    return Action(kind, row[KEY], row[ROW], row[HASH], before, send, identity, withheld, whole=source)


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


def iter_actions(
    classified: Classified, state: StateStore, options: PlanOptions, *, delete_details: bool = True
) -> Iterator[Action]:
    """Actions in source order, built a slice at a time so memory holds only one slice of rows.

    A delete's ``before`` (what Loops has from us: its tombstone needs it) shows in no report; a dry
    run without a plan file skips reading it (``delete_details=False``).
    """
    maybe_tombstoned = state.tombstone_count() > 0  # a first load has none: no lookups
    for chunk in classified.new.iter_slices(SLICE_ROWS):
        tombstones = state.tombstones_for(chunk[KEY].to_list()) if maybe_tombstoned else {}
        for row in chunk.iter_rows(named=True):
            yield plan_create(row, options, tombstones.get(row[KEY]))
    for chunk in classified.changed.iter_slices(SLICE_ROWS):
        keys = chunk[KEY].to_list()
        previous, ids = state.fields_for(keys), state.loops_ids(keys)
        for action in plan_updates(chunk.iter_rows(named=True), previous, options):
            action.loops_id = ids.get(action.key)
            yield action
    for start in range(0, len(classified.missing), SLICE_ROWS):
        keys = classified.missing[start : start + SLICE_ROWS]
        previous = state.fields_for(keys) if delete_details else {}
        for key in keys:
            yield plan_delete(key, previous.get(key, {}), options)
