"""JSONL: one JSON object per line, each value as canonical text plus its kind (number, boolean, ...).

A column's kind is known only after the file's last line, yet each batch is handed on as soon as it is
parsed, under the columns and kinds of the first batch (``open_jsonl``). If a later batch adds a column
or changes a column's type, the consumer starts over (``SourceStream.consume``): the rest is parsed,
and every batch is parsed again from the spool that kept its lines (``spool.py``: memory, then a
temporary file), under the whole file's header; never is the file whole in memory. A batch of plain
lines is parsed by polars (``jsonl_fast``); any other, or one polars' reading cannot be shown to match,
line by line here. A line that is not an object, or not one bulksync can take, is set aside as
malformed with its line number; one longer than ``MAX_RECORD_BYTES`` refuses the file.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source import jsonl_fast
from bulksync.source.batch import HeaderChanged, Source, SourceStream, ValueKind, same_types
from bulksync.source.location import SourcePath
from bulksync.source.records import MAX_RECORD_BYTES, cut_short, slices, too_long
from bulksync.source.spool import ByteSpool
from bulksync.source.text import utf8_text

JSONL_CHUNK_LINES = 50_000
# Parse about this much JSONL per batch: as many rows as a CSV batch of 16 MB (a JSONL line repeats its keys,
# about twice a CSV row's bytes). Each batch costs the plan a fixed share: 1M rows in 6 batches plan in
# 0.2 s less than in 12, for 80-100 MB more peak memory (measured, bench/jsonl.py).
BATCH_BYTES = 32 << 20
_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c]+")  # what bytes.isspace() holds blank
_SPLIT_BYTES = 64 << 10  # lines split at a time: the list of 64 KB of blank lines is 512 KB
_Part = tuple[pl.DataFrame, list[tuple[int, str]], bool]  # a batch's rows, its malformed lines, may it hold NUL


def open_jsonl(
    path: SourcePath, blocks: Iterable[bytes], *, streamed: bool = False,
    again: Callable[[], Iterable[bytes]] | None = None,
) -> SourceStream:
    """The first batch of UTF-8 ``blocks`` parsed now, for the header; the rest as the batches are consumed.

    ``streamed`` (standard input): a last line without a line end that is not JSON fails the source,
    since the rest of it never came. ``again`` gives the same bytes afresh (a local file): a start over
    reads them again rather than every batch's lines being kept in a spool on the way.
    """
    reading = _Reading(path, _parsed(path, _line_chunks(path, blocks)), streamed=streamed, again=again)
    return SourceStream(reading.header, reading.batches(), reading.settle)


class _Reading:
    """A JSONL source read once, batch by batch: each batch handed on under the header of the first
    until one changes it, and its lines kept in a spool, to be parsed again under the whole file's
    header if one does (frames would cost far more to keep: a JSONL file rarely changes its columns)."""

    def __init__(
        self, path: SourcePath, parts: Iterator[tuple[_Chunk, jsonl_fast.Parsed]], *, streamed: bool,
        again: Callable[[], Iterable[bytes]] | None,
    ) -> None:
        self.path, self.parts, self.streamed, self.again = path, parts, streamed, again
        self.spool: ByteSpool[tuple[int, int, bool]] | None = ByteSpool() if again is None else None
        self.kinds: dict[str, set[ValueKind]] = {}
        self.columns: dict[str, None] = {}
        self.given: Source | None = None  # the header handed out: the first batch's
        self.changed = False  # a batch since changed it
        self.done = False
        self.failed: BaseException | None = None
        self.lock = threading.Lock()  # the batches are read in a prefetching thread; settle() in the consumer's
        self.opening: list[_Part] = []
        while not any(frame.height or malformed for frame, malformed, _ in self.opening):
            part = self._next()
            if part is None:
                raise InputError(f"{path}: the file is empty; expected one JSON object per line, such as "
                                 '{"email": ...}')
            self.opening.append(part)
        self.given = self.header = self._header()

    def batches(self) -> Iterator[Source]:
        for opened in self.opening:
            yield _batch(self.header, *opened)
        self.opening = []
        while (part := self._next()) is not None:
            if self.changed:
                raise HeaderChanged
            yield _batch(self.header, *part)

    def settle(self) -> SourceStream | None:
        """Every batch read; the stream to start over with if one changed the header, else None."""
        while self._next() is not None:
            pass
        if not self.changed:
            return None
        whole = self._header()
        if self.again is not None:
            chunks = _line_chunks(self.path, self.again())
        else:
            assert self.spool is not None
            spool, self.spool = self.spool, None
            chunks = (_Chunk(data, *where) for data, where in spool.replay())
        again = (_batch(whole, frame, malformed, _holds_nul(chunk.data))
                 for chunk, (frame, _, malformed) in _parsed(self.path, chunks))
        return SourceStream(whole, again)

    def _next(self) -> _Part | None:
        """The next batch parsed and spooled (None at the end); a failure to read is raised again."""
        with self.lock:
            if self.failed is not None:
                raise self.failed
            if self.done:
                return None
            try:
                chunk, (frame, batch_kinds, malformed) = next(self.parts)
                last = chunk.lines_before + chunk.lines
                if self.streamed and chunk.unterminated and malformed and malformed[-1][0] == last:
                    raise cut_short(self.path, f"line {last}: {malformed[-1][1]}")
            except StopIteration:
                self.done = True
                if not self.changed and self.spool is not None:  # the first batch's header holds: no replay
                    self.spool.discard()
                    self.spool = None
                return None
            except BaseException as exc:
                self.failed = exc
                raise
            for name, kind in batch_kinds.items():
                self.kinds.setdefault(name, set()).update(kind)
            self.columns.update(dict.fromkeys(c for c in frame.columns if c != ROW))
            if self.spool is not None:
                self.spool.add(chunk.data, (chunk.lines_before, chunk.lines, chunk.unterminated))
            if self.given is not None and not self.changed:
                self.changed = not same_types(self.given, self._header())
            return frame, malformed, _holds_nul(chunk.data)

    def _header(self) -> Source:
        """The columns and kinds of the batches read so far (a column of several kinds is a string)."""
        resolved = {c: (next(iter(k)) if len(k) == 1 else "string") for c, k in self.kinds.items()}
        frame = pl.DataFrame(schema={ROW: pl.UInt32, **{c: pl.String for c in self.columns}})
        return Source(path=self.path, frame=frame, kinds=resolved, header_lines=0)


def _parsed(path: SourcePath, chunks: Iterator[_Chunk]) -> Iterator[tuple[_Chunk, jsonl_fast.Parsed]]:
    """Each chunk parsed in a background thread while the next one is read (polars, and reading,
    let go of the GIL): polars' reading when it is exact, else line by line."""

    def parse(chunk: _Chunk) -> jsonl_fast.Parsed:
        return jsonl_fast.parse(chunk.data, chunk.lines_before, chunk.lines) or _parse(path, chunk)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulksync-jsonl") as parser:
        ahead: tuple[_Chunk, Future[jsonl_fast.Parsed]] | None = None
        for chunk in chunks:
            parsing = parser.submit(parse, chunk)
            if ahead is not None:
                yield ahead[0], ahead[1].result()
            ahead = chunk, parsing
        if ahead is not None:
            yield ahead[0], ahead[1].result()


