"""Batches parsed ahead and read back one at a time: the JSONL reader's buffer, which must see every
line before it knows a column's kind, without holding the whole file in memory.

The first ``MEMORY_BYTES`` of frames stay in memory; the rest goes, as Arrow IPC (lz4), to an unnamed
temporary file that the system deletes when it is closed or the process ends, kill -9 included.
"""

from __future__ import annotations

import io
import tempfile
import weakref
from collections.abc import Iterator
from typing import IO, Generic, TypeVar

import polars as pl

MEMORY_BYTES = 32 << 20  # held frames add to the peak (polars keeps what it freed): a small file stays in memory
T = TypeVar("T")
_Part = tuple[pl.DataFrame | tuple[int, int], T]  # a frame held, or where it is in the file; its payload


class Spool(Generic[T]):
    """Frames (each with a payload, such as its malformed lines) in order, replayed once."""

    def __init__(self) -> None:
        self._parts: list[_Part[T]] = []
        self._in_memory = 0
        self._file: IO[bytes] | None = None

    def add(self, frame: pl.DataFrame, payload: T) -> None:
        size = int(frame.estimated_size())
        if self._file is None and self._in_memory + size <= MEMORY_BYTES:
            self._parts.append((frame, payload))
            self._in_memory += size
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="bulksync-spool-")  # noqa: SIM115 (closed by replay)
        buffer = io.BytesIO()
        frame.write_ipc(buffer, compression="lz4")
        offset = self._file.seek(0, io.SEEK_END)
        self._file.write(buffer.getbuffer())
        self._parts.append(((offset, buffer.tell()), payload))

    def replay(self) -> Iterator[tuple[pl.DataFrame, T]]:
        """Each frame with its payload, in the order added; the temporary file is gone after the last
        (or when the iterator is dropped unfinished)."""
        parts, spill = self._parts, self._file
        self._parts, self._file = [], None
        replay = _replay(parts, spill)
        if spill is not None:
            weakref.finalize(replay, spill.close)
        return replay


def _replay(parts: list[_Part[T]], spill: IO[bytes] | None) -> Iterator[tuple[pl.DataFrame, T]]:
    try:
        while parts:
            held, payload = parts.pop(0)
            if isinstance(held, pl.DataFrame):
                yield held, payload
                continue
            assert spill is not None
            offset, size = held
            spill.seek(offset)
            yield pl.read_ipc(io.BytesIO(spill.read(size))), payload
    finally:
        if spill is not None:
            spill.close()
