"""Does Loops still hold what bulksync set? One contact's state fields against what ``find`` returns.

Pure: no I/O. Values are compared as Loops returns them: a number property's ``7`` equals the
state's ``"7"``, a boolean's ``true`` its ``"true"``, and a date is the same instant however it is
written (``2024-01-31`` and ``2024-01-31T00:00:00.000Z``, or Unix milliseconds). Only the fields the
state holds are compared (a field bulksync never set is Loops' business), and the subscription is
looked at always: an unsubscribe made in Loops is news to the state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bulksync.fields import LIST_PREFIX, STANDARD_FIELDS, is_list_field

MISSING, UNSUBSCRIBED, DIFFERENT = "missing in Loops", "unsubscribed in Loops", "different fields"
PROBLEMS = (MISSING, UNSUBSCRIBED, DIFFERENT)
EXAMPLES = 5  # contacts shown per problem

_CANONICAL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")  # as source/values.py writes them
_DIGITS = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Drift:
    """One difference: the contact, which problem, the field (None when the contact is gone), the
    state's text and Loops' value (as its JSON gave it)."""

    key: str
    problem: str
    field: str | None = None
    state: str | None = None
    loops: Any = None


def compare(key: str, fields: Mapping[str, str], contact: Mapping[str, Any] | None,
            types: Mapping[str, str]) -> list[Drift]:
    """The differences between the state's ``fields`` for ``key`` and Loops' ``contact`` (None: not
    found); ``types`` are the account's property types (a field without one is compared by the type of
    Loops' value). An empty list: Loops holds what bulksync set."""
    if contact is None:
        return [Drift(key, MISSING)]
    lists = contact.get("mailingLists")
    on_lists: Mapping[str, Any] = lists if isinstance(lists, dict) else {}
    drifts: list[Drift] = []
    subscribed = contact.get("subscribed")
    ours = fields.get("subscribed")
    if subscribed is False and ours != "false":
        drifts.append(Drift(key, UNSUBSCRIBED, "subscribed", ours, False))
    elif ours == "false" and subscribed is not False:
        drifts.append(Drift(key, DIFFERENT, "subscribed", ours, subscribed))
    for name, text in fields.items():
        if name == "subscribed":
            continue
        if is_list_field(name):
            member = bool(on_lists.get(name[len(LIST_PREFIX):]))
            if member != (text == "true"):
                drifts.append(Drift(key, DIFFERENT, name, text, True if member else None))
            continue
        value = contact.get(name)
        if not same_value(text, value, types.get(name) or STANDARD_FIELDS.get(name), email=name == "email"):
            drifts.append(Drift(key, DIFFERENT, name, text, value))
    return drifts


def same_value(text: str, value: Any, type_: str | None = None, *, email: bool = False) -> bool:
    """Whether Loops' ``value`` is the state's canonical ``text`` of a ``type_`` property."""
    if value is None:
        return False
    if email:
        return isinstance(value, str) and value.strip().lower() == text.strip().lower()
    if type_ == "date" or (type_ is None and _CANONICAL_DATE.match(text)):
        ours, theirs = instant(text), instant(value)
        if ours is not None and theirs is not None:
            return ours == theirs
    if type_ == "boolean" or (type_ is None and isinstance(value, bool)):
        return text.lower() == loops_text(value).lower()
    if type_ == "number" or (type_ is None and isinstance(value, int | float)):
        ours_number, theirs_number = _decimal(text), _decimal(value)
        if ours_number is not None and theirs_number is not None:
            return ours_number == theirs_number
    return text == loops_text(value)


def loops_text(value: Any) -> str:
    """Loops' value as text: strings as they are, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def instant(value: Any) -> datetime | None:
    """The moment a date value names (UTC when it gives no offset), or None if it names none:
    ``YYYY-MM-DD`` (midnight UTC), ISO 8601 date-times, or Unix milliseconds (a number or digits)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and _DIGITS.match(value.strip())):
            return datetime.fromtimestamp(float(value) / 1000, UTC)
        if not isinstance(value, str):
            return None
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass
class DriftCounts:
    """What a check found, contact by contact: how many matched, how many had each problem (a contact
    may have several), and the first few contacts with each, with their differences.

    A contact who unsubscribed in Loops (a campaign's link, the preference center) is everyday life,
    not something that went wrong: it is counted and listed, but is drift only when ``strict``.
    """

    checked: int = 0
    matching: int = 0
    unsubscribed_only: int = 0  # contacts whose one difference is an unsubscribe made in Loops
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))
    examples: dict[str, list[list[Drift]]] = field(default_factory=lambda: {problem: [] for problem in PROBLEMS})

    def add(self, drifts: list[Drift]) -> None:
        self.checked += 1
        if not drifts:
            self.matching += 1
        elif all(drift.problem == UNSUBSCRIBED for drift in drifts):
            self.unsubscribed_only += 1
        for problem in PROBLEMS:
            found = [drift for drift in drifts if drift.problem == problem]
            if found:
                self.counts[problem] += 1
                if len(self.examples[problem]) < EXAMPLES:
                    self.examples[problem].append(found)

    def drifted_contacts(self, *, strict: bool = False) -> int:
        """The contacts that differ from the state (with ``strict``, those who only unsubscribed too)."""
        return self.checked - self.matching - (0 if strict else self.unsubscribed_only)

    def drifted(self, *, strict: bool = False) -> bool:
        return self.drifted_contacts(strict=strict) > 0
