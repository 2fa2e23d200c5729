"""CSV in batches: the header checked once, then batches of about ``BATCH_BYTES`` cut at record boundaries.

A batch is parsed by polars with every value as text; a row longer than the header is set aside as
malformed (its line named) instead of failing the file, so a file of any size passes through a
bounded amount of memory (no record may pass ``records.MAX_RECORD_BYTES``). A last record without a
line end and with fewer fields than the header is rejected as cut short: the export was still being
written.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from itertools import chain

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source import records
from bulksync.source.batch import Source, SourceStream, check_column_names
from bulksync.source.location import SourcePath
from bulksync.source.text import utf8_text

_MAX_CELL = (1 << 31) - 1
_BLANKS = re.compile(rb"[ \t\n\r\x0b\x0c]*")  # what bytes.strip() takes away: blank lines before the header
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


def open_csv(
    path: SourcePath, blocks: Iterator[bytes], delimiter: str | None, *, streamed: bool = False
) -> SourceStream:
    """Read and check the header from UTF-8 ``blocks``; the records are parsed as the batches are consumed.

    ``delimiter`` None: sniffed from the header line. ``streamed`` (standard input, which cannot be
    looked at again): a last record cut short fails the whole source instead of being rejected.
    """
    head, blank = _header_block(path, blocks)
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
    batches = _csv_batches(header, header_bytes + b"\n", chain([rest], blocks), separator=separator, width=width,
                           streamed=streamed)
    return SourceStream(header, batches)


def _header_block(path: SourcePath, blocks: Iterator[bytes]) -> tuple[bytes, int]:
    """The file from its header line on, as far as read (at least the whole header line, or all of a
    short file), and how many blank lines came before the header (polars would skip them too)."""
    head = b""  # before the header line is found: a trailing line of blanks only, then the block
    parts: list[bytes] = []  # from the start of the header line on
    size = 0
    blank = 0
    for block in chain(blocks, [b""]):
        if parts:  # the header line has begun: read on to its end
            if not block:
                break
            parts.append(block)
            size += len(block)
            if b"\n" in block:
                break
        else:
            head += block
            text = _blank_prefix(head)
            if text == len(head) and block:  # only blank lines so far: count them, keep nothing
                keep = head.rfind(b"\n") + 1
                blank += head.count(b"\n", 0, keep)
                head = head[keep:]
                size = len(head)
            else:
                start = head.rfind(b"\n", 0, text) + 1
                blank += head.count(b"\n", 0, start)
                parts, size = [head[start:]], len(head) - start
                if b"\n" in parts[0] or not block:
                    break
        if size > records.MAX_RECORD_BYTES:  # never a header: do not read the whole file looking for its end
            raise records.too_long(path, blank + 1, "header line")
    head = b"".join(parts)
    end = head.find(b"\n")
    if (end + 1 if end >= 0 else len(head)) > records.MAX_RECORD_BYTES:
        raise records.too_long(path, blank + 1, "header line")
    return head, blank


def _blank_prefix(data: bytes) -> int:
    """How many bytes ``data`` starts with that ``bytes.strip()`` would take away (found without a copy)."""
    match = _BLANKS.match(data)
    return match.end() if match else 0


def _csv_batches(
    header: Source, header_bytes: bytes, blocks: Iterable[bytes], *, separator: str, width: int, streamed: bool
) -> Iterator[Source]:
    records_before = 0  # records in earlier batches: the next batch's ROW numbers follow them
    for chunk in records.record_chunks(blocks, header_bytes, path=header.path, lines_before=header.header_lines,
                                       batch_bytes=BATCH_BYTES):
        data, cut_short = chunk.data, None
        if chunk.unfinished is not None:
            cut_short = _cut_short(header.path, chunk.unfinished, separator, width)
            if cut_short is not None:
                if streamed:
                    raise records.cut_short(header.path, cut_short)
                cut_short = f"{cut_short}; {records.CUT_SHORT_FILE}"
            else:
                # A last line without a line break: polars would forgive it an extra (empty) field, which
                # any other line is rejected for; with the break, every line meets the same rule.
                data += chunk.unfinished.data + b"\n"
        batch, count = _csv_batch(header, data, separator=separator, width=width, records_before=records_before,
                                  lines_before=chunk.lines_before, cut_short=cut_short)
        yield batch
        records_before += count


def _cut_short(path: SourcePath, record: records.Unfinished, separator: str, width: int) -> str | None:
    """Why the file's last record, which has no line end, looks cut short (an export still being
    written), or None: it ends inside quotes, or has fewer fields than the header."""
    if record.open_quote:
        return f"line {record.line}: the last record ends inside a quoted value with no line end"
    text = utf8_text(path, record.data, record.line - 1)
    fields = _fields(text, separator)
    if len(fields) < width:
        return f"line {record.line}: the last record has {len(fields)} of {width} fields and no line end"
    return None


def _csv_batch(
    header: Source, data: bytes, *, separator: str, width: int, records_before: int, lines_before: int,
    cut_short: str | None = None,
) -> tuple[Source, int]:
    """One batch (``data`` starts with the header line) and how many records it held; ``cut_short``:
    why the file's last record, left out of ``data``, is rejected."""
    frame, malformed = _parse_chunk(header.path, data, separator, width, lines_before)
    count = frame.height
    frame = frame.with_row_index(ROW, offset=records_before + 1)
    malformed = [(records_before + row, reason) for row, reason in malformed]
    if malformed:
        frame = frame.filter(~pl.col(ROW).is_in([row for row, _ in malformed]))
    if cut_short is not None:  # a record of its own, after the parsed ones
        count += 1
        malformed.append((records_before + count, cut_short))
    source = Source(
        path=header.path, frame=frame, kinds=dict(header.kinds), malformed=malformed,
        header_lines=header.header_lines, may_hold_nul=b"\x00" in data,
    )
    return source, count


def _parse_chunk(
    path: SourcePath, data: bytes, separator: str, width: int, lines_before: int
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


def _unreadable(path: SourcePath, exc: Exception) -> InputError:
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
        parsed = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        next(parsed, None)
        return [
            (number, f"line {lines_before + parsed.line_num}: {len(fields)} fields but the header has {width}; "
                     "check its quoting and separators")
            for number, fields in enumerate(parsed, start=1)
            if len(fields) > width
        ]
    except csv.Error:
        return []
    finally:
        csv.field_size_limit(limit)


def _fields(record: str, separator: str) -> list[str]:
    """The fields of one record (its quotes closed), by the csv module."""
    limit = csv.field_size_limit(_MAX_CELL)
    try:
        return next(csv.reader(io.StringIO(record, newline=""), delimiter=separator), [])
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
    check_column_names(where, [name.strip() for name in names])
    return len(names)
