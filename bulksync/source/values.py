"""Typed values: turn text columns into the canonical text of a Loops property type, column-wise.

Every value stays text (the frame is all ``String``); what changes is that a typed column holds one
canonical spelling per value, which ``fields.json_value`` turns into the JSON Loops expects:

- number: JSON number text (``02134`` -> ``2134``, ``1.50`` -> ``1.5``). ``1,5`` is not a number
  unless the column's format is ``decimal_comma`` (``1.234,5``) or ``comma_thousands`` (``1,234.5``).
- boolean: ``true``/``false`` from true/false/yes/no/1/0 (also y/n/t/f), any case.
- date: ``YYYY-MM-DD`` for a date alone, else ``YYYY-MM-DDTHH:MM:SSZ`` in UTC. Accepted without a
  format: ISO 8601 with or without an offset or ``Z`` (``T`` or a space between date and time),
  ``2023-03-24 10:23:10 UTC``, Unix seconds (9-10 digits) and milliseconds (12-13 digits). A time
  without an offset is taken as UTC, as Loops does. With a strftime format, only that format is accepted.
- string: left as it is.

A value that does not fit rejects its row with a reason naming the field, the value and the type.
Nulls stay null. No Python code runs per row: each column is parsed as a whole with polars; dates
try a short list of formats, each only on the values no earlier format could read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from bulksync.columns import REASON, ROW
from bulksync.fields import FALSE_WORDS, TRUE_WORDS

PROPERTY_TYPES: tuple[str, ...] = ("string", "number", "boolean", "date")
NUMBER_FORMATS: dict[str, str] = {
    "decimal_comma": "a decimal comma, e.g. 1.234,5",
    "comma_thousands": "e.g. 1,234.5",
}
DATE_OUT = "%Y-%m-%d"
DATETIME_OUT = "%Y-%m-%dT%H:%M:%SZ"
MAX_SHOWN = 60
GUIDED_ROUNDS = 8
EXAMPLES = 3

_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_DECIMAL_COMMA = r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$"
_COMMA_THOUSANDS = r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_UNIX_SECONDS = r"^\d{9,10}$"
_UNIX_MILLIS = r"^\d{12,13}$"
# strftime directives that carry a time of day: a format without any of them yields a date alone.
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%T", "%R", "%c", "%X", "%p", "%s", "%z", "%:z", "%f", "%.f", "%+")


@dataclass(frozen=True)
class Invalid:
    """The values of one field that do not fit its type: how many rows, and the first few."""

    field: str
    type: str
    rows: int
    examples: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Coerced:
    """A coerced frame (rejected rows removed), the rejects with reasons, and the detail per field."""

    frame: pl.DataFrame
    rejects: pl.DataFrame
    invalid: tuple[Invalid, ...]


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={ROW: pl.UInt32, REASON: pl.String})


def format_problem(type_: str, fmt: str | None) -> str | None:
    """Why ``fmt`` cannot be the input format of a ``type_`` column, or None when it can."""
    if fmt is None:
        return None
    if type_ == "number":
        if fmt not in NUMBER_FORMATS:
            return f"number format {fmt!r} is unknown; use one of {', '.join(NUMBER_FORMATS)}"
        return None
    if type_ == "date":
        if "%" not in fmt:
            return f"date format {fmt!r} has no strftime directive; write it like '%d/%m/%Y'"
        try:
            pl.Series([""], dtype=pl.String).str.to_datetime(fmt, strict=False)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            return f"date format {fmt!r} is not a valid strftime format ({str(exc).splitlines()[0]})"
        return None
    return f"a format applies to number and date columns only, not {type_}"


def coerce(
    frame: pl.DataFrame, types: Mapping[str, str], formats: Mapping[str, str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give each typed column its canonical text; rows with a value that does not fit are rejected.

    Returns the frame without the rejected rows, and the rejects (``__row``, ``__reason``). When a
    row has several bad values the reasons are joined with ``; ``.
    """
    result = coerce_detailed(frame, types, formats)
    return result.frame, result.rejects


