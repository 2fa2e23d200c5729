"""Big and strange files (records.py and its readers): where a record ends, the limit on one record,
gzip bombs read in bounded memory, and a last record cut short by an export still being written.

Memory is asserted as a structural fact, never as a time: the peak of Python allocations
(tracemalloc, which sees every bytes object the reader makes) and the size of every batch parsed.
The large inputs are made here, as gzip members compressed once and repeated (a .gz may hold many).
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bulksync.errors import InputError
from bulksync.source import csv_reader, jsonl_reader, read, records
from bulksync.source.read import open_source, read_source
from tests.helpers import SAMPLE_DATA

HOSTILE = SAMPLE_DATA / "hostile"
MB = 1 << 20
LIMIT = records.MAX_RECORD_BYTES
CUT_SHORT = "the file looks cut short (was it still being written?); export it again"


def gzip_bomb(path: Path, head: bytes, fill: bytes, megabytes: int, tail: bytes = b"") -> int:
    """Write ``head``, ``fill`` repeated over ``megabytes`` (a multiple of 16), then ``tail``, gzipped:
    16 MB of ``fill`` compressed once and written again and again. How many ``fill`` it holds."""
    unit = fill * (16 * MB // len(fill))
    member = gzip.compress(unit, compresslevel=1)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head))
        fh.write(member * (megabytes // 16))
        fh.write(gzip.compress(tail))
    return megabytes // 16 * (len(unit) // len(fill))


def peak_of(work: Callable[[], Any]) -> tuple[Any, int]:
    """What ``work`` returns (or the InputError it raises) and the peak of Python allocations meanwhile."""
    tracemalloc.start()
    try:
        try:
            outcome: Any = work()
        except InputError as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the bytes of every batch handed to the parser (its header line included)."""
    sizes: list[int] = []
    parse = csv_reader._parse_chunk

    def spy(path: Path, data: bytes, *args: Any) -> Any:
        sizes.append(len(data))
        return parse(path, data, *args)

    monkeypatch.setattr(csv_reader, "_parse_chunk", spy)
    return sizes


def drain(path: Path) -> int:
    """Read every batch of ``path`` (keeping none); how many rows they held."""
    return sum(batch.frame.height for batch in open_source(path).batches)


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as info:
        drain(path)
    return str(info.value)


def too_long(path: Path, line: int, what: str = "record", limit: str = f"{LIMIT >> 20} MB") -> str:
    return (
        f"{path}:{line}: the {what} starting on this line is longer than {limit}, the limit for one record; "
        "check it for an unclosed quote, or shorten its values"
    )


# -- where a record ends -------------------------------------------------------------------------------


def naive_ends(data: bytes, parity: int) -> list[int]:
    """Every record end (just past a line break outside quotes), one byte at a time."""
    ends, quoted = [], parity
    for index, byte in enumerate(data):
        if byte == ord('"'):
            quoted ^= 1
        elif byte == ord("\n") and not quoted:
            ends.append(index + 1)
    return ends


def test_record_ends_agree_with_a_byte_by_byte_scan() -> None:
    rng = random.Random(16)
    for _ in range(4000):
        data = bytes(rng.choice(b'a"\n,') for _ in range(rng.randint(0, 14)))
        for parity in (0, 1):
            ends = naive_ends(data, parity)
            assert records.last_end(data, parity) == (ends[-1] if ends else None), (data, parity)
            assert records.first_end(data, parity) == (ends[0] if ends else None), (data, parity)


