"""A source's bytes, a block at a time, from a local file, standard input or a URL, gunzipped when
they are gzip (told by the first two bytes, or a ``.gz`` name).

Every failure to read is an :class:`InputError` naming the source, raised while the blocks are
read: a sync reads the whole source before it sends anything, so a download that breaks off, or a
gzip stream without its end, stops the run with nothing sent and nothing deleted.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator, Mapping
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from bulksync.errors import InputError
from bulksync.source.location import Location, SourcePath

GZIP_MAGIC = b"\x1f\x8b"
COMPRESSED_BLOCK = 1 << 20


def source_blocks(
    where: SourcePath, block_bytes: int, *, gzipped: bool = False, storage_options: Mapping[str, str] | None = None
) -> Iterator[bytes]:
    """The source's bytes in blocks of about ``block_bytes``, gunzipped if they are gzip."""
    # Compressed bytes are read a MB at a time: each block is held until gzip has expanded all of it.
    raw = _raw_blocks(where, min(block_bytes, COMPRESSED_BLOCK) if gzipped else block_bytes, storage_options or {})
    head, raw = _head(raw)
    if not (gzipped or head.startswith(GZIP_MAGIC)):
        return raw
    return _gunzipped(where, raw, block_bytes)


def _raw_blocks(where: SourcePath, block_bytes: int, storage_options: Mapping[str, str]) -> Iterator[bytes]:
    if isinstance(where, Path):
        return _file_blocks(where, block_bytes)
    if where.kind == "stdin":
        return _stdin_blocks(where, block_bytes)
    from bulksync.source.remote import url_blocks  # noqa: PLC0415 (obstore loads only for a URL)

    return url_blocks(where, block_bytes, storage_options)


def _file_blocks(path: Path, block_bytes: int) -> Iterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while block := fh.read(block_bytes):
                yield block
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the SOURCE path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; SOURCE must be a .csv or .jsonl file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc}); check the file is complete") from None


def _stdin_blocks(where: Location, block_bytes: int) -> Iterator[bytes]:
    if sys.stdin is None:  # started without one (a service, a job with stdin closed)
        raise InputError(f"{where}: there is no standard input to read; pipe the export in, or give a file or URL")
    stream: BinaryIO = sys.stdin.buffer
    try:
        while block := stream.read(block_bytes):
            yield block
    except OSError as exc:
        raise InputError(f"{where}: standard input cannot be read ({exc}); nothing was sent") from None


def _head(blocks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first two bytes (fewer only at the end of the source), and all the blocks again."""
    read: list[bytes] = []
    size = 0
    for block in blocks:
        read.append(block)
        size += len(block)
        if size >= len(GZIP_MAGIC):
            break
    return b"".join(read)[: len(GZIP_MAGIC)], chain(read, blocks)


class _BlockReader(io.RawIOBase):
    """An iterator of byte blocks as a readable file, for ``gzip.GzipFile``."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = memoryview(block)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _gunzipped(where: SourcePath, blocks: Iterator[bytes], block_bytes: int) -> Iterator[bytes]:
    """The gunzipped bytes (any number of concatenated members); a stream cut short is an InputError."""
    complete = "check the file is complete" if isinstance(where, Path) else "nothing was sent"
    try:
        with gzip.GzipFile(fileobj=io.BufferedReader(_BlockReader(blocks)), mode="rb") as fh:
            while block := fh.read(block_bytes):
                yield block
    except (OSError, EOFError, zlib.error) as exc:  # not gzip after all, a bad CRC, or its end is missing
        raise InputError(f"{where}: cannot be read ({exc}); {complete}") from None
