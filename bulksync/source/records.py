"""Records in bytes: where a CSV record ends, batches cut at record ends, and the limit on one record.

A record ends at a line break with an even number of quote characters before it (a quoted value may
hold line breaks). No record may be longer than ``MAX_RECORD_BYTES``: so a batch stays within its
size plus one record whatever the file (or its compression ratio), and an unclosed quote is found
within a few MB instead of swallowing the rest of the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bulksync.errors import InputError
from bulksync.source.location import SourcePath

# The longest record (CSV, with its quoted line breaks) or line (JSONL) a source may hold: "16 MB" in
# messages. Far more than any row Loops can take (498 characters a value), and above a 10 MB value,
# which only rejects its row; a batch then holds at most twice this beyond its own size.
MAX_RECORD_BYTES = 16 << 20

# Fallbacks for a line break inside quotes, where a simple look is not enough. All possessive, so a
# match keeps no backtracking state (8 MB of quotes would otherwise cost hundreds of MB). Record ends
# from the back are found in the reversed bytes: the segments between quotes alternate in and out of
# quotes, so the first line break of an unquoted segment, counted from the end, is the last record end.
_LAST_END_EVEN = re.compile(rb'(?:[^"\n]*+"[^"]*+")*+[^"\n]*+\n')  # the data ends outside quotes
_LAST_END_ODD = re.compile(rb'[^"]*+"(?:[^"\n]*+"[^"]*+")*+[^"\n]*+\n')  # ... inside quotes
_FIRST_END_EVEN = re.compile(rb'(?:[^"\n]++|"[^"]*+")*+\n')  # the data starts outside quotes
_FIRST_END_ODD = re.compile(rb'[^"]*+"(?:[^"\n]++|"[^"]*+")*+\n')  # ... inside quotes


def too_long(path: SourcePath, line: int, what: str = "record") -> InputError:
    """The one-line error for a record (or line) over the limit, naming where it starts."""
    limit = f"{MAX_RECORD_BYTES >> 20} MB" if MAX_RECORD_BYTES >= 1 << 20 else f"{MAX_RECORD_BYTES} bytes"
    return InputError(
        f"{path}:{line}: the {what} starting on this line is longer than {limit}, the limit for one record; "
        "check it for an unclosed quote, or shorten its values"
    )


CUT_SHORT_FILE = "the file looks cut short (was it still being written?); export it again"


def cut_short(path: SourcePath, reason: str) -> InputError:
    """A source read once (standard input) whose last record was cut short: the whole run stops, for
    the rest of the export never came and its contacts must not look deleted."""
    return InputError(f"{path}: {reason}; the input stopped short (did the command writing it fail?); "
                      "nothing was sent")


def slices(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """``blocks`` cut to at most ``MAX_RECORD_BYTES`` each (a re-encoded block can be larger), so that a
    record within one slice is within the limit and only records across slices need measuring."""
    for block in blocks:
        if len(block) <= MAX_RECORD_BYTES:
            yield block
            continue
        for start in range(0, len(block), MAX_RECORD_BYTES):
            yield block[start:start + MAX_RECORD_BYTES]


def last_end(data: bytes, parity: int, quotes: int | None = None) -> int | None:
    """Just past the last record end in ``data``, given the parity of the quotes before it (``quotes``:
    how many ``data`` holds, if already counted)."""
    end = data.rfind(b"\n")
    if end < 0:
        return None
    if quotes is None:
        quotes = data.count(b'"')
    if (parity + quotes - data.count(b'"', end)) % 2 == 0:
        return end + 1  # the usual case: the last line break is outside quotes
    match = (_LAST_END_ODD if (parity + quotes) % 2 else _LAST_END_EVEN).match(data[::-1])
    return None if match is None else len(data) - match.end() + 1


def first_end(data: bytes, parity: int) -> int | None:
    """Just past the first record end in ``data``, given the parity of the quotes before it."""
    end = data.find(b"\n")
    if end < 0:
        return None
    if (parity + data.count(b'"', 0, end)) % 2 == 0:
        return end + 1
    match = (_FIRST_END_ODD if parity else _FIRST_END_EVEN).match(data)
    return None if match is None else match.end()


@dataclass(frozen=True)
class Unfinished:
    """The file's last record when the file does not end with a line break: perhaps cut short."""

    line: int  # where it starts
    data: bytes
    open_quote: bool  # it ends inside a quoted value


@dataclass(frozen=True)
class Chunk:
    """The header line and then whole records, for one batch."""

    data: bytes
    lines_before: int  # source lines before its first record
    unfinished: Unfinished | None = None  # only in the last chunk: its last record, left out of ``data``


def record_chunks(
    blocks: Iterable[bytes], header: bytes, *, path: SourcePath, lines_before: int, batch_bytes: int
) -> Iterator[Chunk]:
    """The records of ``blocks`` in chunks of about ``batch_bytes``, each starting with ``header``: never
    more than ``max(batch_bytes, MAX_RECORD_BYTES) + MAX_RECORD_BYTES`` bytes of records.

    ``lines_before`` counts the source lines before the first record. A record over the limit is an
    InputError. Always yields at least one chunk (the header alone, for a file without records).
    """
    parts: list[bytes] = []  # the bytes since the last chunk
    size = 0  # their length
    pending = 0  # of them, the bytes since the last record end: the record being read
    parity = 0  # quotes read, mod 2 (every record end is at an even count)
    lines = chunk_lines = lines_before  # line breaks read; at the start of the current chunk
    record_line = lines_before + 1  # where the pending record starts
    ends_with_break = True
    yielded = False
    for piece in slices(blocks):
        if not piece:
            continue
        quotes = piece.count(b'"')
        if pending + len(piece) > MAX_RECORD_BYTES:  # the pending record may go over the limit here
            first = first_end(piece, parity)
            if first is None or pending + first > MAX_RECORD_BYTES:
                raise too_long(path, record_line)
        end = last_end(piece, parity, quotes)
        breaks = piece.count(b"\n")
        parts.append(piece)
        size += len(piece)
        if end is None:
            pending += len(piece)
        else:
            pending = len(piece) - end
            record_line = lines + breaks - piece.count(b"\n", end) + 1
        lines += breaks
        parity = (parity + quotes) % 2
        ends_with_break = piece.endswith(b"\n")
        if size >= batch_bytes and pending < size:
            data, parts = _split([header, *parts], pending)
            yield Chunk(data, chunk_lines)
            yielded = True
            size, chunk_lines = pending, record_line - 1
    if size or not yielded:
        if pending and not ends_with_break:
            data, rest = _split([header, *parts], pending)
            yield Chunk(data, chunk_lines, Unfinished(record_line, b"".join(rest), open_quote=bool(parity)))
        else:  # a quote still open at a final line break: the parser names the problem
            yield Chunk(b"".join([header, *parts]), chunk_lines)


def _split(parts: list[bytes], tail: int) -> tuple[bytes, list[bytes]]:
    """``parts`` joined but for their last ``tail`` bytes, and those bytes as parts."""
    rest: list[bytes] = []
    while tail:
        last = parts.pop()
        if len(last) <= tail:
            rest.insert(0, last)
            tail -= len(last)
        else:
            parts.append(last[: len(last) - tail])
            rest.insert(0, last[len(last) - tail:])
            tail = 0
    return b"".join(parts), rest
