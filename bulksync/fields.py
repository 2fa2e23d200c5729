"""Loops' contact fields: names, types, limits, and the turn from our text values into JSON values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

PropertyType = Literal["string", "number", "boolean", "date"]

# Standard contact fields and their types. ``mailingLists`` is expanded into one boolean field per list.
STANDARD_FIELDS: dict[str, PropertyType] = {
    "email": "string",
    "firstName": "string",
    "lastName": "string",
    "source": "string",
    "subscribed": "boolean",
    "userGroup": "string",
    "userId": "string",
}
MAILING_LISTS = "mailingLists"
LIST_PREFIX = "mailingLists."
READ_ONLY_FIELDS = frozenset({"id", "createdAt", "optInStatus", "notes"})
RESERVED_PROPERTY_NAMES = frozenset({"id", "listId", "softDeleteAt", "teamId", "updatedAt"})

# Loops rejects a string whose JSON form (with its two quotes) is over 500 characters.
MAX_STRING_CHARS = 498

_STANDARD_BY_FOLD = {name.casefold(): name for name in STANDARD_FIELDS}

TRUE_WORDS = frozenset({"true", "yes", "1", "y", "t"})
FALSE_WORDS = frozenset({"false", "no", "0", "n", "f"})


def standard_name(name: str) -> str | None:
    """The standard field ``name`` spells, in any case (``EMAIL`` -> ``email``), or None."""
    return _STANDARD_BY_FOLD.get(name.strip().casefold())


def loops_name(header: str) -> str:
    """The field a header names when no mapping says otherwise: standard fields and
    ``mailingLists`` in any case, ``mailingLists.<id>`` by list id, anything else as written."""
    stripped = header.strip()
    if stripped.casefold().startswith(LIST_PREFIX.casefold()):
        return list_field(stripped[len(LIST_PREFIX) :].strip())
    return standard_name(stripped) or (MAILING_LISTS if stripped.casefold() == MAILING_LISTS.casefold() else stripped)


def is_list_field(name: str) -> bool:
    return name.startswith(LIST_PREFIX)


def list_field(list_id: str) -> str:
    return f"{LIST_PREFIX}{list_id}"


def json_value(text: str | None, type_: str) -> Any:
    """The JSON value Loops expects for one of our canonical text values (``None`` clears)."""
    if text is None:
        return None
    if type_ == "boolean":
        return text == "true"
    if type_ == "number":
        return json.loads(text)
    return text


def payload_from_fields(fields: Mapping[str, str | None], types: Mapping[str, str]) -> dict[str, Any]:
    """Turn flat canonical fields into a Loops request body, folding list fields into ``mailingLists``."""
    body: dict[str, Any] = {}
    lists: dict[str, bool] = {}
    for name, text in fields.items():
        if is_list_field(name):
            if text is not None:  # a list is added or removed, never "cleared"
                lists[name[len(LIST_PREFIX) :]] = text == "true"
        else:
            body[name] = json_value(text, types.get(name, "string"))
    if lists:
        body[MAILING_LISTS] = lists
    return body
