"""Parquet sources (parquet_reader.py): every value as text, so ``02134`` stays ``02134``; a column's
Parquet type gives its kind, as a JSON value's does; read in batches; refused with one line when the
file cannot be read. And a sync of one, end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.columns import ROW
from bulksync.emulator import LoopsEmulator
from bulksync.errors import InputError
from bulksync.source import parquet_reader
from bulksync.source.read import open_source, read_source
from tests.helpers import API_KEY, by_email


def write(tmp_path: Path, frame: pl.DataFrame, name: str = "contacts.parquet") -> Path:
    path = tmp_path / name
    frame.write_parquet(path)
    return path


def input_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        read_source(path)
    return str(info.value)


def test_values_are_text_and_types_are_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, pl.DataFrame({
        "email": ["ada@example.com", "grace@example.com", None],
        "zip": ["02134", None, "00501"],
        "name": ["Zoë 😀", "Grace", "Ω"],
        "seats": pl.Series([4, None, 7], dtype=pl.Int32),
        "score": [1.5, 2.0, None],
        "vip": [True, False, None],
        "nothing": pl.Series([None, None, None], dtype=pl.Null),
    }))

    source = read_source(path)

    assert source.frame.rows() == [
        (1, "ada@example.com", "02134", "Zoë 😀", "4", "1.5", "true", None),
        (2, "grace@example.com", None, "Grace", None, "2.0", "false", None),
        (3, None, "00501", "Ω", "7", None, None, None),
    ]
    assert source.kinds == {"email": "string", "zip": "string", "name": "string", "seats": "number",
                            "score": "number", "vip": "boolean"}
    assert all(dtype == pl.String for name, dtype in source.frame.schema.items() if name != ROW)


def test_dates_times_and_nested_values(tmp_path: Path) -> None:
    path = write(tmp_path, pl.DataFrame({
        "email": ["ada@example.com"],
        "signup": [dt.date(2024, 1, 31)],
        "seen": [dt.datetime(2024, 1, 31, 12, 30)],
        "seenHere": pl.Series([dt.datetime(2024, 1, 31, 13, 30)]).dt.replace_time_zone("Europe/Paris"),
        "tags": [["b", "a"]],
        "meta": [{"z": 1, "a": "x"}],
    }))

    source = read_source(path)

    assert source.frame.rows() == [
        (1, "ada@example.com", "2024-01-31", "2024-01-31T12:30:00Z", "2024-01-31T12:30:00Z", '["b","a"]',
         '{"a":"x","z":1}'),
    ]
    assert source.kinds == {"email": "string", "signup": "date", "seen": "date", "seenHere": "date",
                            "tags": "json", "meta": "json"}


def test_a_float_that_is_not_finite_rejects_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, pl.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"],
                                         "score": [1.0, float("nan"), float("inf")]}))

    source = read_source(path)

    assert source.frame.rows() == [(1, "a@x.io", "1.0")]
    assert source.malformed == [(2, "score is not a finite number; Loops takes none like it"),
                                (3, "score is not a finite number; Loops takes none like it")]


def test_rows_are_read_in_batches_numbered_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet_reader, "BATCH_ROWS", 4)
    path = write(tmp_path, pl.DataFrame({"email": [f"u{n}@x.io" for n in range(10)]}))

    batches = list(open_source(path).batches)

    assert len(batches) >= 3
    assert [row for batch in batches for row in batch.frame[ROW]] == list(range(1, 11))
    assert max(batch.frame.height for batch in batches) <= 4


def test_an_empty_file_has_its_columns_and_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, pl.DataFrame(schema={"email": pl.String, "zip": pl.String}))

    stream = open_source(path)

    assert stream.header.columns == ["email", "zip"]
    assert [batch.frame.height for batch in stream.batches] == [0]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"email\nada@example.com\n")
    whole = write(tmp_path, pl.DataFrame({"email": [f"u{n}@x.io" for n in range(100)]}))
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    gzipped = tmp_path / "contacts.parquet.gz"
    gzipped.write_bytes(b"")

    assert input_error(junk).startswith(f"{junk}: not a readable Parquet file (")
    assert input_error(cut).endswith("); check the file is complete")
    assert input_error(tmp_path / "gone.parquet") == f"{tmp_path / 'gone.parquet'}: no such file; check the SOURCE path"
    assert input_error(folder) == f"{folder}: is a directory; SOURCE must be a .csv, .jsonl or .parquet file"
    assert input_error(gzipped) == f"{gzipped}: a Parquet file is compressed inside; give it without .gz"


@pytest.mark.parametrize(("column", "problem"), [("__row", "is reserved (starts with __)"),
                                                 ("bad\nname", "holds a control character or line break")])
def test_column_names_bulksync_cannot_take(tmp_path: Path, column: str, problem: str) -> None:
    path = write(tmp_path, pl.DataFrame({"email": ["a@x.io"], column: ["x"]}))

    assert input_error(path) == f"{path}:1: column name {column!r} {problem}; rename it"


def test_sync_of_a_parquet_export(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    write(workdir, pl.DataFrame({
        "email": ["ada@example.com", "grace@example.com"],
        "zip": ["02134", "00501"],
        "seats": [4, 12],
        "vip": [True, False],
    }), "warehouse.parquet")

    result = cli("sync", "warehouse.parquet", "--state", "state.db")

    assert result.status == 0, result.err
    ada = by_email(emulator)["ada@example.com"]
    assert (ada["zip"], ada["seats"], ada["vip"]) == ("02134", 4, True)
    answer = emulator.handle("GET", "/api/v1/contacts/properties?list=custom", {"authorization": f"Bearer {API_KEY}"},
                             b"")
    assert {p["key"]: p["type"] for p in json.loads(answer.body)} == {"zip": "string", "seats": "number",
                                                                     "vip": "boolean"}
