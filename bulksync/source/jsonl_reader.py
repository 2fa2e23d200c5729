"""JSONL: one JSON object per line, each value as canonical text plus its kind (number, boolean, ...).

The file is parsed whole, in one batch: a column's kind is known only after its last line (its text
is decoded a block at a time, never whole). A line that is not an object, or not one bulksync can
take, is set aside as malformed with its line number; one longer than ``MAX_RECORD_BYTES`` refuses the file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source.batch import Source, SourceStream, ValueKind
from bulksync.source.records import MAX_RECORD_BYTES, slices, too_long
from bulksync.source.text import utf8_text

JSONL_CHUNK_LINES = 50_000
_SPLIT_BYTES = 64 << 10  # lines split at a time: the list of 64 KB of blank lines is 512 KB


def open_jsonl(path: Path, blocks: Iterable[bytes]) -> SourceStream:
    """The whole file from UTF-8 ``blocks``, parsed now, as a stream of one batch."""
    source = _read_jsonl(path, _lines(path, blocks))
    header = Source(path=path, frame=source.frame.clear(), kinds=source.kinds, header_lines=0)
    return SourceStream(header, iter([source]))


def _lines(path: Path, blocks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Each line of the file with its number, decoded a block at a time (the file's text is never
    whole in memory); a line longer than ``MAX_RECORD_BYTES`` is an InputError."""
    number = 0  # lines before the ones of this block
    carried = b""  # a line begun in an earlier block
    for piece in chain(slices(blocks), [b""]):
        # A line within one slice is within the limit: only one that runs on from an earlier slice can pass it.
        first = piece.find(b"\n")
        if carried and len(carried) + (first + 1 if first >= 0 else len(piece)) > MAX_RECORD_BYTES:
            raise too_long(path, number + 1, "line")
        data = carried + piece if carried else piece
        end = data.rfind(b"\n") + 1 if piece else len(data)  # the file's end ends its last line
        if not end:
            carried = data
            continue
        body, carried = data[:end], data[end:]
        yield from _split_lines(path, body, number)
        number += body.count(b"\n")


def _split_lines(path: Path, body: bytes, number: int) -> Iterator[tuple[int, str]]:
    """The lines of ``body`` (whole lines; ``number`` of them before it), split ``_SPLIT_BYTES`` at a
    time (a list holds 8 bytes a line, so a block of blank lines would be a list 8 times its size);
    a part of only blank lines is counted and never split."""
    start = 0
    while start < len(body):
        end = body.rfind(b"\n", start, start + _SPLIT_BYTES) + 1
        if end <= start:  # one line longer than that: all of it
            end = body.find(b"\n", start + _SPLIT_BYTES) + 1 or len(body)
        part = body[start:end]
        if not part.isspace():
            yield from enumerate(utf8_text(path, part, number).split("\n"), start=number + 1)
        number += part.count(b"\n")
        start = end


def _read_jsonl(path: Path, lines: Iterable[tuple[int, str]]) -> Source:
    malformed: list[tuple[int, str]] = []
    kinds: dict[str, set[ValueKind]] = {}
    chunks = [
        pl.DataFrame(columns, schema={ROW: pl.UInt32, **{c: pl.String for c in columns if c != ROW}})
        for columns in _jsonl_chunks(lines, malformed, kinds)
    ]
    if not chunks and not malformed:
        raise InputError(f"{path}: the file is empty; expected one JSON object per line, such as {{\"email\": ...}}")
    frame = pl.concat(chunks, how="diagonal") if chunks else pl.DataFrame(schema={ROW: pl.UInt32})
    resolved = {c: (next(iter(k)) if len(k) == 1 else "string") for c, k in kinds.items()}
    return Source(path=path, frame=frame, kinds=resolved, malformed=malformed)


def _jsonl_chunks(
    lines: Iterable[tuple[int, str]], malformed: list[tuple[int, str]], kinds: dict[str, set[ValueKind]]
) -> Iterator[dict[str, list[Any]]]:
    """Parse lines into columnar chunks so memory holds text columns, never one dict per row."""
    columns: dict[str, list[Any]] = {ROW: []}
    for number, line in lines:
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
        except RecursionError:  # '[[[[...' 100,000 deep: that row is at fault, not the run
            malformed.append((number, "nested too deeply to read; a contact's values are flat"))
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
            column = columns.get(name)
            if column is None:  # not setdefault: its default, a list of ``size``, would be built for every value
                column = columns[name] = [None] * size
            elif len(column) < size:
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
