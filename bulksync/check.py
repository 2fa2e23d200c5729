"""The preflight (``bulksync check``): would a sync of this source, with this mapping, run clean?

``run_check`` asks Loops three read-only questions (the key's team, the account's properties, its
mailing lists), maps the source as a sync would, and returns plain data: how each column maps,
the properties Loops does not have yet, values that do not fit their type (with example rows),
list names Loops does not know, and the mapping's other problems. ``render_check`` turns that into
text. Nothing is written to Loops.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from bulksync.fields import LIST_PREFIX, MAILING_LISTS, STANDARD_FIELDS, is_list_field
from bulksync.source.batch import Source, SourceStream, kind_type
from bulksync.source.mapping import (
    MappedSource,
    apply_mapping,
    identity_mapping,
    lists_by_name,
    property_types,
)
from bulksync.source.mapping_spec import MappingSpec, target_problem
from bulksync.source.values import EXAMPLES, Invalid

NAME_WIDTH = 24


class LoopsAccount(Protocol):
    """The read-only part of ``LoopsClient`` the preflight needs."""

    def api_key(self) -> dict[str, Any]: ...

    def properties(self) -> list[dict[str, Any]]: ...

    def lists(self) -> list[dict[str, Any]]: ...


class TypeMismatch(NamedTuple):
    """Values of ``field`` that are not a ``type``: the first few as (row, value), and how many rows."""

    field: str
    type: str
    examples: list[tuple[int, str]]
    rows: int


@dataclass(frozen=True)
class ColumnCheck:
    """One line of the column report: a source column (None for a constant) and one field it makes."""

    source: str | None
    target: str | None
    type: str | None
    status: str
    new_property: bool = False
    detail: str = ""


@dataclass
class CheckResult:
    team: str
    columns: list[ColumnCheck]
    missing_properties: list[tuple[str, str]]
    type_mismatches: list[TypeMismatch]
    unknown_lists: list[str]
    type_conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    invalid_names: list[tuple[str, str]] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    has_email: bool = True
    rows: int = 0
    source: str = ""
    mapping: str = ""
    account_lists: list[str] = field(default_factory=list)
    unsubscribed_reason: str | None = None

    @property
    def problems(self) -> int:
        return (
            len(self.missing_properties)
            + len(self.type_mismatches)
            + len(self.unknown_lists)
            + len(self.type_conflicts)
            + len(self.invalid_names)
            + len(self.missing_columns)
            + (0 if self.has_email else 1)
        )

    @property
    def ok(self) -> bool:
        """True when a sync would run clean: exit 0."""
        return self.problems == 0


def run_check(source: Source | SourceStream, spec: MappingSpec | None, client: LoopsAccount) -> CheckResult:
    """Verify the key, read the account's properties and lists, and map ``source`` as a sync would.

    A stream is mapped a batch at a time (the columns once, from its header): memory holds one batch.
    """
    team = str(client.api_key().get("teamName") or "(unnamed team)")
    account_types = property_types(client.properties())
    lists = client.lists()
    names = lists_by_name(lists)

    def mapped_of(part: Source) -> MappedSource:
        if spec is None:
            return identity_mapping(part, names, account_types=account_types, strict=False)
        return apply_mapping(part, spec, names, account_types=account_types, strict=False)

    def mapped_rows(stream: SourceStream) -> tuple[MappedSource, int, _Mismatches]:
        mapped = mapped_of(stream.header if isinstance(source, SourceStream) else source.cleared())
        rows, mismatches = 0, _Mismatches()
        for batch in stream.batches:
            part = mapped_of(batch)
            rows += part.frame.height + part.rejects.height
            mismatches.add(part.invalid)
        return mapped, rows, mismatches

    stream = source if isinstance(source, SourceStream) else SourceStream(source, iter([source]))
    mapped, rows, mismatches = stream.consume(mapped_rows)  # Loops is asked once, even if JSONL starts over

    columns: list[ColumnCheck] = []
    custom: list[str] = []
    for plan in mapped.plan:
        if not plan.targets:
            columns.append(ColumnCheck(plan.source, None, None, plan.status, detail=plan.detail))
        for target in plan.targets:
            is_custom = _is_custom(target)
            if is_custom and target not in custom:
                custom.append(target)
            columns.append(
                ColumnCheck(
                    plan.source,
                    target,
                    _field_type(target, mapped, account_types),
                    plan.status,
                    new_property=is_custom and target not in account_types and target_problem(target) is None,
                    detail=plan.detail,
                )
            )

    invalid_names = [(name, problem) for name in custom if (problem := target_problem(name)) is not None]
    bad = {name for name, _ in invalid_names}
    missing = [
        (name, _field_type(name, mapped, account_types))
        for name in custom
        if name not in account_types and name not in bad
    ]
    conflicts = [
        (name, type_, account_types[name])
        for name, type_ in mapped.types.items()
        if _is_custom(name) and name in account_types and account_types[name] != type_
    ]
    known_ids = set(names.values())
    unknown = list(mapped.unknown_lists)
    for name in mapped.frame.columns:
        list_id = name[len(LIST_PREFIX) :] if is_list_field(name) else None
        if list_id is not None and list_id not in known_ids and list_id not in unknown:
            unknown.append(list_id)
    return CheckResult(
        team=team,
        columns=columns,
        missing_properties=missing,
        type_mismatches=mismatches.found,
        unknown_lists=unknown,
        type_conflicts=conflicts,
        invalid_names=invalid_names,
        missing_columns=list(mapped.missing_columns),
        has_email="email" in mapped.frame.columns,
        rows=rows,
        source=str(stream.header.path),
        mapping=spec.origin if spec is not None else "none (columns named like Loops fields)",
        account_lists=[f"{name} ({list_id})" for name, list_id in names.items()],
        unsubscribed_reason=mapped.unsubscribed_reason,
    )


class _Mismatches:
    """Type mismatches gathered over the batches: rows counted, the first examples kept, first seen first."""

    def __init__(self) -> None:
        self.found: list[TypeMismatch] = []

    def add(self, invalid: Iterable[Invalid]) -> None:
        for item in invalid:
            known = next((m for m in self.found if (m.field, m.type) == (item.field, item.type)), None)
            if known is None:
                self.found.append(TypeMismatch(item.field, item.type, list(item.examples), item.rows))
                continue
            known.examples.extend(item.examples[: EXAMPLES - len(known.examples)])
            self.found[self.found.index(known)] = known._replace(rows=known.rows + item.rows)


def _is_custom(name: str) -> bool:
    return name not in STANDARD_FIELDS and name != MAILING_LISTS and not is_list_field(name)


def _field_type(name: str, mapped: MappedSource, account_types: dict[str, str]) -> str:
    if name == MAILING_LISTS:
        return "lists"
    if is_list_field(name):
        return "boolean"
    kind = mapped.kinds.get(name)
    return (
        mapped.types.get(name)
        or STANDARD_FIELDS.get(name)
        or account_types.get(name)
        or kind_type(kind)
    )


def render_check(result: CheckResult) -> str:
    """The preflight as text: the team, each column, then the problems and the verdict."""
    lines = [
        f"Loops team: {result.team}",
        f"Source: {result.source} ({_rows(result.rows)})",
        f"Mapping: {result.mapping}",
    ]
    if result.unsubscribed_reason:
        lines.append(f"Unsubscribed export ({result.unsubscribed_reason}): every row gets subscribed = false")
    lines += ["", "Columns:"]
    previous: ColumnCheck | None = None
    for column in result.columns:
        if column.status != "dropped":
            repeat = previous is not None and previous.source == column.source and column.source is not None
            lines.append(_column_line(column, show_detail=not repeat))
            previous = column
    dropped = [column.source for column in result.columns if column.status == "dropped" and column.source]
    if dropped:
        lines += textwrap.wrap(
            f"Dropped (not in the mapping): {', '.join(dropped)}",
            width=100,
            initial_indent="  ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    lines.append("")
    if result.ok:
        lines.append(f"OK: a sync would run clean ({_rows(result.rows)}).")
        return "\n".join(lines) + "\n"
    lines.append("Problems:")
    if not result.has_email:
        lines.append("  No column maps to email: map one (to = \"email\") or name a column 'email'.")
    if result.missing_columns:
        lines.append("  Columns of the mapping missing from the file (fix the name or mark them optional = true):")
        lines += [f"    {name}" for name in result.missing_columns]
    if result.invalid_names:
        lines.append("  Columns that cannot be Loops properties (map them with to = \"...\" or ignore them):")
        lines += [f"    {name}: {problem}" for name, problem in result.invalid_names]
    if result.missing_properties:
        count = len(result.missing_properties)
        lines.append(f"  Properties that do not exist in Loops yet ({count}; create them first):")
        lines += [f"    {name:<{NAME_WIDTH}} {type_}" for name, type_ in result.missing_properties]
    if result.type_conflicts:
        lines.append("  Types that differ from the property in Loops:")
        lines += [
            f"    {name}: the mapping says {ours}, Loops has {theirs}"
            for name, ours, theirs in result.type_conflicts
        ]
    if result.type_mismatches:
        lines.append("  Values that do not fit their type (these rows would be rejected):")
        for mismatch in result.type_mismatches:
            shown = ", ".join(f"row {row} {value!r}" for row, value in mismatch.examples)
            more = f", ... ({mismatch.rows} rows)" if mismatch.rows > len(mismatch.examples) else ""
            plural = "row" if mismatch.rows == 1 else "rows"
            lines.append(f"    {mismatch.field} ({mismatch.type}), {mismatch.rows} {plural}: {shown}{more}")
    if result.unknown_lists:
        known = ", ".join(result.account_lists) or "none"
        lines.append(f"  Mailing lists Loops does not have: {', '.join(repr(name) for name in result.unknown_lists)}")
        lines.append(f"    (lists in Loops: {known})")
    plural = "problem" if result.problems == 1 else "problems"
    lines += ["", f"{result.problems} {plural}: a sync would not run clean."]
    return "\n".join(lines) + "\n"


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _column_line(column: ColumnCheck, show_detail: bool = True) -> str:
    source = column.source if column.source is not None else "(constant)"
    if column.target is None:
        return f"  {source:<{NAME_WIDTH}}    {column.status}"
    detail = column.detail if show_detail else ""
    notes = [note for note in ("new property" if column.new_property else "", detail) if note]
    text = f"  {source:<{NAME_WIDTH}} -> {column.target:<{NAME_WIDTH}} {column.type or '':<8}"
    return (text + "  " + "; ".join(notes)).rstrip() if notes else text.rstrip()
