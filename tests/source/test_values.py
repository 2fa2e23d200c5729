"""Typed values: each type's accepted spellings, canonical output, and the exact reasons for rejects."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from bulksync.source.values import Invalid, coerce, coerce_detailed, format_problem

DATE_HINT = "(use ISO 8601 such as 2024-01-31, or set a format in the mapping)"


Rejects = list[tuple[Any, ...]]


def one_column(type_: str, cells: list[str | None], fmt: str | None = None) -> tuple[list[str | None], Rejects]:
    """Coerce a single column ``v``; return its surviving values and the rejects as (row, reason)."""
    frame = pl.DataFrame(
        {"__row": list(range(1, len(cells) + 1)), "v": cells}, schema={"__row": pl.UInt32, "v": pl.String}
    )
    out, rejects = coerce(frame, {"v": type_}, {"v": fmt} if fmt else None)
    return out["v"].to_list(), rejects.rows()


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("02134", "2134"),
        ("1.50", "1.5"),
        (" 42 ", "42"),
        ("+7", "7"),
        ("-12", "-12"),
        ("-0", "0"),
        ("-0.50", "-0.5"),
        ("007.000", "7"),
        (".5", "0.5"),
        ("5.", "5"),
        ("0", "0"),
        ("1e3", "1000.0"),
        ("2.5E-3", "0.0025"),
        ("12345678901234567890123", "12345678901234567890123"),
    ],
)
def test_number_canonical_text(cell: str, expected: str) -> None:
    assert one_column("number", [cell]) == ([expected], [])


@pytest.mark.parametrize("cell", ["1,5", "abc", "1.2.3", "1e400", "--1", "0x10", "1 000", "NaN", "inf"])
def test_number_rejects(cell: str) -> None:
    assert one_column("number", [cell]) == ([], [(1, f"v value '{cell}' is not a number")])


def test_number_decimal_comma_format() -> None:
    values, rejects = one_column("number", ["1.234,5", "1,5", "12", "-3,25", "1,234.5", "12.34"], "decimal_comma")
    assert values == ["1234.5", "1.5", "12", "-3.25"]
    hint = "(expected a decimal comma, e.g. 1.234,5)"
    assert rejects == [(5, f"v value '1,234.5' is not a number {hint}"), (6, f"v value '12.34' is not a number {hint}")]


def test_number_comma_thousands_format() -> None:
    values, rejects = one_column("number", ["1,234.5", "1,234,567", "7", "1.234,5"], "comma_thousands")
    assert values == ["1234.5", "1234567", "7"]
    assert rejects == [(4, "v value '1.234,5' is not a number (expected e.g. 1,234.5)")]


def test_booleans_any_case() -> None:
    values, rejects = one_column("boolean", ["true", "FALSE", "Yes", "no", "1", "0", " TRUE ", "maybe", "2"])
    assert values == ["true", "false", "true", "false", "true", "false", "true"]
    assert rejects == [
        (8, "v value 'maybe' is not a boolean (use true/false/yes/no/1/0)"),
        (9, "v value '2' is not a boolean (use true/false/yes/no/1/0)"),
    ]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("2024-01-31", "2024-01-31"),
        ("2018-02-12 10:54:27", "2018-02-12T10:54:27Z"),
        ("2023-03-24 10:23:10 UTC", "2023-03-24T10:23:10Z"),
        ("2024-01-31T10:00:00Z", "2024-01-31T10:00:00Z"),
        ("2022-01-15T09:30:00.123Z", "2022-01-15T09:30:00Z"),
        ("2024-01-31T10:00:00+05:30", "2024-01-31T04:30:00Z"),
        ("2024-01-31T10:00:00-0800", "2024-01-31T18:00:00Z"),
        ("2024-01-31T23:30:00-01", "2024-02-01T00:30:00Z"),
        ("2024-01-31T10:00", "2024-01-31T10:00:00Z"),
        ("2024-01-31 10:00Z", "2024-01-31T10:00:00Z"),
        ("1700000000", "2023-11-14T22:13:20Z"),
        ("1700000000123", "2023-11-14T22:13:20Z"),
    ],
)
def test_dates_in_common_formats(cell: str, expected: str) -> None:
    assert one_column("date", [cell]) == ([expected], [])


@pytest.mark.parametrize(
    "cell", ["2024-02-30", "2024-13-01T00:00:00Z", "31/12/2020", "soon", "20240131", "0000-00-00 00:00:00", "17000"]
)
def test_dates_rejected_without_format(cell: str) -> None:
    assert one_column("date", [cell]) == ([], [(1, f"v value '{cell}' is not a date {DATE_HINT}")])


def test_date_with_format_accepts_only_that_format() -> None:
    values, rejects = one_column("date", ["31/12/2020", "01/02/2021", "31/31/2020", "2020-12-31"], "%d/%m/%Y")
    assert values == ["2020-12-31", "2021-02-01"]
    assert rejects == [
        (3, "v value '31/31/2020' is not a date (expected %d/%m/%Y)"),
        (4, "v value '2020-12-31' is not a date (expected %d/%m/%Y)"),
    ]


def test_date_format_with_time_and_offset() -> None:
    assert one_column("date", ["14/05/2023 09:12"], "%d/%m/%Y %H:%M") == (["2023-05-14T09:12:00Z"], [])
    assert one_column("date", ["2023-05-14 09:12:00 +0200"], "%Y-%m-%d %H:%M:%S %z") == (["2023-05-14T07:12:00Z"], [])


def test_nulls_and_empty_cells_stay_null_and_strings_are_untouched() -> None:
    frame = pl.DataFrame(
        {"n": [None, "", "  "], "b": [None, "", "yes"], "d": [None, " ", "2024-01-01"], "s": [" x ", "", None]}
    )
    out, rejects = coerce(frame, {"n": "number", "b": "boolean", "d": "date", "s": "string"})
    assert rejects.is_empty()
    assert out.to_dict(as_series=False) == {
        "n": [None, None, None],
        "b": [None, None, "true"],
        "d": [None, None, "2024-01-01"],
        "s": [" x ", "", None],
        "__row": [1, 2, 3],
    }


def test_a_row_with_several_bad_values_gets_every_reason_and_leaves_the_frame() -> None:
    frame = pl.DataFrame(
        {"__row": [1, 2, 3], "plan": ["1", "abc", "x"], "vip": ["yes", "no", "perhaps"], "email": ["a", "b", "c"]},
        schema_overrides={"__row": pl.UInt32},
    )
    out, rejects = coerce(frame, {"plan": "number", "vip": "boolean"})
    assert out.rows() == [(1, "1", "true", "a")]
    assert rejects.schema == pl.Schema({"__row": pl.UInt32, "__reason": pl.String})
    assert rejects.rows() == [
        (2, "plan value 'abc' is not a number"),
        (3, "plan value 'x' is not a number; vip value 'perhaps' is not a boolean (use true/false/yes/no/1/0)"),
    ]


def test_long_values_are_cut_short_in_reasons() -> None:
    _, rejects = one_column("number", ["9" * 40 + "x" * 40])
    assert rejects == [(1, f"v value '{'9' * 40 + 'x' * 17}...' is not a number")]


def test_detailed_counts_and_first_examples_per_field() -> None:
    frame = pl.DataFrame({"__row": [2, 3, 5, 8, 9], "d": ["x1", "2024-01-01", "x2", "x3", "x4"]})
    result = coerce_detailed(frame, {"d": "date"}, examples=3)
    assert result.invalid == (Invalid("d", "date", 4, ((2, "x1"), (5, "x2"), (8, "x3"))),)
    assert result.frame["__row"].to_list() == [3]


def test_frame_without_row_numbers_gets_them() -> None:
    out, rejects = coerce(pl.DataFrame({"n": ["1", "x"]}), {"n": "number"})
    assert out.rows() == [(1, "1")]
    assert rejects.rows() == [(2, "n value 'x' is not a number")]


def test_columns_absent_from_the_frame_are_skipped() -> None:
    out, rejects = coerce(pl.DataFrame({"a": ["1"]}), {"missing": "number"})
    assert out["a"].to_list() == ["1"] and rejects.is_empty()


def test_unknown_type_or_bad_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^n: unknown type 'integer'; use one of string, number, boolean, date$"):
        coerce(pl.DataFrame({"n": ["1"]}), {"n": "integer"})
    with pytest.raises(ValueError, match=r"^n: number format 'european' is unknown"):
        coerce(pl.DataFrame({"n": ["1"]}), {"n": "number"}, {"n": "european"})


def test_format_problems() -> None:
    assert format_problem("date", "%d/%m/%Y") is None
    assert format_problem("number", "decimal_comma") is None
    assert format_problem("date", "DD/MM/YYYY") == (
        "date format 'DD/MM/YYYY' has no strftime directive; write it like '%d/%m/%Y'"
    )
    assert format_problem("number", "1.234,5") == (
        "number format '1.234,5' is unknown; use one of decimal_comma, comma_thousands"
    )
    assert format_problem("boolean", "yes/no") == "a format applies to number and date columns only, not boolean"


def test_dates_mixed_with_junk_first_are_all_read() -> None:
    junk = [f"junk {i}" for i in range(10)]
    good = ["2024-01-31", "2018-02-12 10:54:27", "2024-01-31T10:00:00+01:00", "1700000000", "2023-03-24 10:23:10 UTC"]
    values, rejects = one_column("date", [*junk, *good, *junk[:2]])
    assert values == [
        "2024-01-31", "2018-02-12T10:54:27Z", "2024-01-31T09:00:00Z", "2023-11-14T22:13:20Z", "2023-03-24T10:23:10Z"
    ]
    assert [row for row, _ in rejects] == [*range(1, 11), 16, 17]


def test_empty_and_all_null_columns() -> None:
    empty = pl.DataFrame(schema={"n": pl.String, "b": pl.String, "d": pl.String})
    out, rejects = coerce(empty, {"n": "number", "b": "boolean", "d": "date"})
    assert out.is_empty() and rejects.is_empty()
    out, rejects = coerce(pl.DataFrame({"n": [None, None], "d": [None, None]}), {"n": "number", "d": "date"})
    assert out.rows() == [(1, None, None), (2, None, None)] and rejects.is_empty()