def _batch(header: Source, frame: pl.DataFrame, malformed: list[tuple[int, str]], may_hold_nul: bool) -> Source:
    """A parsed batch with every column of ``header`` (the ones it lacks as nulls)."""
    names = header.frame.columns
    missing = [name for name in names if name not in frame.columns]
    full = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name) for name in missing).select(names)
    return Source(path=header.path, frame=full, kinds=dict(header.kinds), malformed=malformed, header_lines=0,
                  may_hold_nul=may_hold_nul)


def _holds_nul(data: bytes) -> bool:
    """Whether a value of these lines may hold a NUL: JSON has it only as ``\\u0000`` (a raw one is malformed)."""
    return b"\x00" in data or b"\\u0000" in data


@dataclass(frozen=True)
class _Chunk:
    """Whole lines of the file (the last one may lack its line end), for one batch."""

    data: bytes
    lines_before: int
    lines: int  # lines in ``data``
    unterminated: bool  # the file's last line, without a line end, ends ``data``


def _line_chunks(path: SourcePath, blocks: Iterable[bytes]) -> Iterator[_Chunk]:
    """The file's lines in chunks of about ``BATCH_BYTES`` (a run of blank lines is counted, never
    kept); a line longer than ``MAX_RECORD_BYTES`` is an InputError."""
    batch = _Batcher()
    carried = b""  # a line begun in an earlier block
    for piece in chain(slices(blocks), [b""]):
        # A line within one slice is within the limit: only one that runs on from an earlier slice can pass it.
        first = piece.find(b"\n")
        if carried and len(carried) + (first + 1 if first >= 0 else len(piece)) > MAX_RECORD_BYTES:
            raise too_long(path, batch.lines + batch.pending_lines + 1, "line")
        if not piece:  # the file's end ends its last line
            yield from batch.take(carried, 0, len(carried), unterminated=True)
            break
        if first < 0:
            carried += piece
            continue
        # Ranges of the piece, never copies of it (a copy of 1M rows of JSONL costs 0.1 s): the line run on
        # from earlier blocks, then the piece's whole lines; its last, unfinished line is carried.
        start, end = 0, piece.rfind(b"\n") + 1
        if carried:
            yield from batch.take(carried + piece[:first + 1], 0, len(carried) + first + 1, unterminated=False)
            start = first + 1
        yield from batch.take(piece, start, end, unterminated=False)
        carried = piece[end:]
    yield from batch.flush()


