"""Mappings and presets: which source column becomes which Loops field, typed how.

A ``MappingSpec`` is plain frozen data read from TOML: a user's ``--mapping`` file or a built-in
``--preset`` (``bulksync/presets/<name>.toml``). ``merge`` lays a file over a preset, entry by entry.
``apply_mapping`` turns a read ``Source`` into a ``MappedSource``: the same rows, with columns named
as Loops fields, constants added, values typed (``bulksync.values``) and the rows whose values do
not fit their type set aside with a reason. The file format is documented in ``docs/mapping.md``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import ConfigError
from bulksync.fields import (
    LIST_PREFIX,
    MAILING_LISTS,
    READ_ONLY_FIELDS,
    RESERVED_PROPERTY_NAMES,
    STANDARD_FIELDS,
    is_list_field,
    list_field,
    loops_name,
    standard_name,
)
from bulksync.source import values
from bulksync.source.read import Source

PRESETS: tuple[str, ...] = ("mailchimp", "kit", "sendgrid", "brevo", "beehiiv", "substack")
PRESET_ALIASES: dict[str, str] = {"convertkit": "kit", "sendinblue": "brevo"}
TRANSFORMS: tuple[str, ...] = ("trim", "lowercase", "tags", "split_name")
PROPERTY_TYPES = values.PROPERTY_TYPES
PROPERTY_NAME = re.compile(r"^[a-z][a-zA-Z0-9]*$")

TOP_KEYS = ("description", "unmapped", "optional_columns", "ignore", "columns", "constants", "unsubscribed_file")
COLUMN_KEYS = ("to", "type", "format", "transform", "values", "list", "lists", "separator", "optional")
UNSUBSCRIBED_KEYS = ("if_columns", "if_name")
NOT_CONSTANT = frozenset({"email", "userId"})
TAG_QUOTES = " \t\"'"


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
            found.append(_list_key(self.list_ref))
        elif self.makes_property:
            found.append(self.target())
        found += [_list_key(ref) for _, ref in self.list_items]
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
        wanted = _fold(column)
        return next((rule for rule in self.columns if _fold(rule.column) == wanted), None)

    def list_refs(self) -> list[str]:
        """Every mailing list the mapping names (by id or name): resolve them with GET /v1/lists."""
        refs = [rule.list_ref for rule in self.columns if rule.list_ref is not None]
        refs += [ref for rule in self.columns for _, ref in rule.list_items]
        refs += [ref for ref, _ in self.constant_lists]
        return list(dict.fromkeys(refs))


@dataclass(frozen=True)
class ColumnPlan:
    """How one source column (or a constant, ``source`` None) maps. ``status`` is one of
    mapped, passed (unmapped, kept as a property), ignored, dropped (unmapped), constant."""

    source: str | None
    targets: tuple[str, ...]
    status: str
    detail: str = ""


@dataclass
class MappedSource(Source):
    """A Source whose frame holds Loops fields, with the types the mapping (or the account) gave them.

    ``frame`` has ``__row`` and one String column per field: custom properties, standard fields and
    ``mailingLists.<listId>`` columns ("true"/"false"/null). Rows with a value that does not fit its
    type are not in ``frame``; they are in ``rejects`` (``__row``, ``__reason``). ``kinds`` carries
    the types too (number/boolean/date), so ``normalise`` sends numbers and booleans as JSON ones.
    """

    types: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    rejects: pl.DataFrame = field(default_factory=values.empty_rejects)
    invalid: tuple[values.Invalid, ...] = ()
    plan: list[ColumnPlan] = field(default_factory=list)
    unknown_lists: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    unsubscribed_reason: str | None = None


# -- loading ---------------------------------------------------------------------------------------


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
        where = f"[columns.{_toml_key(column)}]"
        if not isinstance(entry, dict):
            parser.fail(f"columns.{_toml_key(column)} must be a table, e.g. {where} with to = \"...\"")
        rules.append(parser.column(column, entry, where, optional_default))
    ignored = {_fold(name) for name in ignore}
    both = next((rule.column for rule in rules if _fold(rule.column) in ignored), None)
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
                self.fail(f"{where} lists.{_toml_key(item)} must be a list id or name (a string)")
        if type_ is not None and type_ not in PROPERTY_TYPES:
            self.fail(f"{where} type = {type_!r} is not a type; use one of {', '.join(PROPERTY_TYPES)}")
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
                self.fail(f"{where} values.{_toml_key(source_value)} must be a string, number or boolean")
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


# -- merging ---------------------------------------------------------------------------------------


def merge(base: MappingSpec, override: MappingSpec) -> MappingSpec:
    """Lay ``override`` (a mapping file) over ``base`` (a preset); the override wins entry by entry.

    An override column entry replaces the base's entry for that column whole; an override entry or
    constant that writes a field replaces the base's entries writing that field; a column the
    override ignores is dropped from the base's rules and vice versa; ``unmapped`` and the
    unsubscribed-export rule come from the override when it sets them.
    """
    over_columns = {_fold(rule.column) for rule in override.columns}
    over_ignored = {_fold(name) for name in override.ignore}
    over_targets = {target for rule in override.columns for target in rule.targets()}
    over_targets |= {constant.field for constant in override.constants}
    over_targets |= {_list_key(ref) for ref, _ in override.constant_lists}

    def kept(rule: ColumnRule) -> bool:
        key = _fold(rule.column)
        return key not in over_columns and key not in over_ignored and not set(rule.targets()) & over_targets

    base_ignored = {_fold(name) for name in base.ignore}
    unsubscribed = override if override.unsubscribed_columns or override.unsubscribed_names else base
    return MappingSpec(
        columns=tuple(rule for rule in base.columns if kept(rule)) + override.columns,
        constants=tuple(c for c in base.constants if c.field not in over_targets) + override.constants,
        constant_lists=tuple(item for item in base.constant_lists if _list_key(item[0]) not in over_targets)
        + override.constant_lists,
        ignore=tuple(name for name in base.ignore if _fold(name) not in over_columns)
        + tuple(name for name in override.ignore if _fold(name) not in base_ignored),
        unmapped=override.unmapped if override.unmapped is not None else base.unmapped,
        unsubscribed_columns=unsubscribed.unsubscribed_columns,
        unsubscribed_names=unsubscribed.unsubscribed_names,
        origin=f"{base.origin} + {override.origin}",
        description=override.description or base.description,
    )


# -- applying ----------------------------------------------------------------------------------------


def apply_mapping(
    source: Source,
    spec: MappingSpec,
    lists_by_name: Mapping[str, str] | None = None,
    *,
    account_types: Mapping[str, str] | None = None,
    strict: bool = True,
) -> MappedSource:
    """Rename, derive, add and type the columns of ``source`` as ``spec`` says.

    ``lists_by_name`` (list name -> id, from GET /v1/lists) resolves the lists the mapping names;
    a reference that is neither a name nor an id there is a ConfigError. Without it, references are
    taken as list ids. ``account_types`` (property -> type, from GET /v1/contacts/properties) types
    the custom properties the mapping does not type. ``strict=False`` (for ``check``) records unknown
    lists and missing columns in the result instead of raising.
    """
    return _Mapper(source, spec, lists_by_name, account_types or {}, strict=strict, rename_unmapped=True).run()


def identity_mapping(
    source: Source,
    lists_by_name: Mapping[str, str] | None = None,
    *,
    account_types: Mapping[str, str] | None = None,
    strict: bool = True,
) -> MappedSource:
    """A source without a mapping, named the way ``normalise`` names it (headers kept as they are)."""
    spec = MappingSpec(origin="no mapping")
    return _Mapper(source, spec, lists_by_name, account_types or {}, strict=strict, rename_unmapped=False).run()


def property_name(header: str) -> str:
    """The Loops name of a header: a standard field case-insensitively, else camelCase.

    ``Email`` -> ``email``, ``First Name`` -> ``firstName``, ``MEMBER_RATING`` -> ``memberRating``,
    ``utm_source`` -> ``utmSource``; ``mailingLists.<id>`` columns keep their list id.
    """
    stripped = header.strip()
    standard = standard_name(stripped)
    if standard is not None:
        return standard
    if _fold(stripped).startswith(_fold(LIST_PREFIX)):
        return list_field(stripped[len(LIST_PREFIX) :].strip())
    if _fold(stripped) == _fold(MAILING_LISTS) or PROPERTY_NAME.match(stripped):
        return MAILING_LISTS if _fold(stripped) == _fold(MAILING_LISTS) else stripped
    words = [
        word
        for piece in re.split(r"[^A-Za-z0-9]+", stripped)
        for word in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", piece)
    ]
    if not words:
        return stripped
    name = words[0].lower() + "".join(word[:1].upper() + word[1:].lower() for word in words[1:])
    return standard_name(name) or name


def lists_by_name(lists: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """GET /v1/lists as name -> id."""
    return {str(item["name"]): str(item["id"]) for item in lists if "name" in item and "id" in item}


def property_types(properties: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """GET /v1/contacts/properties as key -> type (only the four types Loops has)."""
    return {
        str(item["key"]): str(item["type"])
        for item in properties
        if "key" in item and item.get("type") in PROPERTY_TYPES
    }


@dataclass
class _Output:
    target: str
    expr: pl.Expr
    who: str


class _Mapper:
    def __init__(
        self,
        source: Source,
        spec: MappingSpec,
        lists: Mapping[str, str] | None,
        account_types: Mapping[str, str],
        *,
        strict: bool,
        rename_unmapped: bool,
    ) -> None:
        self.source = source
        self.spec = spec
        self.lists = lists
        self.account_types = {k: v for k, v in account_types.items() if v in PROPERTY_TYPES}
        self.strict = strict
        self.rename_unmapped = rename_unmapped
        self.headers = source.columns
        self.folded: dict[str, str] = {}
        for header in self.headers:
            self.folded.setdefault(_fold(header), header)
        self.outputs: list[_Output] = []
        self.plan: list[ColumnPlan] = []
        self.types: dict[str, str] = {}
        self.formats: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.unknown_lists: list[str] = []

    def find(self, column: str) -> str | None:
        return column if column in self.headers else self.folded.get(_fold(column))

    def run(self) -> MappedSource:
        rules, missing = self._match_rules()
        ignored = {header for header in map(self.find, self.spec.ignore) if header is not None}
        for header in self.headers:
            rule = rules.get(header)
            if header in ignored:
                self.plan.append(ColumnPlan(header, (), "ignored"))
            elif rule is not None:
                self.plan.append(ColumnPlan(header, self._map_column(header, rule), "mapped", describe_rule(rule)))
            elif not self.spec.keeps_unmapped:
                self.plan.append(ColumnPlan(header, (), "dropped"))
            else:
                target = property_name(header) if self.rename_unmapped else loops_name(header)
                self._add(target, pl.col(header), f"column {header!r}", self.source.kinds.get(header, "string"))
                self.plan.append(ColumnPlan(header, (target,), "passed"))
        self._constants()
        reason = self._unsubscribed_reason()
        if reason is not None:
            self.outputs = [output for output in self.outputs if output.target != "subscribed"]
            self._add("subscribed", pl.lit("false"), "the unsubscribed-export rule", "boolean")
            self.plan.append(ColumnPlan(None, ("subscribed",), "constant", f"false: an unsubscribed export ({reason})"))
        self._check_clashes()
        self._default_types()
        frame = self.source.frame.select(
            pl.col(ROW), *(output.expr.cast(pl.String).alias(output.target) for output in self.outputs)
        )
        # A second pass, so that each (possibly costly) column expression is evaluated once.
        frame = frame.with_columns(
            _null_if_blank(pl.col(output.target)).alias(output.target) for output in self.outputs
        )
        try:
            coerced = values.coerce_detailed(frame, self.types, self.formats)
        except ValueError as exc:
            raise ConfigError(f"{self.spec.origin}: {exc}") from None
        kinds = {**self.kinds, **{name: type_ for name, type_ in self.types.items() if type_ != "string"}}
        return MappedSource(
            path=self.source.path,
            frame=coerced.frame,
            kinds={name: kinds.get(name, "string") for name in coerced.frame.columns if name != ROW},
            malformed=list(self.source.malformed),
            header_lines=self.source.header_lines,
            may_hold_nul=self.source.may_hold_nul,
            types=dict(self.types),
            formats=dict(self.formats),
            # Identity columns ride along so that a refused row can still be named in the report.
            rejects=coerced.rejects.join(
                frame.select(ROW, *(name for name in ("email", "userId") if name in frame.columns)), on=ROW, how="left"
            ),
            invalid=coerced.invalid,
            plan=self.plan,
            unknown_lists=self.unknown_lists,
            missing_columns=missing,
            unsubscribed_reason=reason,
        )

    def _match_rules(self) -> tuple[dict[str, ColumnRule], list[str]]:
        rules: dict[str, ColumnRule] = {}
        missing: list[str] = []
        for rule in self.spec.columns:
            header = self.find(rule.column)
            if header is None:
                if not rule.optional:
                    missing.append(rule.column)
                continue
            if header in rules:
                raise ConfigError(
                    f"{self.spec.origin}: [columns.{_toml_key(rules[header].column)}] and "
                    f"[columns.{_toml_key(rule.column)}] both match column {header!r}; keep one"
                )
            rules[header] = rule
        if missing and self.strict:
            raise ConfigError(
                f"{self.source.path}: column {missing[0]!r} of the mapping ({self.spec.origin}) is not in the file "
                f"(columns: {_short(self.headers)}); fix the name in the mapping or mark it optional = true"
            )
        return rules, missing

    def _add(self, target: str, expr: pl.Expr, who: str, kind: str = "string") -> None:
        self.outputs.append(_Output(target, expr, who))
        self.kinds[target] = kind

    def _map_column(self, header: str, rule: ColumnRule) -> tuple[str, ...]:
        who = f"column {header!r}"
        value = pl.col(header).cast(pl.String)
        for transform in rule.transforms:
            if transform == "trim":
                value = value.str.strip_chars()
            elif transform == "lowercase":
                value = value.str.to_lowercase()
            elif transform == "tags":
                value = tags(value, rule.separator)
        if rule.values:
            value = _replace_values(value, rule.values)
        plain = not rule.transforms and not rule.values
        targets: list[str] = []
        if rule.splits_name:
            first, last = split_name(_null_if_blank(value))
            self._add("firstName", first, who)
            self._add("lastName", last, who)
            targets += ["firstName", "lastName"]
        elif rule.list_ref is not None:
            target = list_field(self._resolve(rule.list_ref, who))
            self._add(target, value, who, "boolean")
            self.types[target] = "boolean"
            targets.append(target)
        elif rule.makes_property:
            target = rule.target()
            kind = self.source.kinds.get(header, "string") if plain else "string"
            self._add(target, value, who, kind)
            if rule.type is not None:
                self.types[target] = rule.type
            if rule.format is not None:
                self.formats[target] = rule.format
            targets.append(target)
        if rule.list_items:
            wanted: dict[str, list[str]] = {}
            for item, ref in rule.list_items:
                wanted.setdefault(self._resolve(ref, who), []).append(item.strip().strip(TAG_QUOTES).lower())
            items = pl.col(header).cast(pl.String).str.split(rule.separator).list.eval(
                pl.element().str.strip_chars(TAG_QUOTES).str.to_lowercase()
            )
            for list_id, names in wanted.items():
                hit = pl.any_horizontal([items.list.contains(name) for name in names])
                target = list_field(list_id)
                self._add(target, pl.when(hit).then(pl.lit("true")).otherwise(pl.lit(None, pl.String)), who, "boolean")
                self.types[target] = "boolean"
                targets.append(target)
        return tuple(targets)

    def _constants(self) -> None:
        for constant in self.spec.constants:
            self._add(constant.field, pl.lit(constant.value, pl.String), f"constant {constant.field!r}", constant.type)
            if constant.type != "string":
                self.types[constant.field] = constant.type
            self.plan.append(ColumnPlan(None, (constant.field,), "constant", f"= {constant.value!r}"))
        for ref, member in self.spec.constant_lists:
            target = list_field(self._resolve(ref, "constants.mailingLists"))
            text = "true" if member else "false"
            self._add(target, pl.lit(text), f"constant mailingLists {ref!r}", "boolean")
            self.types[target] = "boolean"
            self.plan.append(ColumnPlan(None, (target,), "constant", f"= {text} (list {ref!r})"))

    def _resolve(self, ref: str, who: str) -> str:
        if self.lists is None:
            return ref
        if ref in self.lists:
            return self.lists[ref]
        if ref in self.lists.values():
            return ref
        by_folded = {_fold(name): list_id for name, list_id in self.lists.items()}
        if _fold(ref) in by_folded:
            return by_folded[_fold(ref)]
        if self.strict:
            known = ", ".join(repr(name) for name in self.lists) or "none"
            raise ConfigError(
                f"{self.spec.origin}: mailing list {ref!r} ({who}) is not in the Loops account (lists: {known}); "
                "fix the list name or id in the mapping, or create the list in Loops"
            )
        if ref not in self.unknown_lists:
            self.unknown_lists.append(ref)
        return ref

    def _unsubscribed_reason(self) -> str | None:
        for column in self.spec.unsubscribed_columns:
            header = self.find(column)
            if header is not None:
                return f"it has a {header} column"
        name = self.source.path.name.lower()
        for pattern in self.spec.unsubscribed_names:
            if fnmatch.fnmatch(name, pattern.lower()):
                return f"its name matches {pattern!r}"
        return None

    def _check_clashes(self) -> None:
        seen: dict[str, str] = {}
        for output in self.outputs:
            if output.target in seen:
                raise ConfigError(
                    f"{self.source.path}: {seen[output.target]} and {output.who} both map to {output.target!r} "
                    f"({self.spec.origin}); ignore one of them or map it to another field"
                )
            seen[output.target] = output.who

    def _default_types(self) -> None:
        """Booleans Loops insists on, and the account's type for custom properties the mapping left open."""
        for output in self.outputs:
            target = output.target
            if target == "subscribed" or is_list_field(target):
                self.types[target] = "boolean"
            elif target not in STANDARD_FIELDS and target != MAILING_LISTS and target not in self.types:
                account_type = self.account_types.get(target)
                if account_type is not None:
                    self.types[target] = account_type