@pytest.mark.parametrize(
    "data", [b'x""\n' * (MB // 2), b'"a"' * (MB // 2), b"\n" + b'""' * MB], ids=["doubled", "quoted", "pairs"]
)
def test_finding_a_record_end_in_megabytes_of_quotes_keeps_no_backtracking_state(data: bytes) -> None:
    # A backtracking pattern keeps a saved state per pair of quotes: 75 MB for the 2 MB of "pairs".
    def search() -> list[int | None]:
        return [find(data, parity) for find in (records.last_end, records.first_end) for parity in (0, 1)]

    _, peak = peak_of(search)

    assert peak < 3 * len(data)  # the reversed copy the backward search reads, and nothing per quote


# -- the limit on one record -------------------------------------------------------------------------


def test_a_gzip_bomb_of_one_endless_line_is_refused_having_read_a_little_of_it(tmp_path: Path) -> None:
    # 1 MB on disk, 1 GB of one line once expanded: refused after the limit, whatever the expansion.
    path = tmp_path / "bomb.csv.gz"
    gzip_bomb(path, b"email,note\nada@example.com,Ada\nbo@example.com,", b"x", 1024)

    outcome, peak = peak_of(lambda: drain(path))

    assert str(outcome) == too_long(path, 3)
    assert peak < 2 * LIMIT + 2 * read.BLOCK_BYTES  # the record so far, a block, and their copies


def test_rows_then_an_endless_line_read_in_bounded_batches_and_the_line_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, limit and blocks, so that 64 MB of rows is many batches: the peak is a few of them.
    batch, limit = MB, MB
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", batch)
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", limit)
    monkeypatch.setattr(read, "BLOCK_BYTES", MB // 4)
    path = tmp_path / "bomb.csv.gz"
    rows = gzip_bomb(path, b"email,note\n", b"user@example.com,Ada\n", 64, tail=b"x" * (2 * limit))
    sizes = batch_sizes(monkeypatch)

    outcome, peak = peak_of(lambda: drain(path))

    assert str(outcome) == too_long(path, rows + 2, limit="1 MB")
    assert len(sizes) >= 64
    assert max(sizes) <= len(b"email,note\n") + batch + limit
    assert peak < 4 * (batch + limit)


def test_a_quoted_value_of_line_breaks_longer_than_the_limit_is_refused_naming_where_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "cell.csv"
    path.write_bytes(b'email,note\nada@example.com,Ada\nbo@example.com,"' + b"x\n" * (LIMIT // 2) + b'"\nc@x.io,C\n')

    assert error_of(path) == too_long(path, 3)


def test_an_unclosed_quote_early_in_a_big_file_is_named_not_read_to_the_end(tmp_path: Path) -> None:
    row = b"user@example.com,Ada\n"
    path = tmp_path / "open.csv"
    path.write_bytes(b'email,note\nada@example.com,"oops\n' + row * ((LIMIT + MB) // len(row)))

    assert error_of(path) == too_long(path, 2)


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1 << 20])
def test_the_limit_is_exact_for_a_record_across_any_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
    at_limit = b'b@x.io,"' + b"y\n" * 27 + b'"\n'  # 64 bytes with its line break, 28 lines
    assert len(at_limit) == 64
    fits = tmp_path / "fits.csv"
    fits.write_bytes(b"email,note\na@x.io,A\n" + at_limit + b"c@x.io,C\n")
    over = tmp_path / "over.csv"
    over.write_bytes(b"email,note\na@x.io,A\n" + at_limit.replace(b"b@", b"bo@") + b"c@x.io,C\n")

    assert read_source(fits).frame.rows() == [(1, "a@x.io", "A"), (2, "b@x.io", "y\n" * 27), (3, "c@x.io", "C")]
    with pytest.raises(InputError) as info:
        read_source(over)
    assert str(info.value) == too_long(over, 3, limit="64 bytes")


def test_a_header_line_without_an_end_is_refused_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "header.csv.gz"
    gzip_bomb(path, b"\n\nemail,", b"x", 64)

    outcome, peak = peak_of(lambda: open_source(path))

    assert str(outcome) == too_long(path, 3, "header line")
    assert peak < 2 * LIMIT + 2 * read.BLOCK_BYTES


@pytest.mark.parametrize("block_bytes", [1, 7, 1 << 20])
def test_the_limit_is_exact_for_the_header_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
    header = b"email," + b",".join(b"c%d" % n for n in range(17)) + b"\n"
    assert len(header) == 64
    fits = tmp_path / "fits.csv"
    fits.write_bytes(b"\n  \n" + header + b"a@x.io\n")
    over = tmp_path / "over.csv"
    over.write_bytes(b"\n  \n" + header.replace(b"c1,", b"cc1,") + b"a@x.io\n")

    assert read_source(fits).frame.rows() == [(1, "a@x.io", *[None] * 17)]
    with pytest.raises(InputError) as info:
        read_source(over)
    assert str(info.value) == too_long(over, 3, "header line", limit="64 bytes")


def test_a_gzip_bomb_of_blank_lines_before_the_header_is_counted_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv.gz"
    gzip_bomb(path, b"", b"\n", 64, tail=b"email\nada@example.com\n")

    source, peak = peak_of(lambda: read_source(path))

    assert source.frame.rows() == [(1, "ada@example.com")]
    assert source.header_line == 64 * MB + 1
    assert peak < 4 * read.BLOCK_BYTES  # never the whole run of blank lines at once


def test_a_jsonl_line_longer_than_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    gzip_bomb(path, b'{"email": "ada@example.com"}\n{"email": "bo@x.io", "bio": "', b"x", 64, tail=b'"}\n')

    outcome, peak = peak_of(lambda: open_source(path))

    assert str(outcome) == too_long(path, 2, "line")
    assert peak < 2 * LIMIT + 2 * read.BLOCK_BYTES


@pytest.mark.parametrize("block_bytes", [1, 5, 64, 1 << 20])
def test_the_jsonl_limit_is_exact_for_a_line_across_any_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(jsonl_reader, "MAX_RECORD_BYTES", 64)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
    at_limit = b'{"email": "b@x.io", "bio": "' + b"y" * 33 + b'"}\n'
    assert len(at_limit) == 64
    fits = tmp_path / "fits.jsonl"
    fits.write_bytes(b'{"email": "a@x.io"}\n' + at_limit + b'{"email": "c@x.io"}')
    over = tmp_path / "over.jsonl"
    over.write_bytes(b'{"email": "a@x.io"}\n' + at_limit.replace(b"b@", b"bo@") + b'{"email": "c@x.io"}')

    assert read_source(fits).frame["bio"].to_list() == [None, "y" * 33, None]
    with pytest.raises(InputError) as info:
        read_source(over)
    assert str(info.value) == too_long(over, 2, "line", limit="64 bytes")


def test_a_gzip_bomb_of_blank_jsonl_lines_is_never_whole_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl.gz"
    gzip_bomb(path, b'{"email": "ada@example.com"}\n', b"\n", 64, tail=b'{"email": "bo@example.com"}\n{"email": "cut\n')

    source, peak = peak_of(lambda: read_source(path))

    assert source.frame.rows() == [(1, "ada@example.com"), (64 * MB + 2, "bo@example.com")]
    assert source.malformed == [(64 * MB + 3, "malformed JSON at column 11: Unterminated string starting at")]
    assert peak < 4 * read.BLOCK_BYTES


# -- a last record cut short ---------------------------------------------------------------------------


@pytest.fixture(params=[(1, 1), (16, 8), (1 << 20, 1 << 20)], ids=["tiny", "small", "default"])
def batching(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Batches and blocks of several sizes: the last record is cut short wherever they fall."""
    batch_bytes, block_bytes = request.param
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(read, "BLOCK_BYTES", block_bytes)
    yield


@pytest.mark.usefixtures("batching")
def test_a_last_record_without_a_line_end_and_with_fields_missing_is_rejected_as_cut_short() -> None:
    source = read_source(HOSTILE / "truncated_last_record.csv")

    assert [row for row, *_ in source.frame.rows()] == [1, 2, 3]
    assert source.malformed == [(4, f"line 5: the last record has 1 of 3 fields and no line end; {CUT_SHORT}")]


@pytest.mark.usefixtures("batching")
def test_a_last_record_ending_inside_quotes_without_a_line_end_is_rejected_as_cut_short() -> None:
    source = read_source(HOSTILE / "truncated_in_quotes.csv")

    assert source.frame.rows() == [(1, "user58@example.com", "Ada", "plain"), (2, "user59@example.com", "Grace",
                                                                               "two\nlines")]
    assert source.malformed == [
        (3, f"line 5: the last record ends inside a quoted value with no line end; {CUT_SHORT}")
    ]


@pytest.mark.usefixtures("batching")
def test_only_a_short_last_record_without_a_line_end_is_cut_short(tmp_path: Path) -> None:
    whole = tmp_path / "whole.csv"  # a complete last record needs no line end
    whole.write_text("email,firstName,lastName\na@x.io,A,Ay\nb@x.io,B,")
    short_with_end = tmp_path / "short.csv"  # a short row with its line end is only ragged
    short_with_end.write_text("email,firstName,lastName\na@x.io,A,Ay\nb@x.io\n")
    short_without_end = tmp_path / "cut.csv"
    short_without_end.write_text("email,firstName,lastName\na@x.io,A,Ay\nb@x.io,B")

    assert read_source(whole).frame.rows() == [(1, "a@x.io", "A", "Ay"), (2, "b@x.io", "B", None)]
    assert read_source(short_with_end).frame.rows() == [(1, "a@x.io", "A", "Ay"), (2, "b@x.io", None, None)]
    cut = read_source(short_without_end)
    assert cut.frame.rows() == [(1, "a@x.io", "A", "Ay")]
    assert cut.malformed == [(2, f"line 3: the last record has 2 of 3 fields and no line end; {CUT_SHORT}")]