def coerce_detailed(
    frame: pl.DataFrame,
    types: Mapping[str, str],
    formats: Mapping[str, str] | None = None,
    examples: int = EXAMPLES,
) -> Coerced:
    """``coerce``, plus for each field with bad values their count and the first ``examples`` of them.

    Each typed column is parsed once, as a whole; reasons are built for the rejected rows only.
    """
    formats = formats or {}
    for name, type_ in types.items():
        if type_ not in PROPERTY_TYPES:
            raise ValueError(f"{name}: unknown type {type_!r}; use one of {', '.join(PROPERTY_TYPES)}")
        problem = format_problem(type_, formats.get(name)) if type_ != "string" else None
        if problem:
            raise ValueError(f"{name}: {problem}")
    if ROW not in frame.columns:
        frame = frame.with_row_index(ROW, offset=1)
    typed = [(name, type_) for name, type_ in types.items() if name in frame.columns and type_ != "string"]
    parsed: list[pl.Series] = []
    flags: list[pl.Series] = []
    for name, type_ in typed:
        raw = clean(frame[name])
        value = parse(raw, type_, formats.get(name)).alias(name)
        parsed.append(value)
        flags.append((raw.is_not_null() & value.is_null()).alias(name))
    coerced = frame.with_columns(parsed) if parsed else frame
    if not flags:
        return Coerced(coerced, empty_rejects(), ())
    bad = pl.DataFrame(flags)
    mask = bad.select(pl.any_horizontal(pl.all())).to_series()
    if not mask.any():
        return Coerced(coerced, empty_rejects(), ())
    bad = bad.filter(mask)
    rejected = frame.filter(mask).select(ROW, *(clean(frame[name]).filter(mask) for name, _ in typed))
    reasons = pl.concat_str(
        [
            pl.when(bad[name]).then(_reason(name, type_, formats.get(name)))
            for name, type_ in typed
        ],
        separator="; ",
        ignore_nulls=True,
    )
    rejects = rejected.select(pl.col(ROW).cast(pl.UInt32), reasons.alias(REASON))
    invalid = []
    for name, type_ in typed:
        rows = int(bad[name].sum())
        if rows:
            shown = rejected.filter(bad[name]).head(examples).select(ROW, _shown(name))
            invalid.append(Invalid(name, type_, rows, tuple((int(r), str(v)) for r, v in shown.iter_rows())))
    return Coerced(coerced.filter(~mask), rejects, tuple(invalid))


def clean(values: pl.Series) -> pl.Series:
    """The values as text, trimmed, an empty cell as null."""
    text = values.cast(pl.String).str.strip_chars()
    return text.set((text == "").fill_null(False), None)


def parse(raw: pl.Series, type_: str, fmt: str | None = None) -> pl.Series:
    """Canonical text of each cleaned value of ``raw`` as ``type_``; null where it does not fit."""
    if type_ == "number":
        return number(raw, fmt)
    if type_ == "boolean":
        return boolean(raw)
    if type_ == "date":
        return date(raw, fmt)
    return raw


def _shown(name: str) -> pl.Expr:
    """The original value as a reason shows it: trimmed, and cut short when long."""
    raw = pl.col(name)
    return (
        pl.when(raw.str.len_chars() > MAX_SHOWN)
        .then(pl.concat_str([raw.str.slice(0, MAX_SHOWN - 3), pl.lit("...")]))
        .otherwise(raw)
    )


def _reason(name: str, type_: str, fmt: str | None) -> pl.Expr:
    if type_ == "number":
        hint = f" (expected {NUMBER_FORMATS[fmt]})" if fmt else ""
    elif type_ == "boolean":
        hint = " (use true/false/yes/no/1/0)"
    elif fmt:
        hint = f" (expected {fmt})"
    else:
        hint = " (use ISO 8601 such as 2024-01-31, or set a format in the mapping)"
    # concat_str, not pl.format: a field name or a strftime format may hold braces
    return pl.concat_str(pl.lit(f"{name} value '"), _shown(name), pl.lit(f"' is not a {type_}{hint}"))


# -- one function per type, on cleaned text (trimmed, empty cells null) -----------------------------


def number(text: pl.Series, fmt: str | None = None) -> pl.Series:
    """JSON number text, or null when a value is not a number (in ``fmt``, when given)."""
    if fmt == "decimal_comma":
        ok = text.str.contains(_DECIMAL_COMMA)
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    elif fmt == "comma_thousands":
        ok = text.str.contains(_COMMA_THOUSANDS)
        text = text.str.replace_all(",", "", literal=True)
    else:
        ok = text.str.contains(_NUMBER)
    canonical = text.str.strip_prefix("+").str.replace(r"^(-?)0+(\d)", "${1}${2}")
    if canonical.str.contains(".", literal=True).any():
        canonical = (
            canonical.str.replace(r"^(-?)\.", "${1}0.")
            .str.replace(r"^(-?\d+)\.0*$", "${1}")
            .str.replace(r"^(-?\d+\.\d*?)0+$", "${1}")
        )
    canonical = canonical.set((canonical == "-0").fill_null(False), "0")
    scientific = text.str.contains("[eE]")
    if scientific.any():
        as_float = text.cast(pl.Float64, strict=False)
        finite = as_float.set(~as_float.is_finite().fill_null(True), None).cast(pl.String)
        canonical = canonical.zip_with(~scientific.fill_null(False), finite)
    return canonical.set(~ok.fill_null(False), None)


