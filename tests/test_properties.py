"""Property tests: any bytes in -> rows or one clear rejection out, never a traceback.

The reader and the normaliser are fed arbitrary bytes (and bytes shaped like CSV and JSONL, which
reach deeper) and must either return frames or raise ``InputError`` with one line naming the file.
On success, every record is accounted for exactly once, email keys are trimmed and lowercased, and
a row's content hash does not depend on the order of the columns in the file.
"""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bulksync.cli import main
from bulksync.columns import HASH, KEY, ROW
from bulksync.config import KeyField
from bulksync.errors import InputError
from bulksync.plan.fingerprint import with_fingerprint
from bulksync.plan.normalise import Contacts, normalise
from bulksync.source.batch import Source
from bulksync.source.read import read_source

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------------------

# Header names that hit every branch of the column mapping: standard fields in odd case and
# padding, read-only and reserved names, mailing lists both ways, blanks and look-alikes.
NAMES = [
    "email", "Email", " EMAIL ", "firstName", "lastName", "userId", "subscribed", "userGroup", "source",
    "mailingLists", "mailingLists.news", "mailingLists.", "id", "notes", "__row", "", "plan", "zip", "a b",
    'say "hi"', "x,y", "line\nbreak", "é", "score {2024}", "{}", "first\x00Name", "tab\there",
]
# Cell text rich in what breaks parsers: separators, quotes, line ends, NUL and other controls, BOMs.
CELL_ALPHABET = st.sampled_from(
    [*',;\t"\r\n\x00\x07\x1b \xa0@.-_aAzZ09', "\ufeff", "é", "Σ", "İ", "\u2028", "{", "}", ":", "true", "yes"]
)
cells = st.one_of(
    st.sampled_from(["", " ", "ada@example.com", "  Ada@Example.COM ", "GRACE@EXAMPLE.COM", "not-an-email",
                     "true", "no", "maybe", '{"news": true}', '{"news": 3}', "[1]", "x" * 499]),
    st.lists(CELL_ALPHABET, max_size=12).map("".join),
)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def csv_like(draw: st.DrawFn) -> bytes:
    """Text shaped like a CSV file: a header, ragged rows, any separator and line end, maybe a BOM."""
    separator = draw(st.sampled_from([",", ";", "\t"]))
    end = draw(line_ends)
    header = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5))
    width = len(header)
    rows = draw(st.lists(st.lists(cells, min_size=max(0, width - 1), max_size=width + 1), max_size=6))
    quote = draw(st.booleans())

    def render(values: list[str]) -> str:
        if quote:
            return separator.join('"' + v.replace('"', '""') + '"' for v in values)
        return separator.join(values)

    text = end.join(render(r) for r in [header, *rows]) + draw(st.sampled_from(["", end]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    data = bom + text.encode("utf-8")
    if draw(st.booleans()):  # sprinkle a few raw bytes (invalid UTF-8 among them)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at:]
    return data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def jsonl_like(draw: st.DrawFn) -> bytes:
    """Lines that are objects (mostly), other JSON, broken JSON or junk, with any line end."""
    end = draw(st.sampled_from(["\n", "\r\n"]))
    line = st.one_of(
        st.dictionaries(st.sampled_from(NAMES), st.one_of(cells, json_values), max_size=5).map(json.dumps),
        json_values.map(json.dumps),
        st.dictionaries(st.sampled_from(NAMES), cells, max_size=4).map(lambda d: json.dumps(d)[:-1]),
        st.lists(CELL_ALPHABET, max_size=10).map("".join),
    )
    return end.join(draw(st.lists(line, max_size=6))).encode("utf-8")


any_bytes = st.one_of(st.binary(max_size=200), csv_like(), jsonl_like())


# -- helpers -------------------------------------------------------------------------------------------


@contextmanager
def written(data: bytes, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


def load(path: Path, key: KeyField = "email", encoding: str = "utf-8") -> tuple[Source, Contacts] | str:
    """``read_source`` + ``normalise``; an ``InputError`` comes back as its message, anything else raises."""
    try:
        source = read_source(path, encoding)
        return source, normalise(source, key)
    except InputError as exc:
        return str(exc)


def assert_clear_rejection(message: str, path: Path) -> None:
    """One readable line: no line breaks of any kind and no raw control characters (names are quoted)."""
    assert message.strip(), "an InputError needs a message"
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    assert not any(unicodedata.category(c) == "Cc" for c in message), f"raw control characters: {message!r}"
    assert path.name in message, f"the message does not name the file: {message!r}"


def record_numbers(source: Source) -> list[int]:
    """Every record the reader saw: parsed rows plus malformed JSONL lines."""
    return sorted([*source.frame[ROW].to_list(), *(line for line, _ in source.malformed)])


def check_outcome(outcome: tuple[Source, Contacts] | str, path: Path, key: KeyField) -> None:
    if isinstance(outcome, str):
        assert_clear_rejection(outcome, path)
        return
    source, contacts = outcome
    valid_rows = contacts.frame[ROW].to_list()
    rejected_rows = contacts.rejects[ROW].to_list()
    assert sorted(valid_rows + rejected_rows) == record_numbers(source), "a record was lost or counted twice"
    keys = contacts.frame[KEY].to_list()
    assert len(keys) == len(set(keys)), "one contact kept twice"
    assert None not in keys
    for email in contacts.frame["email"].to_list():
        assert email == email.strip().lower(), f"email {email!r} is not trimmed and lowercased"
    if key == "email":
        assert keys == contacts.frame["email"].to_list()
    assert all(isinstance(reason, str) and reason for reason in contacts.rejects["__reason"].to_list())


# -- any bytes in: frames or one clear line out -----------------------------------------------------


# Inputs that once ended in a traceback, a Rust panic or a message that was not one line naming the file.
@example(data=b"\r\x00\n", suffix=".csv")
@example(data=b"email\r,\n", suffix=".csv")
@example(data=b'"line\nbreak"', suffix=".csv")
@example(data=b"email,first\x00Name\nada@example.com,Ada\n", suffix=".csv")
@example(data=b'{"email": "ada@example.com", "first\\u0000Name": "Ada"}\n', suffix=".jsonl")
@example(data=b"email,score {2024}\nada@example.com,7\n", suffix=".csv")
@example(data=b'email,mailingLists,mailingLists.news\nada@example.com,"{""news"": true}",yes\n', suffix=".csv")
@SETTINGS
@given(data=any_bytes, suffix=st.sampled_from([".csv", ".jsonl", ".tsv", ".ndjson"]))
def test_any_bytes_give_rows_or_a_one_line_input_error(data: bytes, suffix: str) -> None:
    with written(data, f"contacts{suffix}") as path:
        check_outcome(load(path), path, "email")


@SETTINGS
@given(data=csv_like())
def test_any_bytes_read_as_latin_1_give_rows_or_a_one_line_input_error(data: bytes) -> None:
    # Every byte decodes in latin-1, so this drives all of the CSV parser, never stopping at decoding.
    with written(data, "export.csv") as path:
        check_outcome(load(path, encoding="latin-1"), path, "email")


@SETTINGS
@given(data=st.one_of(csv_like(), jsonl_like()), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_key_user_id_gives_rows_or_a_one_line_input_error(data: bytes, suffix: str) -> None:
    with written(data, f"users{suffix}") as path:
        check_outcome(load(path, key="userId"), path, "userId")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=any_bytes, suffix=st.sampled_from([".csv", ".jsonl"]))
def test_the_cli_never_shows_a_traceback(data: bytes, suffix: str) -> None:
    """The whole dry run (read, normalise, diff, report, preview) ends in 0 or one error line, status 2."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"hostile{suffix}"
        path.write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        status = main(
            ["sync", str(path), "--dry-run", "--state", f"{folder}/state.db", "--report", f"{folder}/report.csv",
             "--no-progress"],
            out=out, err=err,
        )
        assert not Path(folder, "state.db").exists(), "a dry run created the state file"
    if status == 0:
        assert err.getvalue() == ""
    else:
        assert status == 2
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, f"not one line: {err.getvalue()!r}"
        assert lines[0].startswith("bulksync: error: ") and path.name in lines[0], lines[0]


# -- on success: what normalise promises ----------------------------------------------------------


column_names = st.lists(
    st.sampled_from(["firstName", "lastName", "userId", "subscribed", "userGroup", "plan", "zip", "city", "seats"]),
    unique=True, max_size=5,
).map(lambda names: ["email", *names])
plain_cells = st.one_of(
    st.sampled_from(["", "ada@example.com", " Ada@Example.COM ", "grace@example.com", "bad", "yes", "0", "02134"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=12),
)


@st.composite
def table(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    names = draw(column_names)
    rows = draw(st.lists(st.lists(plain_cells, min_size=len(names), max_size=len(names)), min_size=1, max_size=6))
    return names, rows


def csv_bytes(names: list[str], rows: list[list[str]], order: list[int]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([names[i] for i in order])
    writer.writerows([[row[i] for i in order] for row in rows])
    return buffer.getvalue().encode("utf-8")


def jsonl_bytes(names: list[str], rows: list[list[str]], order: list[int]) -> bytes:
    return "".join(json.dumps({names[i]: row[i] for i in order}) + "\n" for row in rows).encode("utf-8")


def hashes_by_key(path: Path) -> dict[str, int]:
    outcome = load(path)
    assert not isinstance(outcome, str), outcome
    _, contacts = outcome
    frame = with_fingerprint(contacts.frame, contacts.fields, contacts.types)
    return dict(zip(frame[KEY].to_list(), frame[HASH].to_list(), strict=True))


@SETTINGS
@given(data=table(), seed=st.integers(0, 2**32 - 1), fmt=st.sampled_from(["csv", "jsonl"]))
def test_a_rows_hash_does_not_depend_on_column_order(
    data: tuple[list[str], list[list[str]]], seed: int, fmt: str
) -> None:
    names, rows = data
    order = list(range(len(names)))
    shuffled = order[:]
    random.Random(seed).shuffle(shuffled)
    render = csv_bytes if fmt == "csv" else jsonl_bytes
    with written(render(names, rows, order), f"a.{fmt}") as first, written(
        render(names, rows, shuffled), f"b.{fmt}"
    ) as second:
        assert hashes_by_key(first) == hashes_by_key(second)


@SETTINGS
@given(data=table())
def test_valid_rows_and_rejects_are_exactly_the_records(data: tuple[list[str], list[list[str]]]) -> None:
    names, rows = data
    with written(csv_bytes(names, rows, list(range(len(names)))), "people.csv") as path:
        outcome = load(path)
        assert not isinstance(outcome, str), outcome
        source, contacts = outcome
    assert source.frame.height == len(rows)
    assert sorted(contacts.frame[ROW].to_list() + contacts.rejects[ROW].to_list()) == list(range(1, len(rows) + 1))
    assert contacts.frame.schema[KEY] == pl.String
    expected_keys = {row[0].strip().lower() for row in rows if row[0].strip()}
    assert set(contacts.frame[KEY].to_list()) <= expected_keys
