"""The reader: CSV dialects and encodings, gzip, JSONL values and kinds, and every whole-file error.

The sections follow the modules: read.py (opening, decoding, the file's kind), csv_reader.py, jsonl_reader.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source import csv_reader, jsonl_reader, read
from bulksync.source.batch import Source
from bulksync.source.csv_reader import sniff_delimiter
from bulksync.source.read import read_source


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def rows(source: Source) -> list[dict[str, Any]]:
    return source.frame.to_dicts()


def input_error(path: Path, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        read_source(path, **kwargs)
    return str(info.value)


# -- opening, decoding and the file's kind (read.py) ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [("contacts.txt", "'.txt'"), ("contacts.xlsx.gz", "'.xlsx'"), ("contacts", "'(no extension)'")],
)
def test_unknown_extension_is_an_input_error(tmp_path: Path, name: str, shown: str) -> None:
    path = write(tmp_path, name, "email\nada@example.com\n")

    assert input_error(path) == (
        f"{path}: unknown source format {shown}; name the file .csv, .tsv, .jsonl, .ndjson (optionally .gz) "
        "or .parquet, or pass --format"
    )


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    assert input_error(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file; check the SOURCE path"
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert input_error(folder) == f"{folder}: is a directory; SOURCE must be a .csv or .jsonl file"


def test_tsv_extension_means_tab_even_with_commas_in_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "people.tsv", "email\tlast, first\nada@example.com\tLovelace, Ada\n")

    source = read_source(path)

    assert source.columns == ["email", "last, first"]
    assert rows(source)[0]["last, first"] == "Lovelace, Ada"


def test_gzipped_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "contacts.csv.gz", gzip.compress(b"email,name\nada@example.com,Ada\n"))

    source = read_source(path)

    assert rows(source) == [{ROW: 1, "email": "ada@example.com", "name": "Ada"}]


def test_gzipped_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "contacts.JSONL.GZ", gzip.compress(b'{"email": "ada@example.com", "seats": 4}\n'))

    source = read_source(path)

    assert rows(source) == [{ROW: 1, "email": "ada@example.com", "seats": "4"}]
    assert source.kinds == {"email": "string", "seats": "number"}


def test_a_truncated_gzip_file_is_an_input_error(tmp_path: Path) -> None:
    data = gzip.compress(b"email,name\n" + b"ada@example.com,Ada\n" * 1000)
    path = write(tmp_path, "cut.csv.gz", data[: len(data) // 2])

    message = input_error(path)

    assert message.startswith(f"{path}: cannot be read (")
    assert message.endswith("); check the file is complete")


def test_utf8_bom_is_dropped_from_the_first_column_name(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbfemail,firstName\nada@example.com,Zo\xc3\xab\n")

    source = read_source(path)

    assert source.columns == ["email", "firstName"]
    assert rows(source) == [{ROW: 1, "email": "ada@example.com", "firstName": "Zoë"}]


def test_crlf_line_ends_leave_no_carriage_return_in_values(tmp_path: Path) -> None:
    path = write(tmp_path, "crlf.csv", b"email,name\r\nada@example.com,Ada\r\ngrace@example.com,Grace\r\n")

    assert rows(read_source(path)) == [
        {ROW: 1, "email": "ada@example.com", "name": "Ada"},
        {ROW: 2, "email": "grace@example.com", "name": "Grace"},
    ]


def test_old_mac_cr_only_line_ends(tmp_path: Path) -> None:
    path = write(tmp_path, "mac.csv", b"email,name\rada@example.com,Ada\rgrace@example.com,Grace")

    source = read_source(path)

    assert source.columns == ["email", "name"]
    assert rows(source) == [
        {ROW: 1, "email": "ada@example.com", "name": "Ada"},
        {ROW: 2, "email": "grace@example.com", "name": "Grace"},
    ]


def test_non_utf8_byte_names_its_line_and_suggests_an_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", b"email,name\nada@example.com,Ada\njose@example.com,Jos\xe9\n")

    assert input_error(path) == (
        f"{path}:3: byte 0xe9 is not valid utf-8; "
        "pass the file's encoding, e.g. --encoding latin-1 or --encoding cp1252"
    )


def test_the_same_file_reads_fine_as_latin_1(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", b"email,name\nada@example.com,Ada\njose@example.com,Jos\xe9\n")

    assert rows(read_source(path, encoding="latin-1")) == [
        {ROW: 1, "email": "ada@example.com", "name": "Ada"},
        {ROW: 2, "email": "jose@example.com", "name": "José"},
    ]


def test_unknown_encoding_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "email\nada@example.com\n")

    assert input_error(path, encoding="klingon") == (
        "unknown --encoding 'klingon'; use a Python codec name such as latin-1"
    )


def test_a_bad_byte_deep_in_a_batched_file_names_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(f"user{n}@example.com,x\n".encode() for n in range(1, 100))
    path = write(tmp_path, "late.csv", b"email,name\n" + body + b"jose@example.com,Jos\xe9\n")
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 300)
    monkeypatch.setattr(read, "BLOCK_BYTES", 64)

    assert input_error(path).startswith(f"{path}:101: byte 0xe9 is not valid utf-8;")
    assert input_error(path, encoding="ascii").startswith(f"{path}:101: byte 0xe9 is not valid ascii;")


def test_a_sequence_cut_off_by_the_end_of_the_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sjis.csv", b"email,name\nada@example.com,Ada\nbo@example.com," + b"\x82")

    assert input_error(path, encoding="shift_jis").startswith(f"{path}:3: byte 0x82 is not valid shift_jis;")


def test_a_bad_byte_after_a_carried_carriage_return_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old Mac line ends, one byte per block: the \r ending a block is still a line break.
    path = write(tmp_path, "mac.csv", b"email,name\rada@example.com,Ada\r\x81x@example.com,B\r")
    monkeypatch.setattr(read, "BLOCK_BYTES", 1)

    assert input_error(path, encoding="cp1252").startswith(f"{path}:3: byte 0x81 is not valid cp1252;")


# -- CSV (csv_reader.py) -------------------------------------------------------------------------------


def test_csv_rows_stay_text_with_their_record_number(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "email,zip,seats\nada@example.com,02134,4\ngrace@example.com,,10\n")

    source = read_source(path)

    assert source.path == path
    assert source.columns == ["email", "zip", "seats"]
    assert source.frame.schema == pl.Schema({ROW: pl.UInt32, "email": pl.String, "zip": pl.String, "seats": pl.String})
    assert rows(source) == [
        {ROW: 1, "email": "ada@example.com", "zip": "02134", "seats": "4"},
        {ROW: 2, "email": "grace@example.com", "zip": None, "seats": "10"},
    ]
    assert source.kinds == {"email": "string", "zip": "string", "seats": "string"}
    assert source.malformed == []


def test_quoted_commas_quotes_and_newlines_stay_in_one_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "quoted.csv",
        'email,note,name\nada@example.com,"Hello, world\nsecond line",Ada\ngrace@example.com,"say ""hi""",Grace\n',
    )

    assert rows(read_source(path)) == [
        {ROW: 1, "email": "ada@example.com", "note": "Hello, world\nsecond line", "name": "Ada"},
        {ROW: 2, "email": "grace@example.com", "note": 'say "hi"', "name": "Grace"},
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("email,firstName,lastName", ","),
        ("email;firstName;lastName", ";"),
        ("email\tfirstName\tlastName", "\t"),
        ('"last, first";email;zip', ";"),
        ('"a;b;c",email', ","),
        ("email", ","),
        ("", ","),
        ("email;name,zip;x", ";"),
    ],
    ids=["comma", "semicolon", "tab", "quoted-comma", "quoted-semicolons", "single-column", "empty", "majority"],
)
def test_sniff_delimiter(header: str, expected: str) -> None:
    assert sniff_delimiter(header) == expected