def boolean(text: pl.Series) -> pl.Series:
    """``true``/``false``, or null when a value is not a boolean word."""
    lowered = text.str.to_lowercase()
    out = pl.Series(text.name, [None] * len(text), dtype=pl.String)
    out = out.set(lowered.is_in(sorted(TRUE_WORDS)).fill_null(False), "true")
    return out.set(lowered.is_in(sorted(FALSE_WORDS)).fill_null(False), "false")


# The date-times read without a format, most common first: each is tried only on the values no
# earlier one could read. Values are upper-cased first (a "t" or "z" is fine). A time without an
# offset is UTC; %.f also matches no fraction; %#z takes +05, +0530 and +05:30.
_NAIVE_BASES = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M")
_NAIVE = tuple(base + suffix for suffix in ("", "Z", " UTC", " GMT", " Z") for base in _NAIVE_BASES)
_OFFSET = tuple(base + suffix for suffix in ("%#z", " %#z") for base in _NAIVE_BASES)


def date(text: pl.Series, fmt: str | None = None) -> pl.Series:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or null when a value is not a date."""
    if fmt is not None:
        return _formatted_date(text, fmt).alias(text.name)
    out = pl.Series(text.name, [None] * len(text), dtype=pl.String)
    upper = text.str.to_uppercase()
    attempts: list[tuple[str, str | None]] = [
        ("date", "%Y-%m-%d"),
        *(("naive", f) for f in _NAIVE),
        *(("offset", f) for f in _OFFSET),
        ("seconds", None),
        ("millis", None),
    ]
    unreadable = pl.Series([False] * len(text), dtype=pl.Boolean)
    # Guided rounds: the attempt that reads the first pending value is applied to every pending value,
    # so a column in one format costs one parse. Then, for what is left, every attempt in order.
    for _ in range(GUIDED_ROUNDS):
        pending = (text.is_not_null() & out.is_null() & ~unreadable).arg_true()
        if pending.is_empty():
            return out
        first = upper.gather(pending.head(1))
        chosen = next((a for a in attempts if _attempt(first, *a).is_not_null().all()), None)
        if chosen is None:
            unreadable = unreadable.scatter(pending.head(1), True)
            continue
        out = _fill(out, upper, pending, chosen)
    for attempt in attempts:
        pending = (text.is_not_null() & out.is_null()).arg_true()
        if pending.is_empty():
            break
        out = _fill(out, upper, pending, attempt)
    return out


def _fill(out: pl.Series, upper: pl.Series, pending: pl.Series, attempt: tuple[str, str | None]) -> pl.Series:
    found = _attempt(upper.gather(pending), *attempt)
    hits = found.is_not_null()
    return out.scatter(pending.filter(hits), found.filter(hits)) if hits.any() else out


def _attempt(text: pl.Series, kind: str, pattern: str | None) -> pl.Series:
    if kind == "date" and pattern is not None:
        day = text.set(~text.str.contains(_ISO_DATE).fill_null(False), None)
        return day.str.to_date(pattern, strict=False).dt.strftime(DATE_OUT)
    if kind == "naive" and pattern is not None:
        return text.str.to_datetime(pattern, strict=False, time_unit="us").dt.strftime(DATETIME_OUT)
    if kind == "offset" and pattern is not None:
        moment = text.str.to_datetime(pattern, strict=False, time_unit="us", time_zone="UTC")
        return moment.dt.strftime(DATETIME_OUT)
    digits = _UNIX_SECONDS if kind == "seconds" else _UNIX_MILLIS
    count = text.set(~text.str.contains(digits).fill_null(False), None).cast(pl.Int64)
    millis = count * 1000 if kind == "seconds" else count
    return pl.select(pl.from_epoch(pl.lit(millis), time_unit="ms")).to_series().dt.strftime(DATETIME_OUT)


def has_time(fmt: str) -> bool:
    return any(directive in fmt for directive in _TIME_DIRECTIVES)


def _formatted_date(text: pl.Series, fmt: str) -> pl.Series:
    if not has_time(fmt):
        return text.str.to_date(fmt, strict=False).dt.strftime(DATE_OUT)
    if "%z" in fmt or "%:z" in fmt or "%#z" in fmt:
        moment = text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
    else:
        moment = text.str.to_datetime(fmt, strict=False, time_unit="us")
    return moment.dt.strftime(DATETIME_OUT)
