"""CSV in batches: the header checked once, then batches of about ``BATCH_BYTES`` cut at record boundaries.

A batch is parsed by polars with every value as text; a row longer than the header is set aside as
malformed (its line named) instead of failing the file, so a file of any size passes through a
bounded amount of memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source.batch import Source, SourceStream
from bulksync.source.text import utf8_text

_MAX_CELL = (1 << 31) - 1
BATCH_BYTES = 16 << 20  # parse about this much CSV per batch (~200,000 rows): measured faster than 8 or 48 MB


def sniff_delimiter(header_line: str) -> str:
    """Pick the separator of a header line: the most frequent of , ; and tab outside quotes."""
    counts = {sep: 0 for sep in (",", ";", "\t")}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def open_csv(path: Path, blocks: Iterator[bytes], delimiter: str | None) -> SourceStream:
    """Read and check the header from UTF-8 ``blocks``; the records are parsed as the batches are consumed.

    ``delimiter`` None: sniffed from the header line.
    """
    head = b""
    start = 0  # past the blank lines before the header (polars would skip them too)
    blank = 0
    for block in chain(blocks, [b""]):
        head += block
        while (line_end := head.find(b"\n", start)) >= 0 and not head[start:line_end].strip():
            start, blank = line_end + 1, blank + 1
        if line_end >= 0 or not block:
            break
    head = head[start:]
    if not head.strip():
        raise InputError(f"{path}: the file is empty; expected a header line such as 'email,firstName'")
    line = blank + 1
    header_bytes, _, rest = head.partition(b"\n")
    if header_bytes.count(b'"') % 2:  # a quoted column name would go on to the next line
        raise InputError(f"{path}:{line}: the header has an unclosed quote; a column name cannot span lines")
    header_line = utf8_text(path, header_bytes, blank)
    separator = delimiter or sniff_delimiter(header_line)
    width = _check_header(f"{path}:{line}", header_line, separator)
    try:
        columns = _polars_csv(header_bytes + b"\n", separator, ragged=False).columns
    except pl.exceptions.PolarsError as exc:
        raise _unreadable(path, exc) from None
    garbled = next((name for name in columns if not name.isprintable()), None)
    if garbled is not None:
        raise InputError(f"{path}:{line}: column name {garbled!r} holds a control character or line break; rename it")
    header = Source(
        path=path, frame=pl.DataFrame(schema={ROW: pl.UInt32, **{c: pl.String for c in columns}}),
        kinds={c: "string" for c in columns}, header_lines=line, may_hold_nul=False,
    )
    batches = _csv_batches(header, header_bytes + b"\n", chain([rest], blocks), separator=separator, width=width)
    return SourceStream(header, batches)


def _csv_batches(
    header: Source, header_bytes: bytes, blocks: Iterable[bytes], *, separator: str, width: int
) -> Iterator[Source]:
    records = 0  # records in earlier batches: the next batch's ROW numbers follow them
    lines = header.header_lines  # source lines before the batch (counted in the reader's thread)
    for chunk in _record_chunks(blocks, header_bytes):
        batch, count = _csv_batch(header, chunk, separator=separator, width=width, records_before=records,
                                  lines_before=lines)
        yield batch
        records += count
        lines += chunk.count(b"\n", len(header_bytes))


def _csv_batch(
    header: Source, data: bytes, *, separator: str, width: int, records_before: int, lines_before: int
) -> tuple[Source, int]:
    """One batch (``data`` starts with the header line) and how many records it held."""
    frame, malformed = _parse_chunk(header.path, data, separator, width, lines_before)
    count = frame.height
    frame = frame.with_row_index(ROW, offset=records_before + 1)
    malformed = [(records_before + row, reason) for row, reason in malformed]
    if malformed:
        frame = frame.filter(~pl.col(ROW).is_in([row for row, _ in malformed]))
    source = Source(
        path=header.path, frame=frame, kinds=dict(header.kinds), malformed=malformed,
        header_lines=header.header_lines, may_hold_nul=b"\x00" in data,
    )
    return source, count


def _record_chunks(blocks: Iterable[bytes], header: bytes) -> Iterator[bytes]:
    """The records re-cut into batches of about ``BATCH_BYTES``, each starting with ``header`` and
    ending at a record boundary: a line break with an even number of quote characters before it.

    Always yields at least one batch (the header alone, for a file without records).
    """
    parts = [header]
    size = 0
    quotes = 0  # quote characters in parts[1:]
    yielded = False
    for block in blocks:
        end = _record_end(block, quotes % 2) if size + len(block) >= BATCH_BYTES else None
        if end is None:
            parts.append(block)
            size += len(block)
            quotes += block.count(b'"')
            continue
        parts.append(block[:end])
        yield b"".join(parts)
        yielded = True
        rest = block[end:]
        parts, size, quotes = [header, rest], len(rest), rest.count(b'"')
    if size or not yielded:
        # A last line without a line break: polars would forgive it an extra (empty) field, which
        # any other line is rejected for; with the break, every line meets the same rule.
        yield b"".join(parts) if not size or parts[-1].endswith(b"\n") else b"".join([*parts, b"\n"])


def _record_end(block: bytes, parity: int) -> int | None:
    """Just past the last line break in ``block`` outside quotes, given the parity of the quotes before it."""
    end = block.rfind(b"\n")
    quotes = parity + block.count(b'"', 0, end) if end >= 0 else 0
    while end >= 0 and quotes % 2:
        previous = block.rfind(b"\n", 0, end)
        quotes -= block.count(b'"', max(previous, 0), end)
        end = previous
    return None if end < 0 else end + 1


def _parse_chunk(
    path: Path, data: bytes, separator: str, width: int, lines_before: int
) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """A header line plus records, parsed; records longer than the header become (number, reason).

    ``lines_before`` counts the source lines before the batch's first record (the header's included).
    """
    malformed: list[tuple[int, str]] = []
    try:
        frame = _polars_csv(data, separator, ragged=False)
    except pl.exceptions.PolarsError as exc:
        # Polars refuses a file with rows longer than the header (or bad UTF-8, which utf8_text names):
        # find the long rows, reject them, read the rest.
        before = lines_before - 1  # the batch's own copy of the header is its first line
        malformed = _ragged_records(utf8_text(path, data, before), separator, width, before)
        if not malformed:
            raise _unreadable(path, exc) from None
        try:
            frame = _polars_csv(data, separator, ragged=True)
        except pl.exceptions.PolarsError as again:
            raise _unreadable(path, again) from None
    return frame, malformed


def _unreadable(path: Path, exc: Exception) -> InputError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"{path}: not a readable CSV file ({first}); check quoting and column counts")


def _polars_csv(data: bytes, separator: str, ragged: bool) -> pl.DataFrame:
    return pl.read_csv(
        data, infer_schema=False, separator=separator, quote_char='"', raise_if_empty=False,
        truncate_ragged_lines=ragged,
    )


def _ragged_records(text: str, separator: str, width: int, lines_before: int = 0) -> list[tuple[int, str]]:
    """Records with more fields than the header, found by the csv module when polars refuses the file.

    ``text`` starts with the header line; ``lines_before`` is how many source lines precede that copy of it.
    """
    limit = csv.field_size_limit(_MAX_CELL)  # the module's default (131,072) is less than a cell may hold
    try:
        records = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        next(records, None)
        return [
            (number, f"line {lines_before + records.line_num}: {len(fields)} fields but the header has {width}; "
                     "check its quoting and separators")
            for number, fields in enumerate(records, start=1)
            if len(fields) > width
        ]
    except csv.Error:
        return []
    finally:
        csv.field_size_limit(limit)


def _check_header(where: str, header_line: str, separator: str) -> int:
    """The header's width, after checking its names; ``where`` is ``file:line`` for messages."""
    try:
        names = next(csv.reader([header_line.rstrip("\r")], delimiter=separator), [])
    except csv.Error as exc:
        raise InputError(f"{where}: the header line is not valid CSV ({exc}); check the header line") from None
    seen: set[str] = set()
    for name in names:
        clean = name.strip()
        if not clean:
            raise InputError(f"{where}: the header has an empty column name; name every column")
        if clean.startswith("__"):
            raise InputError(f"{where}: column name {clean!r} is reserved (starts with __); rename it")
        if clean in seen:
            raise InputError(f"{where}: column {clean!r} appears twice in the header; rename or drop one")
        seen.add(clean)
    return len(names)