def test_semicolon_file_keeps_commas_inside_values(tmp_path: Path) -> None:
    path = write(tmp_path, "semi.csv", "email;lastName;city\nada@example.com;Lovelace, Countess;London\n")

    source = read_source(path)

    assert source.columns == ["email", "lastName", "city"]
    assert rows(source) == [{ROW: 1, "email": "ada@example.com", "lastName": "Lovelace, Countess", "city": "London"}]


def test_tab_separated_csv_is_sniffed(tmp_path: Path) -> None:
    path = write(tmp_path, "tabs.csv", "email\tname\nada@example.com\tAda, Countess\n")

    assert rows(read_source(path)) == [{ROW: 1, "email": "ada@example.com", "name": "Ada, Countess"}]


def test_explicit_delimiter_wins_over_sniffing(tmp_path: Path) -> None:
    path = write(tmp_path, "pipe.csv", "email|name\nada@example.com|Ada\n")

    assert rows(read_source(path, delimiter="|")) == [{ROW: 1, "email": "ada@example.com", "name": "Ada"}]


def test_header_only_gives_no_rows_but_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", "email,firstName\n")

    source = read_source(path)

    assert source.columns == ["email", "firstName"]
    assert source.frame.height == 0


@pytest.mark.parametrize(
    "content", [b"", b"\n\n", b"  \r\n", b"\xef\xbb\xbf"], ids=["empty", "newlines", "blank", "bom"]
)
def test_empty_file_is_an_input_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "empty.csv", content)

    assert input_error(path) == f"{path}: the file is empty; expected a header line such as 'email,firstName'"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("email,name,email", "column 'email' appears twice in the header; rename or drop one"),
        ("email, name,name ", "column 'name' appears twice in the header; rename or drop one"),
        ("email,,name", "the header has an empty column name; name every column"),
        ("email,__row", "column name '__row' is reserved (starts with __); rename it"),
    ],
    ids=["duplicate", "duplicate-after-trim", "empty-name", "reserved"],
)
def test_bad_header_is_an_input_error(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path, "bad.csv", f"{header}\nada@example.com,a,b\n")

    assert input_error(path) == f"{path}:1: {message}"