# -- column expressions ----------------------------------------------------------------------------


def tags(value: pl.Expr, separator: str = ",") -> pl.Expr:
    """``"Customers","VIP"`` or ``Customers, VIP`` -> ``Customers, VIP`` (quotes and blanks dropped)."""
    items = value.str.split(separator).list.eval(
        pl.element().str.strip_chars(TAG_QUOTES).filter(pl.element().str.strip_chars(TAG_QUOTES) != "")
    )
    return items.list.join(", ")


def split_name(value: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """A full name -> (first, last): ``Ada King Lovelace`` -> Ada / King Lovelace;
    ``Lovelace, Ada`` -> Ada / Lovelace; a single word is a first name."""
    text = value.str.strip_chars().str.replace_all(r"\s+", " ")
    comma = text.str.contains(",", literal=True)
    parts = text.str.splitn(",", 2)
    first = (
        pl.when(comma)
        .then(parts.struct.field("field_1").str.strip_chars())
        .otherwise(text.str.extract(r"^(\S+)", 1))
    )
    last = (
        pl.when(comma)
        .then(parts.struct.field("field_0").str.strip_chars())
        .otherwise(text.str.extract(r"^\S+ (.+)$", 1))
    )
    return _null_if_empty(first), _null_if_empty(last)


def _null_if_empty(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr == "").then(pl.lit(None, pl.String)).otherwise(expr)


def _null_if_blank(expr: pl.Expr) -> pl.Expr:
    """Empty or blank text is no value."""
    return pl.when(expr.str.strip_chars() == "").then(pl.lit(None, pl.String)).otherwise(expr)


def _replace_values(value: pl.Expr, pairs: Sequence[tuple[str, str | None]]) -> pl.Expr:
    """Source values (trimmed, any case) -> target values; other values pass through unchanged."""
    table = dict(pairs)
    key = value.str.strip_chars().str.to_lowercase()
    replaced = key.replace_strict(table, default=None, return_dtype=pl.String)
    return pl.when(key.is_in(list(table))).then(replaced).otherwise(value)


def describe_rule(rule: ColumnRule) -> str:
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


# -- small helpers -----------------------------------------------------------------------------------


def _fold(name: str) -> str:
    return name.strip().casefold()


def _list_key(ref: str) -> str:
    return f"list:{_fold(ref)}"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(where: str) -> str:
    return f"in {where} " if where.startswith("[") else ""


def _toml_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table"}
    return next((noun for kind, noun in kinds.items() if isinstance(value, kind)), type(value).__name__)


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
