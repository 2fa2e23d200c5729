"""Stage 1: stream a CSV or JSONL file (optionally gzipped) as polars frames of text columns.

Every value stays text here (``02134`` stays ``02134``); types are decided by ``normalise``. Each
record keeps its 1-based position in the source in the ``ROW`` column so that every later message
can point at it. A CSV file is read in batches of about ``BATCH_BYTES`` cut at record boundaries,
so a file of any size passes through a bounded amount of memory.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
JSONL_CHUNK_LINES = 50_000
BLOCK_BYTES = 8 << 20  # read from disk (or gzip) this much at a time
_MAX_CELL = (1 << 31) - 1
BATCH_BYTES = 16 << 20  # parse about this much CSV per batch (~200,000 rows): measured faster than 8 or 48 MB

# The kinds a JSONL value can have; CSV values are all "string".
ValueKind = str


@dataclass
class Source:
    """What the reader found: rows as text, the kind of each column, and records it could not parse."""

    path: Path
    frame: pl.DataFrame
    kinds: dict[str, ValueKind] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    header_lines: int = 0
    rejects: pl.DataFrame | None = None  # rows a mapping refused ("__row", "__reason"), already out of frame
    may_hold_nul: bool = True  # False when the file has no NUL byte: normalise then skips that check

    def line_of(self, row: int) -> int:
        """The line a record starts on, assuming no quoted line breaks before it."""
        return row + self.header_lines

    @property
    def header_line(self) -> int:
        """The line that names the columns (blank lines may come before it); 1 for JSONL."""
        return max(self.header_lines, 1)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


@dataclass
class SourceStream:
    """An opened source: its columns (``header``, a Source without rows) and then its rows, batch by batch.

    ``batches`` yields at least one Source; each has the header's columns and the next records.
    """

    header: Source
    batches: Iterator[Source]


def read_source(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> Source:
    """The whole of ``path`` as one Source (for what needs every row at once: check, baseline)."""
    stream = open_source(path, encoding, delimiter)
    parts = list(stream.batches)
    return Source(
        path=path,
        frame=pl.concat([part.frame for part in parts]) if len(parts) > 1 else parts[0].frame,
        kinds=stream.header.kinds,
        malformed=[record for part in parts for record in part.malformed],
        header_lines=stream.header.header_lines,
        may_hold_nul=any(part.may_hold_nul for part in parts),
    )


def open_source(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> SourceStream:
    """Open ``path`` by its extension: .csv, .tsv or .jsonl/.ndjson, each optionally .gz.

    The header is read and checked here; the rows are read as ``batches`` is consumed.
    """
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in (".csv", ".jsonl", ".ndjson", ".tsv"):
        raise InputError(
            f"{path}: unknown source format {fmt or '(no extension)'!r}; "
            "name the file .csv, .tsv, .jsonl or .ndjson (optionally .gz)"
        )
    blocks = _utf8_blocks(path, encoding)
    if fmt in (".jsonl", ".ndjson"):
        # JSONL is read whole: a column's kind (number, boolean, ...) is known only after every line.
        source = _read_jsonl(path, _text(path, b"".join(blocks)))
        header = Source(path=path, frame=source.frame.clear(), kinds=source.kinds, header_lines=0)
        return SourceStream(header, iter([source]))
    return _open_csv(path, blocks, delimiter or ("\t" if fmt == ".tsv" else None))


def _raw_blocks(path: Path) -> Iterator[bytes]:
    try:
        with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb") as fh:
            while block := fh.read(BLOCK_BYTES):
                yield block
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the SOURCE path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; SOURCE must be a .csv or .jsonl file") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); check the file is complete") from None


def _utf8_blocks(path: Path, encoding: str) -> Iterator[bytes]:
    """The file as UTF-8 blocks without a BOM and with ``\\n`` line ends (universal newlines).

    UTF-8 input stays bytes (polars validates it while parsing, so a valid file is never decoded
    here); another encoding is decoded and re-encoded, block by block.
    """
    is_utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        decoder = None if is_utf8 else codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise InputError(f"unknown --encoding {encoding!r}; use a Python codec name such as latin-1") from None
    lines = 0  # line breaks already passed, to name the line of a bad byte
    carried = b""  # a block ending in \r may be half of a \r\n
    raw_blocks = chain(_raw_blocks(path), [b""])  # the empty block flushes the decoder
    for number, raw in enumerate(raw_blocks):
        data = raw
        if decoder is not None:
            try:
                data = decoder.decode(raw, final=not raw).encode("utf-8")
            except UnicodeDecodeError as exc:  # exc.object: the bytes decoded (with any the decoder held back)
                raise _undecodable(path, carried + exc.object, len(carried) + exc.start, encoding, lines) from None
        elif number == 0:
            data = data.removeprefix(codecs.BOM_UTF8)
        data = carried + data
        carried = b""
        if data.endswith(b"\r") and raw:
            data, carried = data[:-1], b"\r"
        if b"\r" in data:  # CRLF, classic Mac CR, or a mix: polars only splits on \n
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if decoder is not None:
            lines += data.count(b"\n")
        if data:
            yield data


def _text(path: Path, data: bytes, lines_before: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _undecodable(path, data, exc.start, "utf-8", lines_before) from None


def _undecodable(path: Path, data: bytes, position: int, encoding: str, lines_before: int) -> InputError:
    """The bad byte at ``position`` names its line (any line ends) and suggests ``--encoding``."""
    line = lines_before + len(_LINE_BREAK.findall(data, 0, position)) + 1
    return InputError(
        f"{path}:{line}: byte 0x{data[position]:02x} is not valid {encoding}; "
        "pass the file's encoding, e.g. --encoding latin-1 or --encoding cp1252"
    )


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


def _open_csv(path: Path, blocks: Iterator[bytes], delimiter: str | None) -> SourceStream:
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
    header_line = _text(path, header_bytes, blank)
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
        # Polars refuses a file with rows longer than the header (or bad UTF-8, which _text names):
        # find the long rows, reject them, read the rest.
        before = lines_before - 1  # the batch's own copy of the header is its first line
        malformed = _ragged_records(_text(path, data, before), separator, width, before)
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


def _read_jsonl(path: Path, text: str) -> Source:
    malformed: list[tuple[int, str]] = []
    kinds: dict[str, set[ValueKind]] = {}
    chunks = [
        pl.DataFrame(columns, schema={ROW: pl.UInt32, **{c: pl.String for c in columns if c != ROW}})
        for columns in _jsonl_chunks(text, malformed, kinds)
    ]
    if not chunks and not malformed:
        raise InputError(f"{path}: the file is empty; expected one JSON object per line, such as {{\"email\": ...}}")
    frame = pl.concat(chunks, how="diagonal") if chunks else pl.DataFrame(schema={ROW: pl.UInt32})
    resolved = {c: (next(iter(k)) if len(k) == 1 else "string") for c, k in kinds.items()}
    return Source(path=path, frame=frame, kinds=resolved, malformed=malformed)


def _jsonl_chunks(
    text: str, malformed: list[tuple[int, str]], kinds: dict[str, set[ValueKind]]
) -> Iterator[dict[str, list[Any]]]:
    """Parse lines into columnar chunks so memory holds text columns, never one dict per row."""
    columns: dict[str, list[Any]] = {ROW: []}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            malformed.append((number, f"key {exc.args[0]!r} appears twice in the object; keep one"))
            continue
        except json.JSONDecodeError as exc:
            malformed.append((number, f"malformed JSON at column {exc.colno}: {exc.msg}"))
            continue
        if not isinstance(record, dict):
            malformed.append((number, f"line is JSON {type(record).__name__}, not an object"))
            continue
        reserved = next((name for name in record if name.startswith("__")), None)
        if reserved is not None:
            malformed.append((number, f"key {reserved!r} is reserved (starts with __); rename it"))
            continue
        garbled = next((name for name in record if not name.isprintable()), None)
        if garbled is not None:
            malformed.append((number, f"key {garbled!r} holds a control character; rename it"))
            continue
        infinite = next((name for name, value in record.items() if isinstance(value, float)
                         and not math.isfinite(value)), None)
        if infinite is not None:
            malformed.append((number, f"{infinite} is not a finite number; Loops takes none like it"))
            continue
        size = len(columns[ROW])
        columns[ROW].append(number)
        for name, value in record.items():
            text_value, kind = _jsonl_value(value)
            column = columns.setdefault(name, [None] * size)
            column.extend([None] * (size - len(column)))
            column.append(text_value)
            if kind is not None:
                kinds.setdefault(name, set()).add(kind)
        if size + 1 >= JSONL_CHUNK_LINES:
            yield _padded(columns)
            columns = {ROW: []}
    if columns[ROW]:
        yield _padded(columns)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        raise _DuplicateKey(next(key for key, count in counts.items() if count > 1))
    return record


def _padded(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    size = len(columns[ROW])
    for column in columns.values():
        column.extend([None] * (size - len(column)))
    return columns


def _jsonl_value(value: Any) -> tuple[str | None, ValueKind | None]:
    """A JSON value as canonical text plus its kind; nested values stay JSON text."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int | float):
        return json.dumps(value), "number"
    if isinstance(value, str):
        return value, "string"
    return json.dumps(value, sort_keys=True, separators=(",", ":")), "json"