@pytest.mark.parametrize("header", ['email,"first\nname"\n', '"first\nname",email\n', '\nemail,"name\n'])
def test_a_header_with_an_unclosed_quote_is_refused(tmp_path: Path, header: str) -> None:
    # A column name cannot span lines: the header is read as one line, whatever follows.
    path = write(tmp_path, "h.csv", header + "ada@example.com,Ada\n")
    line = 2 if header.startswith("\n") else 1

    assert input_error(path) == f"{path}:{line}: the header has an unclosed quote; a column name cannot span lines"


def test_header_errors_name_the_header_line_after_blank_lines(tmp_path: Path) -> None:
    duplicated = write(tmp_path, "dup.csv", "\n\nemail,email\na@x.io,b@x.io\n")
    bad_byte = write(tmp_path, "byte.csv", b"\n\nemail,n\xe9\na@x.io,b\n")

    assert input_error(duplicated) == f"{duplicated}:3: column 'email' appears twice in the header; rename or drop one"
    assert input_error(bad_byte).startswith(f"{bad_byte}:3: byte 0xe9 is not valid utf-8;")


def test_two_million_blank_lines_before_the_header_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "blank.csv", "\n" * 2_000_000 + "email\na@x.io\n")

    source = read_source(path)  # (skipping them was once quadratic: minutes, not a second)

    assert source.frame.rows() == [(1, "a@x.io")]
    assert source.line_of(1) == 2_000_002


def test_a_row_with_too_many_fields_is_rejected_alone_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "wide.csv", "email,name\nada@example.com,Ada,extra\ngrace@example.com,Grace\n")

    source = read_source(path)

    assert source.malformed == [(1, "line 2: 3 fields but the header has 2; check its quoting and separators")]
    assert source.frame.rows() == [(2, "grace@example.com", "Grace")]


def test_a_row_too_long_is_found_beside_a_cell_longer_than_the_csv_modules_limit(tmp_path: Path) -> None:
    huge = "x" * 140_000
    path = write(tmp_path, "big.csv", f"email,name\na@x.com,{huge}\nb@x.com,Bo,EXTRA\nc@x.com,Cy\n")

    source = read_source(path)

    assert [row for row, *_ in source.frame.rows()] == [1, 3]
    assert source.malformed == [(2, "line 3: 3 fields but the header has 2; check its quoting and separators")]


