"""Stage 1: stream a CSV or JSONL file (optionally gzipped) into a polars frame of text columns.

Every value stays text here (``02134`` stays ``02134``); types are decided by ``normalise``. Each
record keeps its 1-based position in the source in the ``ROW`` column so that every later message
can point at it.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.errors import InputError

ROW = "__row"
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
JSONL_CHUNK_LINES = 50_000

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
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


def read_source(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> Source:
    """Read ``path`` by its extension: .csv or .jsonl/.ndjson, each optionally .gz."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in (".csv", ".jsonl", ".ndjson", ".tsv"):
        raise InputError(
            f"{path}: unknown source format {fmt or '(no extension)'!r}; "
            "name the file .csv, .tsv, .jsonl or .ndjson (optionally .gz)"
        )
    data = _utf8(path, _read_bytes(path), encoding)
    if fmt in (".jsonl", ".ndjson"):
        return _read_jsonl(path, _text(path, data))
    return _read_csv(path, data, delimiter or ("\t" if fmt == ".tsv" else None))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the SOURCE path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; SOURCE must be a .csv or .jsonl file") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); check the file is complete") from None


def _utf8(path: Path, data: bytes, encoding: str) -> bytes:
    """The file as UTF-8 bytes without a BOM and with ``\n`` line ends (universal newlines).

    UTF-8 input stays bytes (polars validates it while parsing, so a valid file is never decoded
    here); another encoding is decoded and re-encoded.
    """
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        data = data.removeprefix(codecs.BOM_UTF8)
    else:
        try:
            data = data.decode(encoding).encode("utf-8")
        except LookupError:
            raise InputError(f"unknown --encoding {encoding!r}; use a Python codec name such as latin-1") from None
        except UnicodeDecodeError as exc:
            raise _undecodable(path, data, exc, encoding) from None
    if b"\r" in data:  # CRLF, classic Mac CR, or a mix: polars only splits on \n
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _undecodable(path, data, exc, "utf-8") from None


def _undecodable(path: Path, data: bytes, exc: UnicodeDecodeError, encoding: str) -> InputError:
    """A bad byte names its line (any line ends) and suggests ``--encoding``."""
    line = len(_LINE_BREAK.findall(data, 0, exc.start)) + 1
    return InputError(
        f"{path}:{line}: byte 0x{data[exc.start]:02x} is not valid {encoding}; "
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


def _read_csv(path: Path, data: bytes, delimiter: str | None) -> Source:
    if data.isspace() or not data:
        raise InputError(f"{path}: the file is empty; expected a header line such as 'email,firstName'")
    end = data.find(b"\n")
    header_line = _text(path, data if end < 0 else data[:end])  # slicing, not split: no copy of the file
    separator = delimiter or sniff_delimiter(header_line)
    width = _check_header(path, header_line, separator)
    malformed: list[tuple[int, str]] = []
    try:
        frame = _polars_csv(data, separator, ragged=False)
    except pl.exceptions.PolarsError as exc:
        # Polars refuses a file with rows longer than the header (or bad UTF-8, which _text names):
        # find the long rows, reject them, read the rest.
        malformed = _ragged_records(_text(path, data), separator, width)
        if not malformed:
            raise _unreadable(path, exc) from None
        try:
            frame = _polars_csv(data, separator, ragged=True)
        except pl.exceptions.PolarsError as again:
            raise _unreadable(path, again) from None
    garbled = next((name for name in frame.columns if not name.isprintable()), None)
    if garbled is not None:
        raise InputError(f"{path}:1: column name {garbled!r} holds a control character or line break; rename it")
    frame = frame.with_row_index(ROW, offset=1)
    if malformed:
        frame = frame.filter(~pl.col(ROW).is_in([row for row, _ in malformed]))
    kinds = {c: "string" for c in frame.columns if c != ROW}
    return Source(
        path=path, frame=frame, kinds=kinds, malformed=malformed, header_lines=1, may_hold_nul=b"\x00" in data
    )


def _unreadable(path: Path, exc: Exception) -> InputError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"{path}: not a readable CSV file ({first}); check quoting and column counts")


def _polars_csv(data: bytes, separator: str, ragged: bool) -> pl.DataFrame:
    return pl.read_csv(
        data, infer_schema=False, separator=separator, quote_char='"', raise_if_empty=False,
        truncate_ragged_lines=ragged,
    )


def _ragged_records(text: str, separator: str, width: int) -> list[tuple[int, str]]:
    """Records with more fields than the header, found by the csv module when polars refuses the file."""
    try:
        records = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        next(records, None)
        return [
            (number, f"line {records.line_num}: {len(fields)} fields but the header has {width}; "
                     "check its quoting and separators")
            for number, fields in enumerate(records, start=1)
            if len(fields) > width
        ]
    except csv.Error:
        return []


def _check_header(path: Path, header_line: str, separator: str) -> int:
    try:
        names = next(csv.reader([header_line.rstrip("\r")], delimiter=separator), [])
    except csv.Error as exc:
        raise InputError(f"{path}:1: the header line is not valid CSV ({exc}); check the file's first line") from None
    seen: set[str] = set()
    for name in names:
        clean = name.strip()
        if not clean:
            raise InputError(f"{path}:1: the header has an empty column name; name every column")
        if clean.startswith("__"):
            raise InputError(f"{path}:1: column name {clean!r} is reserved (starts with __); rename it")
        if clean in seen:
            raise InputError(f"{path}:1: column {clean!r} appears twice in the header; rename or drop one")
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
