"""Parts kept in order and read back once: in memory up to ``MEMORY_BYTES``, the rest in an unnamed
temporary file that the system deletes when it is closed or the process ends, kill -9 included.

``Spool`` keeps frames (as Arrow IPC, lz4, once on disk), such as a source's rejected rows;
``ByteSpool`` keeps bytes as they are, such as the JSONL reader's batches of lines, parsed again
only if the reader must start over.
"""

from __future__ import annotations

import io
import tempfile
import weakref
from collections.abc import Iterator
from typing import IO, Generic, TypeVar

import polars as pl

MEMORY_BYTES = 32 << 20  # held parts add to the peak (polars keeps what it freed): a small file stays in memory
T = TypeVar("T")
Item = TypeVar("Item")
_Part = tuple[Item | tuple[int, int], T]  # an item held, or where it is in the file; its payload


class _Store(Generic[Item, T]):
    """Items (each with a payload) in order, replayed once; how an item is written and read is the subclass's."""

    def __init__(self) -> None:
        self._parts: list[_Part[Item, T]] = []
        self._in_memory = 0
        self._file: IO[bytes] | None = None

    def _keep(self, item: Item, size: int, payload: T) -> None:
        if self._file is None and self._in_memory + size <= MEMORY_BYTES:
            self._parts.append((item, payload))
            self._in_memory += size
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="bulksync-spool-")  # noqa: SIM115 (closed by replay)
            weakref.finalize(self, self._file.close)  # or with the spool, when it is never replayed
        data = self._encode(item)
        offset = self._file.seek(0, io.SEEK_END)
        self._file.write(data)
        self._parts.append(((offset, len(data)), payload))

    def _encode(self, item: Item) -> bytes | memoryview:
        raise NotImplementedError

    def _decode(self, data: bytes) -> Item:
        raise NotImplementedError

    def discard(self) -> None:
        """Let go of every part, and of the temporary file, unreplayed."""
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None

    def replay(self) -> Iterator[tuple[Item, T]]:
        """Each item with its payload, in the order added; the temporary file is gone after the last
        (or when the iterator is dropped unfinished)."""
        parts, spill = self._parts, self._file
        self._parts, self._file = [], None
        replay = self._replay(parts, spill)
        if spill is not None:
            weakref.finalize(replay, spill.close)
        return replay

    def _replay(self, parts: list[_Part[Item, T]], spill: IO[bytes] | None) -> Iterator[tuple[Item, T]]:
        try:
            while parts:
                held, payload = parts.pop(0)
                if not isinstance(held, tuple):
                    yield held, payload
                    continue
                assert spill is not None
                offset, size = held
                spill.seek(offset)
                yield self._decode(spill.read(size)), payload
        finally:
            if spill is not None:
                spill.close()


class Spool(_Store[pl.DataFrame, T]):
    """Frames (each with a payload, such as its malformed lines) in order, replayed once."""

    def add(self, frame: pl.DataFrame, payload: T) -> None:
        self._keep(frame, int(frame.estimated_size()), payload)

    def _encode(self, item: pl.DataFrame) -> memoryview:
        buffer = io.BytesIO()
        item.write_ipc(buffer, compression="lz4")
        return buffer.getbuffer()

    def _decode(self, data: bytes) -> pl.DataFrame:
        return pl.read_ipc(io.BytesIO(data))


class ByteSpool(_Store[bytes, T]):
    """Byte strings (each with a payload) in order, replayed once: written as they are, in a moment."""

    def add(self, data: bytes, payload: T) -> None:
        self._keep(data, len(data), payload)

    def _encode(self, item: bytes) -> bytes:
        return item

    def _decode(self, data: bytes) -> bytes:
        return data
