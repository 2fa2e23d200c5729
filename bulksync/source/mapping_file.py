"""Reading mappings from TOML: a user's ``--mapping`` file or a built-in ``--preset``.

Presets are ``bulksync/source/presets/<name>.toml``. Every mistake in a file is a ConfigError that
names the file, the table and the fix. The file format is documented in ``docs/mapping.md``.
"""

from __future__ import annotations

import difflib
import functools
import math
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from bulksync.errors import ConfigError
from bulksync.fields import MAILING_LISTS, STANDARD_FIELDS
from bulksync.source import values
from bulksync.source.mapping_spec import ColumnRule, Constant, MappingSpec, fold, merge, target_problem, toml_key

PRESETS: tuple[str, ...] = ("mailchimp", "kit", "sendgrid", "brevo", "beehiiv", "substack")
PRESET_ALIASES: dict[str, str] = {"convertkit": "kit", "sendinblue": "brevo"}
TRANSFORMS: tuple[str, ...] = ("trim", "lowercase", "tags", "split_name")

TOP_KEYS = ("description", "unmapped", "optional_columns", "ignore", "columns", "constants", "unsubscribed_file")
COLUMN_KEYS = ("to", "type", "format", "transform", "values", "list", "lists", "separator", "optional")
UNSUBSCRIBED_KEYS = ("if_columns", "if_name")
NOT_CONSTANT = frozenset({"email", "userId"})


