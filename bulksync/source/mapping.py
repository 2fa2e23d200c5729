"""Applying a mapping: a read ``Source`` becomes a ``MappedSource`` of Loops fields.

The same rows, with columns named as Loops fields, constants added, values typed
(``bulksync.source.values``) and the rows whose values do not fit their type set aside with a
reason. The mapping itself is a ``MappingSpec`` (``mapping_spec``), read by ``mapping_file``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import ConfigError
from bulksync.fields import MAILING_LISTS, STANDARD_FIELDS, is_list_field, list_field, loops_name
from bulksync.source import values
from bulksync.source.batch import Source
from bulksync.source.mapping_spec import ColumnRule, MappingSpec, describe_rule, fold, property_name, toml_key

TAG_QUOTES = " \t\"'"


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


def lists_by_name(lists: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """GET /v1/lists as name -> id."""
    return {str(item["name"]): str(item["id"]) for item in lists if "name" in item and "id" in item}


def property_types(properties: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """GET /v1/contacts/properties as key -> type (only the four types Loops has)."""
    return {
        str(item["key"]): str(item["type"])
        for item in properties
        if "key" in item and item.get("type") in values.PROPERTY_TYPES
    }


@dataclass
class _Output:
    """One column the mapping writes: its field, how it is computed, and who asked for it (for messages)."""

    target: str
    expr: pl.Expr
    who: str


class _Mapper:
    """One application of a spec to a source: the output columns, the plan and the types it gathers."""

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
        self.account_types = {k: v for k, v in account_types.items() if v in values.PROPERTY_TYPES}
        self.strict = strict
        self.rename_unmapped = rename_unmapped
        self.headers = source.columns
        self.folded: dict[str, str] = {}
        for header in self.headers:
            self.folded.setdefault(fold(header), header)
        self.outputs: list[_Output] = []
        self.plan: list[ColumnPlan] = []
        self.types: dict[str, str] = {}
        self.formats: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.unknown_lists: list[str] = []

    def find(self, column: str) -> str | None:
        return column if column in self.headers else self.folded.get(fold(column))

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
                    f"{self.spec.origin}: [columns.{toml_key(rules[header].column)}] and "
                    f"[columns.{toml_key(rule.column)}] both match column {header!r}; keep one"
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
        by_folded = {fold(name): list_id for name, list_id in self.lists.items()}
        if fold(ref) in by_folded:
            return by_folded[fold(ref)]
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


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
