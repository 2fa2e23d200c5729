"""What the emulator starts with: mailing lists, custom properties and contacts from flags or a seed file.

The seed file is a JSON object, every key optional:

    {"lists": [{"id": "news", "name": "Newsletter", "isPublic": true}],
     "properties": [{"name": "plan", "type": "string"}],
     "contacts": [{"email": "ann@example.com", "plan": "pro", "mailingLists": {"news": true}}]}

`isPublic` defaults to true. Contacts are stored as given (an `id` too), after every list and
property, so they may use them. Every problem is a ValueError of one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulksync.emulator.core import LoopsEmulator
from bulksync.emulator.rules import PROPERTY_TYPES

_TYPES = ("string", "number", "boolean", "date")
_FILE_KEYS = ("lists", "properties", "contacts")


@dataclass
class Seed:
    """Lists (id, name, public), properties (name, type) and contacts to load into an emulator."""

    lists: list[tuple[str, str, bool]] = field(default_factory=list)
    properties: list[tuple[str, str]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)

    def load_into(self, emulator: LoopsEmulator, where: str = "seed") -> None:
        """Lists first, then properties, then contacts. Raises ValueError naming `where` and the entry."""
        for list_id, name, is_public in self.lists:
            emulator.add_list(list_id, name, is_public)
        for name, type_ in self.properties:
            try:
                emulator.add_property(name, type_)
            except ValueError as error:
                raise ValueError(f"{where}: property {name!r}: {error}") from None
        for number, contact in enumerate(self.contacts):
            try:
                emulator.seed([contact])
            except ValueError as error:
                raise ValueError(f"{where}: contacts[{number}]: {error}") from None


def parse_list(text: str) -> tuple[str, str, bool]:
    """`--list ID:NAME`: a public list. Raises ValueError."""
    list_id, colon, name = text.partition(":")
    if not colon or not list_id.strip() or not name.strip():
        raise ValueError(f"--list expects ID:NAME, such as news:Newsletter, not {text!r}")
    return list_id.strip(), name.strip(), True


def parse_property(text: str) -> tuple[str, str]:
    """`--property NAME:TYPE`. Raises ValueError (the name itself is checked when it is added)."""
    name, colon, type_ = text.partition(":")
    if not colon or not name.strip() or type_.strip() not in PROPERTY_TYPES:
        raise ValueError(f"--property expects NAME:TYPE with a TYPE of {_choices(_TYPES)}, not {text!r}")
    return name.strip(), type_.strip()


def from_flags(lists: Sequence[str], properties: Sequence[str]) -> Seed:
    """The seed the repeatable --list and --property flags describe. Raises ValueError."""
    return Seed([parse_list(text) for text in lists], [parse_property(text) for text in properties])


def read_seed_file(path: Path) -> Seed:
    """The seed in a JSON file of the shape above. Raises ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot read the seed file: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the seed file is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    try:
        return _seed_of(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _seed_of(data: Any) -> Seed:
    if not isinstance(data, dict):
        raise ValueError(f"a seed file holds a JSON object with {_choices(_FILE_KEYS, 'and')}")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}: a seed file has {_choices(_FILE_KEYS, 'and')}")
    seed = Seed()
    for number, entry in enumerate(_entries(data, "lists")):
        list_id, name, is_public = entry.get("id"), entry.get("name"), entry.get("isPublic", True)
        if not (isinstance(list_id, str) and list_id and isinstance(name, str) and isinstance(is_public, bool)):
            raise ValueError(f"lists[{number}] needs a string id and name, and an optional boolean isPublic")
        seed.lists.append((list_id, name, is_public))
    for number, entry in enumerate(_entries(data, "properties")):
        name, type_ = entry.get("name"), entry.get("type")
        if not isinstance(name, str) or type_ not in PROPERTY_TYPES:
            raise ValueError(f"properties[{number}] needs a string name and a type of {_choices(_TYPES)}")
        seed.properties.append((name, str(type_)))
    seed.contacts = _entries(data, "contacts")
    return seed


def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ValueError(f"{key!r} must be a list of JSON objects")
    return entries


def _choices(names: Sequence[str], last: str = "or") -> str:
    return f"{', '.join(names[:-1])} {last} {names[-1]}"