def load_mapping(path: Path) -> MappingSpec:
    """Read a mapping file; any mistake is a ConfigError naming the file, the table and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such mapping file; check the --mapping path") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --mapping takes a .toml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); save it as UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return parse_mapping(data, str(path))


def load_preset(name: str) -> MappingSpec:
    """A built-in mapping by name (case-insensitive; ``convertkit`` and ``sendinblue`` are aliases)."""
    key = name.strip().lower()
    key = PRESET_ALIASES.get(key, key)
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return _load_preset(key)


@functools.cache
def _load_preset(key: str) -> MappingSpec:
    text = resources.files("bulksync.source.presets").joinpath(f"{key}.toml").read_text(encoding="utf-8")
    return parse_mapping(tomllib.loads(text), f"preset {key!r}")


def parse_mapping(data: Mapping[str, Any], origin: str) -> MappingSpec:
    """Validate TOML data into a MappingSpec; ``origin`` starts every error message."""
    parser = _Parser(origin)
    parser.keys(data, TOP_KEYS, "at the top level")
    description = parser.string(data, "description", "at the top level") or ""
    unmapped = parser.string(data, "unmapped", "at the top level")
    if unmapped is not None and unmapped not in ("keep", "drop"):
        parser.fail(
            f"unmapped = {unmapped!r} is not allowed; use \"keep\" (unmapped columns become custom "
            "properties) or \"drop\""
        )
    optional_default = parser.boolean(data, "optional_columns", "at the top level", False)
    ignore = parser.strings(data, "ignore", "at the top level")
    columns = parser.table(data, "columns", "at the top level")
    rules = []
    for column, entry in columns.items():
        where = f"[columns.{toml_key(column)}]"
        if not isinstance(entry, dict):
            parser.fail(f"columns.{toml_key(column)} must be a table, e.g. {where} with to = \"...\"")
        rules.append(parser.column(column, entry, where, optional_default))
    ignored = {fold(name) for name in ignore}
    both = next((rule.column for rule in rules if fold(rule.column) in ignored), None)
    if both is not None:
        parser.fail(f"column {both!r} is both in ignore and in [columns]; keep one of them")
    constants, constant_lists = parser.constants(parser.table(data, "constants", "at the top level"))
    unsubscribed = parser.table(data, "unsubscribed_file", "at the top level")
    parser.keys(unsubscribed, UNSUBSCRIBED_KEYS, "[unsubscribed_file]")
    return MappingSpec(
        columns=tuple(rules),
        constants=constants,
        constant_lists=constant_lists,
        ignore=tuple(ignore),
        unmapped=unmapped,
        unsubscribed_columns=tuple(parser.strings(unsubscribed, "if_columns", "[unsubscribed_file]")),
        unsubscribed_names=tuple(parser.strings(unsubscribed, "if_name", "[unsubscribed_file]")),
        origin=origin,
        description=description,
    )


class _Parser:
    """Type checks for TOML values, each failing with a message that names where and how to fix it."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.origin}: {message}")

    def keys(self, table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(f"unknown key {key!r} {'in ' if where.startswith('[') else ''}{where}; "
                          f"known keys: {', '.join(known)}{hint}")

    def _typed(self, table: Mapping[str, Any], key: str, where: str, kind: type, noun: str) -> Any:
        value = table.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            self.fail(f"{key} {_in(where)}must be {noun}, not {_toml_kind(value)}")
        return value

    def string(self, table: Mapping[str, Any], key: str, where: str) -> str | None:
        value: str | None = self._typed(table, key, where, str, "a string")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value: bool | None = self._typed(table, key, where, bool, "true or false")
        return default if value is None else value

    def table(self, table: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value: dict[str, Any] | None = self._typed(table, key, where, dict, "a table")
        return value or {}

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> list[str]:
        value = table.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f"{key} {_in(where)}must be a list of strings such as [\"A\", \"B\"]")
        return list(value)

    def column(self, column: str, entry: Mapping[str, Any], where: str, optional_default: bool) -> ColumnRule:
        self.keys(entry, COLUMN_KEYS, where)
        to = self.string(entry, "to", where)
        type_ = self.string(entry, "type", where)
        fmt = self.string(entry, "format", where)
        list_ref = self.string(entry, "list", where)
        separator = self.string(entry, "separator", where)
        optional = self.boolean(entry, "optional", where, optional_default)
        transforms = self._transforms(entry.get("transform"), where)
        value_map = self._value_map(self.table(entry, "values", where), where)
        list_items = self.table(entry, "lists", where)
        for item, ref in list_items.items():
            if not isinstance(ref, str) or not ref.strip():
                self.fail(f"{where} lists.{toml_key(item)} must be a list id or name (a string)")
        if type_ is not None and type_ not in values.PROPERTY_TYPES:
            self.fail(f"{where} type = {type_!r} is not a type; use one of {', '.join(values.PROPERTY_TYPES)}")
        if separator == "":
            self.fail(f"{where} separator must not be empty")
        if "split_name" in transforms:
            extra = next((key for key in ("to", "type", "format", "values", "list") if key in entry), None)
            if extra is not None:
                self.fail(f"{where} transform split_name makes firstName and lastName; remove {extra!r}")
        if list_ref is not None:
            extra = next((key for key in ("to", "type", "format", "lists") if key in entry), None)
            if extra is not None:
                self.fail(f"{where} list = {list_ref!r} maps the column to a mailing list; remove {extra!r}")
            if not list_ref.strip():
                self.fail(f"{where} list must be a list id or name")
        rule = ColumnRule(
            column=column,
            to=to,
            type=type_,
            format=fmt,
            transforms=transforms,
            values=value_map,
            list_ref=list_ref,
            list_items=tuple(list_items.items()),
            separator=separator or ",",
            optional=optional,
        )
        if rule.makes_property and list_ref is None and not rule.splits_name:
            target = rule.target()
            problem = target_problem(target)
            if problem and to is None:
                self.fail(f"{where} needs to = \"...\": the column name {column!r} makes no valid property name")
            if problem:
                self.fail(f"{where} to: {problem}")
            standard = STANDARD_FIELDS.get(target)
            if standard is not None and type_ is not None and type_ != standard:
                self.fail(f"{where} type = {type_!r} does not fit {target}, a {standard} field in Loops")
            if fmt is not None:
                effective = type_ or standard
                if effective is None:
                    self.fail(f"{where} format needs type = \"date\" or type = \"number\"")
                problem = values.format_problem(effective, fmt)
                if problem:
                    self.fail(f"{where} {problem}")
        return rule

    def _transforms(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.fail(f"{where} transform must be a name or a list of names from {', '.join(TRANSFORMS)}")
        for item in items:
            if item not in TRANSFORMS:
                close = difflib.get_close_matches(item, TRANSFORMS, n=1, cutoff=0.7)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"{where} transform {item!r} is unknown{hint}; use one of {', '.join(TRANSFORMS)}")
        return tuple(dict.fromkeys(items))

    def _value_map(self, table: Mapping[str, Any], where: str) -> tuple[tuple[str, str | None], ...]:
        pairs: list[tuple[str, str | None]] = []
        for source_value, target in table.items():
            if isinstance(target, bool):
                text: str | None = "true" if target else "false"
            elif isinstance(target, int | float | str):
                text = str(target) if not isinstance(target, str) else (target if target.strip() else None)
            else:
                self.fail(f"{where} values.{toml_key(source_value)} must be a string, number or boolean")
            pairs.append((source_value.strip().lower(), text))
        return tuple(pairs)

    def constants(self, table: Mapping[str, Any]) -> tuple[tuple[Constant, ...], tuple[tuple[str, bool], ...]]:
        constants: list[Constant] = []
        lists: list[tuple[str, bool]] = []
        for name, value in table.items():
            if name == MAILING_LISTS:
                if not isinstance(value, dict) or not all(isinstance(on, bool) for on in value.values()):
                    self.fail('constants.mailingLists must be a table of list ids or names to true/false, '
                              'e.g. mailingLists = { "Newsletter" = true }')
                lists += [(ref, on) for ref, on in value.items()]
                continue
            problem = target_problem(name)
            if problem:
                self.fail(f"[constants] {name}: {problem}")
            if name in NOT_CONSTANT:
                self.fail(f"[constants] {name} cannot be the same for every row; map it from a column")
            text, type_ = self._constant_value(name, value)
            standard = STANDARD_FIELDS.get(name)
            if standard == "boolean" and type_ != "boolean":
                self.fail(f"[constants] {name} must be true or false")
            constants.append(Constant(name, text, standard or type_))
        return tuple(constants), tuple(lists)

    def _constant_value(self, name: str, value: Any) -> tuple[str, str]:
        if isinstance(value, bool):
            return ("true" if value else "false"), "boolean"
        if isinstance(value, int):
            return str(value), "number"
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(f"[constants] {name} must be a finite number")
            return repr(value), "number"
        if isinstance(value, datetime):
            moment = value.astimezone(UTC) if value.tzinfo else value
            return moment.strftime(values.DATETIME_OUT), "date"
        if isinstance(value, date):
            return value.isoformat(), "date"
        if isinstance(value, str):
            return value, "string"
        return self.fail(f"[constants] {name} must be a string, number, boolean or date, not {_toml_kind(value)}")


def _in(where: str) -> str:
    return f"in {where} " if where.startswith("[") else ""


def _toml_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table"}
    return next((noun for kind, noun in kinds.items() if isinstance(value, kind)), type(value).__name__)


def mapping_spec(mapping_path: Path | None, preset: str | None) -> MappingSpec | None:
    """The preset, the mapping file, or both (the file's entries win)."""
    base = load_preset(preset) if preset else None
    override = load_mapping(mapping_path) if mapping_path else None
    if base and override:
        return merge(base, override)
    return override or base
