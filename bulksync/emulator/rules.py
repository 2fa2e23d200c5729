"""Loops' validation rules for contact bodies: field checks, value types, lengths and property names."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bulksync.emulator.wire import ApiError

MAX_STRING_LENGTH = 500
"""Loops counts the surrounding JSON quotes, so a raw string of 499 characters is already too long."""
PROPERTY_TYPES = frozenset({"string", "number", "boolean", "date"})
RESERVED_NAMES = frozenset({"id", "listId", "softDeleteAt", "teamId", "updatedAt"})
READ_ONLY_FIELDS = frozenset({"id", "createdAt", "optInStatus", "notes"})

# (key, type) of the properties every Loops team has; the writable ones are validated by STANDARD_CHECKS.
STANDARD_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("email", "string"),
    ("firstName", "string"),
    ("lastName", "string"),
    ("notes", "string"),
    ("source", "string"),
    ("subscribed", "boolean"),
    ("userGroup", "string"),
    ("userId", "string"),
    ("createdAt", "date"),
    ("optInStatus", "string"),
)
STANDARD_NAMES = frozenset(name for name, _ in STANDARD_PROPERTIES) | {"mailingLists"}

_EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
_NAME_RE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def normalize_email(email: str) -> str:
    """The key emails are matched on."""
    return email.strip().lower()


def _check_email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL_RE.match(value.strip()):
        raise ApiError(400, "Invalid email address.")
    return value.strip()


def _check_text(key: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string.")
        return value

    return check


def _check_subscribed(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError(400, "subscribed must be a boolean.")
    return value


def _check_user_id(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ApiError(400, "userId must be a non-empty string.")
    return value


STANDARD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": _check_email,
    "firstName": _check_text("firstName"),
    "lastName": _check_text("lastName"),
    "source": _check_text("source"),
    "userGroup": _check_text("userGroup"),
    "subscribed": _check_subscribed,
    "userId": _check_user_id,
}
"""The writable standard fields, each with the check that returns the value to store or raises ApiError."""


def identifier(source: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (email, userId) pair of a find or delete, exactly one of them set."""
    email, user_id = source.get("email"), source.get("userId")
    given = [value for value in (email, user_id) if value is not None and value != ""]
    if len(given) != 1 or not isinstance(given[0], str):
        raise ApiError(400, "Provide exactly one of email or userId.")
    return (_check_email(email), None) if email else (None, user_id)


def _as_string(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return value
    raise ValueError


def _as_number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        text = value.strip()
        return int(text) if _INTEGER_RE.match(text) else float(text)
    raise ValueError


def _as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError


def _as_date(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return value
    if isinstance(value, str) and (_INTEGER_RE.match(value) or _DATE_RE.match(value)):
        if not _INTEGER_RE.match(value):
            datetime.fromisoformat(value)  # rejects impossible dates such as 2024-02-30
        return value
    raise ValueError


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "string": _as_string,
    "number": _as_number,
    "boolean": _as_boolean,
    "date": _as_date,
}


def coerce(key: str, type_: str, value: Any) -> Any:
    """The non-null `value` of custom property `key` as its type stores it; ApiError if it is not one."""
    try:
        return _COERCERS[type_](value)
    except ValueError:
        raise ApiError(400, f"Invalid value for {key!r}: expected a {type_}.") from None


def check_lengths(value: Any) -> None:
    """Reject any key or string value over Loops' length limit, at any depth."""
    if isinstance(value, str):
        if len(value) + 2 > MAX_STRING_LENGTH:
            raise ApiError(400, "Some body key or value is longer than allowable")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_lengths(key)
            check_lengths(item)
    elif isinstance(value, list):
        for item in value:
            check_lengths(item)


def check_property_type(type_: Any) -> None:
    """Reject a property type Loops does not have."""
    if type_ not in PROPERTY_TYPES:
        raise ApiError(400, f"Invalid property type {type_!r}: use string, number, boolean or date.")


def check_property_name(name: Any) -> None:
    """Reject a custom property name that is not camelCase or is reserved."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ApiError(400, f"Invalid property name {name!r}: names are camelCase.")
    if name in RESERVED_NAMES:
        raise ApiError(400, f"{name!r} is a reserved property name.")


def check_mailing_lists(value: Any) -> dict[str, bool]:
    """A body's `mailingLists`, which must map list ids to booleans."""
    if not isinstance(value, dict) or not all(isinstance(on, bool) for on in value.values()):
        raise ApiError(400, "mailingLists must be an object of list ids to booleans.")
    return dict(value)


def property_label(name: str) -> str:
    """The label Loops shows for a property: `firstName` is "First Name"."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
    return words[:1].upper() + words[1:]