def test_an_unparseable_csv_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.csv", 'email,name\n"ada@example.com,Ada\n')

    message = input_error(path)

    assert message.startswith(f"{path}: not a readable CSV file (")
    assert message.endswith("); check quoting and column counts")


# -- CSV batches (csv_reader.py) -----------------------------------------------------------------------


AWKWARD_CSV = (
    b'\xef\xbb\xbfemail,name,note\r\n'
    b'ada@example.com,Ada,"two\r\nlines, and ""quotes"""\r\n'
    b'grace@example.com,Grace,plain\r\n'
    b'\r\n'
    b'wide@example.com,Wide,too,many\r\n'
    b'"quoted@example.com","Q","a\nb\nc"\r\n'
    b'last@example.com,L\xc3\xa9a,\r\n'
)


@pytest.mark.parametrize("batch_bytes", [1, 7, 16, 33, 60, 1 << 20])
@pytest.mark.parametrize("block_bytes", [1, 5, 64])
def test_any_batch_size_reads_the_same_rows_as_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int, block_bytes: int
) -> None:
    path = write(tmp_path, "awkward.csv", AWKWARD_CSV)
    whole = read_source(path)
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)

    batched = read_source(path)

    assert batched.frame.rows() == whole.frame.rows() == [
        (1, "ada@example.com", "Ada", 'two\nlines, and "quotes"'),
        (2, "grace@example.com", "Grace", "plain"),
        (3, None, None, None),  # a blank line is a row without values (normalise rejects it)
        (5, "quoted@example.com", "Q", "a\nb\nc"),
        (6, "last@example.com", "Léa", None),
    ]
    assert batched.malformed == whole.malformed == [
        (4, "line 6: 4 fields but the header has 3; check its quoting and separators")
    ]


def test_batches_number_rows_and_lines_across_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [f"user{n}@example.com,{n}" for n in range(1, 200)]
    lines[149] += ",extra"
    path = write(tmp_path, "long.csv", "email,n\n" + "\n".join(lines) + "\n")
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 500)
    monkeypatch.setattr(read, "BLOCK_BYTES", 100)

    batches = list(read.open_source(path).batches)

    assert len(batches) > 5
    assert [row for batch in batches for row in batch.frame[ROW]] == [n for n in range(1, 200) if n != 150]
    assert [m for batch in batches for m in batch.malformed] == [
        (150, "line 151: 3 fields but the header has 2; check its quoting and separators")
    ]


def test_blank_lines_before_the_header_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "blank.csv", "\n  \nemail,name\nada@example.com,Ada\nbo@example.com,Bo,extra\n")
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 10)
    monkeypatch.setattr(read, "BLOCK_BYTES", 3)

    source = read_source(path)

    assert source.columns == ["email", "name"]
    assert source.frame.rows() == [(1, "ada@example.com", "Ada")]
    assert source.malformed == [(2, "line 5: 3 fields but the header has 2; check its quoting and separators")]
    assert source.line_of(1) == 4


@pytest.mark.parametrize(("batch_bytes", "block_bytes"), [(1, 1), (16, 8), (1 << 20, 8)])
def test_an_extra_field_is_malformed_even_if_empty_and_on_the_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int, block_bytes: int
) -> None:
    # "y@x.io,,Y," is a shifted row: its trailing separator must not make it fit. Polars alone would
    # forgive that on a last line without a line break ("z@x.io,Z,"): the same rule holds there too,
    # wherever the batches are cut.
    path = write(tmp_path, "t.csv", "email,name\ny@x.io,,Y,\nok@x.io,Ok\nz@x.io,Z,")
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)

    source = read_source(path)

    assert source.frame.rows() == [(2, "ok@x.io", "Ok")]
    assert source.malformed == [
        (1, "line 2: 4 fields but the header has 2; check its quoting and separators"),
        (3, "line 4: 3 fields but the header has 2; check its quoting and separators"),
    ]


