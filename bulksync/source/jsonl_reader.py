"""JSONL: one JSON object per line, each value as canonical text plus its kind (number, boolean, ...).

The file is read whole, in one batch: a column's kind is known only after its last line. A line that
is not an object, or not one bulksync can take, is set aside as malformed with its line number.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source.batch import Source, SourceStream, ValueKind
from bulksync.source.text import utf8_text

JSONL_CHUNK_LINES = 50_000


def open_jsonl(path: Path, blocks: Iterable[bytes]) -> SourceStream:
    """The whole file from UTF-8 ``blocks``, parsed now, as a stream of one batch."""
    source = _read_jsonl(path, utf8_text(path, b"".join(blocks)))
    header = Source(path=path, frame=source.frame.clear(), kinds=source.kinds, header_lines=0)
    return SourceStream(header, iter([source]))


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