class _Batcher:
    """Whole lines gathered into chunks of about ``BATCH_BYTES``, cut at line ends."""

    def __init__(self) -> None:
        self.lines = 0  # lines in the chunks handed on (and blank runs skipped)
        self.pending: list[memoryview] = []  # ranges of the blocks read, joined once, into their chunk
        self.pending_lines = 0
        self.size = 0
        self.unterminated = False  # the pending lines end with the file's last line, which has no line end

    def take(self, data: bytes, start: int, stop: int, *, unterminated: bool) -> Iterator[_Chunk]:
        """The lines ``data[start:stop]`` (the last without its line end when ``unterminated``); only
        blank ones: counted, never held."""
        if start >= stop:
            return
        if not unterminated and _BLANK.fullmatch(data, start, stop):
            yield from self.flush()
            self.lines += data.count(b"\n", start, stop)
            return
        view = memoryview(data)
        while start < stop:
            room = BATCH_BYTES - self.size
            cut = stop if stop - start <= room else data.rfind(b"\n", start, start + room) + 1
            if not cut:  # no line end within the room: hand on what is pending, or take one whole line
                if self.pending:
                    yield from self.flush()
                    continue
                cut = data.find(b"\n", start + room, stop) + 1 or stop
            self.pending.append(view[start:cut])
            self.size += cut - start
            self.unterminated = unterminated and cut == stop
            self.pending_lines += data.count(b"\n", start, cut) + self.unterminated
            start = cut
            if self.size >= BATCH_BYTES:
                yield from self.flush()

    def flush(self) -> Iterator[_Chunk]:
        if not self.pending:
            return
        joined = b"".join(self.pending)
        self.pending = []
        chunk = _Chunk(joined, self.lines, self.pending_lines, self.unterminated)
        self.unterminated = False
        self.lines, self.pending_lines, self.size = self.lines + self.pending_lines, 0, 0
        yield chunk


def _parse(path: SourcePath, chunk: _Chunk) -> jsonl_fast.Parsed:
    """A chunk line by line (the slow path): its rows as text, the kinds seen, its malformed lines."""
    malformed: list[tuple[int, str]] = []
    kinds: dict[str, set[ValueKind]] = {}
    frames = [
        pl.DataFrame(columns, schema={ROW: pl.UInt32, **{c: pl.String for c in columns if c != ROW}})
        for columns in _jsonl_chunks(_split_lines(path, chunk.data, chunk.lines_before), malformed, kinds)
    ]
    frame = pl.concat(frames, how="diagonal") if frames else pl.DataFrame(schema={ROW: pl.UInt32})
    return frame, kinds, malformed


def _split_lines(path: SourcePath, body: bytes, number: int) -> Iterator[tuple[int, str]]:
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
