"""What a mapping says: which source column becomes which Loops field, typed how.

A ``MappingSpec`` is plain frozen data (``mapping_file`` reads it from TOML); ``merge`` lays a
mapping file over a preset, entry by entry. The rules on field names live here too, because
both reading a mapping and applying it need them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bulksync.fields import (
    LIST_PREFIX,
    MAILING_LISTS,
    READ_ONLY_FIELDS,
    RESERVED_PROPERTY_NAMES,
    STANDARD_FIELDS,
    list_field,
    standard_name,
)

PROPERTY_NAME = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@dataclass(frozen=True)
class ColumnRule:
    """What one source column becomes. ``column`` is matched to headers trimmed and case-insensitively."""

    column: str
    to: str | None = None
    type: str | None = None
    format: str | None = None
    transforms: tuple[str, ...] = ()
    values: tuple[tuple[str, str | None], ...] = ()
    list_ref: str | None = None
    list_items: tuple[tuple[str, str], ...] = ()
    separator: str = ","
    optional: bool = False

    @property
    def splits_name(self) -> bool:
        return "split_name" in self.transforms

    @property
    def makes_property(self) -> bool:
        """Whether the column becomes a field (as opposed to only mailing lists)."""
        return self.to is not None or not (self.splits_name or self.list_ref is not None or self.list_items)

    def target(self) -> str:
        return self.to or property_name(self.column)

    def targets(self) -> tuple[str, ...]:
        """What this rule writes, before list names are resolved (``list:<ref>`` for a list)."""
        found: list[str] = []
        if self.splits_name:
            found += ["firstName", "lastName"]
        elif self.list_ref is not None:
            found.append(list_key(self.list_ref))
        elif self.makes_property:
            found.append(self.target())
        found += [list_key(ref) for _, ref in self.list_items]
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Constant:
    """A value given to every row: ``field`` is a Loops field or custom property."""

    field: str
    value: str
    type: str


@dataclass(frozen=True)
class MappingSpec:
    """A whole mapping: column rules, constants, ignored columns and the unsubscribed-export rule."""

    columns: tuple[ColumnRule, ...] = ()
    constants: tuple[Constant, ...] = ()
    constant_lists: tuple[tuple[str, bool], ...] = ()
    ignore: tuple[str, ...] = ()
    unmapped: str | None = None
    unsubscribed_columns: tuple[str, ...] = ()
    unsubscribed_names: tuple[str, ...] = ()
    origin: str = "mapping"
    description: str = ""

    @property
    def keeps_unmapped(self) -> bool:
        return self.unmapped != "drop"

    def rule(self, column: str) -> ColumnRule | None:
        wanted = fold(column)
        return next((rule for rule in self.columns if fold(rule.column) == wanted), None)

    def list_refs(self) -> list[str]:
        """Every mailing list the mapping names (by id or name): resolve them with GET /v1/lists."""
        refs = [rule.list_ref for rule in self.columns if rule.list_ref is not None]
        refs += [ref for rule in self.columns for _, ref in rule.list_items]
        refs += [ref for ref, _ in self.constant_lists]
        return list(dict.fromkeys(refs))


def target_problem(name: str) -> str | None:
    """Why ``name`` cannot be a field bulksync writes, or None when it can."""
    if name in STANDARD_FIELDS:
        return None
    if name in READ_ONLY_FIELDS:
        return f"{name!r} is read-only in Loops; map the column to another name"
    if name == MAILING_LISTS or name.startswith(LIST_PREFIX):
        return 'map a column to a mailing list with list = "<list id or name>"'
    standard = next((field for field in STANDARD_FIELDS if field.lower() == name.lower()), None)
    if standard is not None:
        return f"{name!r} is not a Loops field; did you mean {standard!r}?"
    if name in RESERVED_PROPERTY_NAMES:
        return f"{name!r} is a reserved name in Loops; choose another property name"
    if not PROPERTY_NAME.match(name):
        suggestion = property_name(name)
        hint = f", e.g. {suggestion!r}" if PROPERTY_NAME.match(suggestion) else ""
        return f"{name!r} is not a valid property name; Loops property names are camelCase{hint}"
    return None


def property_name(header: str) -> str:
    """The Loops name of a header: a standard field case-insensitively, else camelCase.

    ``Email`` -> ``email``, ``First Name`` -> ``firstName``, ``MEMBER_RATING`` -> ``memberRating``,
    ``utm_source`` -> ``utmSource``; ``mailingLists.<id>`` columns keep their list id.
    """
    stripped = header.strip()
    standard = standard_name(stripped)
    if standard is not None:
        return standard
    if fold(stripped).startswith(fold(LIST_PREFIX)):
        return list_field(stripped[len(LIST_PREFIX) :].strip())
    if fold(stripped) == fold(MAILING_LISTS) or PROPERTY_NAME.match(stripped):
        return MAILING_LISTS if fold(stripped) == fold(MAILING_LISTS) else stripped
    words = [
        word
        for piece in re.split(r"[^A-Za-z0-9]+", stripped)
        for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", piece)
    ]
    if not words:
        return stripped
    name = words[0].lower() + "".join(word[:1].upper() + word[1:].lower() for word in words[1:])
    return standard_name(name) or name


def describe_rule(rule: ColumnRule) -> str:
    """What a rule does beyond renaming, in a few words for the mapping plan."""
    parts: list[str] = []
    if rule.transforms:
        parts.append("transform " + ", ".join(rule.transforms))
    if rule.values:
        parts.append("values " + ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in rule.values))
    if rule.format:
        parts.append(f"format {rule.format}")
    if rule.list_ref is not None:
        parts.append(f"list {rule.list_ref!r}")
    if rule.list_items:
        parts.append("lists " + ", ".join(f"{item}->{ref!r}" for item, ref in rule.list_items))
    return "; ".join(parts)


# -- merging ---------------------------------------------------------------------------------------


def merge(base: MappingSpec, override: MappingSpec) -> MappingSpec:
    """Lay ``override`` (a mapping file) over ``base`` (a preset); the override wins entry by entry.

    An override column entry replaces the base's entry for that column whole; an override entry or
    constant that writes a field replaces the base's entries writing that field; a column the
    override ignores is dropped from the base's rules and vice versa; ``unmapped`` and the
    unsubscribed-export rule come from the override when it sets them.
    """
    over_columns = {fold(rule.column) for rule in override.columns}
    over_ignored = {fold(name) for name in override.ignore}
    over_targets = {target for rule in override.columns for target in rule.targets()}
    over_targets |= {constant.field for constant in override.constants}
    over_targets |= {list_key(ref) for ref, _ in override.constant_lists}

    def kept(rule: ColumnRule) -> bool:
        key = fold(rule.column)
        return key not in over_columns and key not in over_ignored and not set(rule.targets()) & over_targets

    base_ignored = {fold(name) for name in base.ignore}
    unsubscribed = override if override.unsubscribed_columns or override.unsubscribed_names else base
    return MappingSpec(
        columns=tuple(rule for rule in base.columns if kept(rule)) + override.columns,
        constants=tuple(c for c in base.constants if c.field not in over_targets) + override.constants,
        constant_lists=tuple(item for item in base.constant_lists if list_key(item[0]) not in over_targets)
        + override.constant_lists,
        ignore=tuple(name for name in base.ignore if fold(name) not in over_columns)
        + tuple(name for name in override.ignore if fold(name) not in base_ignored),
        unmapped=override.unmapped if override.unmapped is not None else base.unmapped,
        unsubscribed_columns=unsubscribed.unsubscribed_columns,
        unsubscribed_names=unsubscribed.unsubscribed_names,
        origin=f"{base.origin} + {override.origin}",
        description=override.description or base.description,
    )


# -- small helpers -----------------------------------------------------------------------------------


def fold(name: str) -> str:
    """A name as it is compared: trimmed, any case."""
    return name.strip().casefold()


def list_key(ref: str) -> str:
    """The target a mailing list reference writes, before list names are resolved."""
    return f"list:{fold(ref)}"


def toml_key(key: str) -> str:
    """``key`` as TOML writes it in a dotted key: bare, or quoted when it must be."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
