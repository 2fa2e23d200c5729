"""The per-row content hash: what must change it, what must not, and its pinned value."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksync.columns import HASH
from bulksync.plan.fingerprint import fingerprint, with_fingerprint

TYPES = {"email": "string", "firstName": "string", "lastName": "string", "zip": "string", "seats": "number"}
ADA = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "zip": "02134", "seats": "4"}


def frame_of(*rows: Mapping[str, str | None]) -> pl.DataFrame:
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pl.DataFrame([dict(row) for row in rows], schema={name: pl.String for name in names})


def hashes(frame: pl.DataFrame, types: Mapping[str, str] = TYPES) -> list[int]:
    return with_fingerprint(frame, frame.columns, types)[HASH].to_list()


def row_hash(row: Mapping[str, str | None], types: Mapping[str, str] = TYPES) -> int:
    return hashes(frame_of(row), types)[0]


def test_adds_a_signed_64_bit_hash_column_and_keeps_the_rest() -> None:
    frame = frame_of(ADA)

    out = with_fingerprint(frame, frame.columns, TYPES)

    assert out.columns == [*frame.columns, HASH]
    assert out.schema[HASH] == pl.Int64
    assert out.drop(HASH).equals(frame)


def test_pinned_value_for_a_fixed_row() -> None:
    # Stored hashes must survive upgrades: a change here means every contact looks changed.
    assert row_hash(ADA) == -4119681224421497518


def test_same_row_same_hash_whatever_the_column_order() -> None:
    frame = frame_of(ADA)
    shuffled = frame.select(["seats", "zip", "email", "lastName", "firstName"])

    assert hashes(shuffled) == hashes(frame)


def test_the_field_order_given_does_not_matter() -> None:
    frame = frame_of(ADA)

    forward = with_fingerprint(frame, list(TYPES), TYPES)[HASH]
    backward = with_fingerprint(frame, list(reversed(TYPES)), TYPES)[HASH]

    assert forward.equals(backward)


def test_identical_rows_in_one_frame_hash_alike_and_others_differ() -> None:
    grace = {**ADA, "email": "grace@example.com", "firstName": "Grace"}

    first, second, third = hashes(frame_of(ADA, grace, ADA))

    assert first == third
    assert first != second


def test_changing_any_one_value_changes_the_hash() -> None:
    base = row_hash(ADA)
    for name, value in ADA.items():
        for new in (value + "x", value.upper() + "!", None):
            assert row_hash({**ADA, name: new}) != base, (name, new)


def test_case_and_whitespace_are_content() -> None:
    assert row_hash({**ADA, "firstName": "ada"}) != row_hash(ADA)
    assert row_hash({**ADA, "firstName": "Ada "}) != row_hash(ADA)


def test_changing_a_fields_type_changes_the_hash() -> None:
    assert row_hash(ADA, {**TYPES, "zip": "number"}) != row_hash(ADA)
    assert row_hash(ADA, {**TYPES, "seats": "string"}) != row_hash(ADA)


def test_moving_text_between_fields_changes_the_hash() -> None:
    two = {"firstName": "string", "lastName": "string"}

    assert row_hash({"firstName": "ab", "lastName": ""}, two) != row_hash({"firstName": "a", "lastName": "b"}, two)
    assert row_hash({"firstName": "ab", "lastName": None}, two) != row_hash({"firstName": "a", "lastName": "b"}, two)
    assert row_hash({"firstName": "x", "lastName": None}, two) != row_hash({"firstName": None, "lastName": "x"}, two)


def test_swapping_values_between_fields_changes_the_hash() -> None:
    swapped = {**ADA, "firstName": ADA["lastName"], "lastName": ADA["firstName"]}

    assert row_hash(swapped) != row_hash(ADA)


def test_null_and_missing_column_hash_the_same() -> None:
    # An empty column in the source (all null) says nothing about a contact: it must not make
    # every row look changed.
    without = frame_of({"email": "ada@example.com", "firstName": "Ada"})
    with_null = frame_of({"email": "ada@example.com", "firstName": "Ada", "lastName": None})

    assert hashes(with_null) == hashes(without)


names = st.sampled_from(["email", "firstName", "lastName", "zip", "seats", "plan", "userGroup", "mailingLists.news"])
values = st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20))


@settings(max_examples=60, deadline=None)
@given(row=st.dictionaries(names, values, min_size=1), order=st.randoms(use_true_random=False))
def test_property_hash_does_not_depend_on_column_order(row: dict[str, str | None], order: object) -> None:
    frame = frame_of(row)
    columns = list(frame.columns)
    order.shuffle(columns)  # type: ignore[attr-defined]

    assert hashes(frame.select(columns)) == hashes(frame)


def test_the_hash_of_thousands_of_fields_is_one_flat_expression() -> None:
    # ``a ^ b ^ c ...`` nests one level per field, and polars' optimiser costs quadratic time and
    # memory in that depth (4,000 columns: minutes and 6 GB). The fold over them all is one level.
    def depth(expr: pl.Expr) -> int:
        deepest = level = 0
        for char in str(expr):
            level += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
            deepest = max(deepest, level)
        return deepest

    def names(count: int) -> list[str]:
        return [f"c{n}" for n in range(count)]

    assert depth(fingerprint(names(2000), {})) == depth(fingerprint(names(2), {}))