# -- JSONL (jsonl_reader.py) ---------------------------------------------------------------------------


def test_jsonl_values_become_canonical_text_with_their_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "typed.ndjson",
        '{"email": "ada@example.com", "seats": 4, "vip": true, "score": 1.5, "tags": ["b", "a"], '
        '"meta": {"z": 1, "a": [1, 2]}, "gone": null, "zip": "02134"}\n'
        '{"email": "grace@example.com", "seats": 12, "vip": false, "score": -2e-3}\n',
    )

    source = read_source(path)

    assert rows(source) == [
        {
            ROW: 1, "email": "ada@example.com", "seats": "4", "vip": "true", "score": "1.5",
            "tags": '["b","a"]', "meta": '{"a":[1,2],"z":1}', "gone": None, "zip": "02134",
        },
        {
            ROW: 2, "email": "grace@example.com", "seats": "12", "vip": "false", "score": "-0.002",
            "tags": None, "meta": None, "gone": None, "zip": None,
        },
    ]
    assert source.kinds == {
        "email": "string", "seats": "number", "vip": "boolean", "score": "number",
        "tags": "json", "meta": "json", "zip": "string",
    }
    assert all(dtype == pl.String for name, dtype in source.frame.schema.items() if name != ROW)


def test_a_column_with_mixed_kinds_is_string(tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.jsonl", '{"email": "a@x.io", "zip": 2134}\n{"email": "b@x.io", "zip": "02134"}\n')

    source = read_source(path)

    assert source.kinds["zip"] == "string"
    assert source.frame["zip"].to_list() == ["2134", "02134"]


def test_malformed_and_non_object_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.jsonl",
        '{"email": "ada@example.com"}\n'
        "\n"
        '{"email": "grace@example.com" "zip": 1}\n'
        "[1, 2]\n"
        '"just text"\n'
        "42\n"
        '{"email": "alan@example.com"}\n',
    )

    source = read_source(path)

    assert rows(source) == [{ROW: 1, "email": "ada@example.com"}, {ROW: 7, "email": "alan@example.com"}]
    assert source.malformed == [
        (3, "malformed JSON at column 31: Expecting ',' delimiter"),
        (4, "line is JSON list, not an object"),
        (5, "line is JSON str, not an object"),
        (6, "line is JSON int, not an object"),
    ]


def test_jsonl_with_crlf_line_ends(tmp_path: Path) -> None:
    path = write(tmp_path, "crlf.jsonl", b'{"email": "ada@example.com"}\r\n{"email": "grace@example.com"}\r\n')

    source = read_source(path)

    assert rows(source) == [{ROW: 1, "email": "ada@example.com"}, {ROW: 2, "email": "grace@example.com"}]
    assert source.malformed == []


def test_reserved_jsonl_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "r.jsonl", '{"email": "ada@example.com", "__row": 99}\n')

    source = read_source(path)

    assert source.malformed == [(1, "key '__row' is reserved (starts with __); rename it")]


def test_empty_jsonl_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.jsonl", "\n\n")

    assert input_error(path) == (
        f'{path}: the file is empty; expected one JSON object per line, such as {{"email": ...}}'
    )


def test_jsonl_columns_first_seen_in_later_chunks_are_padded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl_reader, "JSONL_CHUNK_LINES", 2)
    path = write(
        tmp_path,
        "chunks.jsonl",
        '{"email": "a@x.io", "early": "e"}\n{"email": "b@x.io"}\n{"email": "c@x.io"}\n'
        '{"email": "d@x.io", "late": 7}\n{"email": "e@x.io"}\n',
    )

    source = read_source(path)

    assert rows(source) == [
        {ROW: 1, "email": "a@x.io", "early": "e", "late": None},
        {ROW: 2, "email": "b@x.io", "early": None, "late": None},
        {ROW: 3, "email": "c@x.io", "early": None, "late": None},
        {ROW: 4, "email": "d@x.io", "early": None, "late": "7"},
        {ROW: 5, "email": "e@x.io", "early": None, "late": None},
    ]
    assert source.kinds == {"email": "string", "early": "string", "late": "number"}
