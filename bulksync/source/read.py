"""Stream a source (CSV, TSV or JSONL, gzipped or not, or Parquet) as polars frames of text columns.

Every value stays text here (``02134`` stays ``02134``); types are decided by ``normalise``. Each
record keeps its 1-based position in the source in the ``ROW`` column so that every later message
can point at it. A source is a local file, standard input (``-``) or a URL (``location``); its bytes
are read in blocks (``streams``), decoded to UTF-8 with ``\\n`` line ends, and handed to the reader
of its kind: ``csv_reader`` or ``jsonl_reader``, each in batches, so that a source of any size passes
through a bounded amount of memory. Parquet is read by polars, a row group at a time (``parquet_reader``).
"""

from __future__ import annotations

import codecs
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from pathlib import Path

import polars as pl

from bulksync.errors import InputError
from bulksync.source.batch import Source, SourceStream
from bulksync.source.csv_reader import open_csv
from bulksync.source.jsonl_reader import open_jsonl
from bulksync.source.location import Location, SourcePath, locate, source_format
from bulksync.source.streams import source_blocks
from bulksync.source.text import undecodable

BLOCK_BYTES = 8 << 20  # read from disk, a pipe, the network (or gzip) this much at a time
StorageOptions = Mapping[str, str] | Iterable[tuple[str, str]] | None


def read_source(
    source: Path | str | Location, encoding: str = "utf-8", delimiter: str | None = None, *,
    fmt: str | None = None, storage_options: StorageOptions = None,
) -> Source:
    """The whole of ``source`` as one Source (for a caller that wants every row at once)."""
    return open_source(source, encoding, delimiter, fmt=fmt, storage_options=storage_options).consume(_whole)


def _whole(stream: SourceStream) -> Source:
    parts = list(stream.batches)
    return Source(
        path=stream.header.path,
        frame=pl.concat([part.frame for part in parts]) if len(parts) > 1 else parts[0].frame,
        kinds=stream.header.kinds,
        malformed=[record for part in parts for record in part.malformed],
        header_lines=stream.header.header_lines,
        may_hold_nul=any(part.may_hold_nul for part in parts),
    )


def open_source(
    source: Path | str | Location, encoding: str = "utf-8", delimiter: str | None = None, *,
    fmt: str | None = None, storage_options: StorageOptions = None,
) -> SourceStream:
    """Open ``source``: a path, ``-`` for standard input, or a URL (s3://, gs://, az://, https://).

    The format is ``fmt`` (``--format``) or the name's extension: .csv, .tsv or .jsonl/.ndjson, each
    optionally .gz (gzip is also recognised from the bytes), or .parquet. The header is read and
    checked here (for JSONL: its first batch is parsed); the rows are read as the stream is consumed,
    always through ``SourceStream.consume``. ``storage_options`` are a URL's settings beyond the
    environment (``--storage-option KEY=VALUE``).
    """
    where = locate(source)
    kind, gzipped = source_format(where, fmt)
    options = dict(storage_options or {})
    if kind == "parquet":
        if gzipped:
            raise InputError(f"{where}: a Parquet file is compressed inside; give it without .gz")
        from bulksync.source.parquet_reader import open_parquet  # noqa: PLC0415 (loaded for Parquet only)

        return open_parquet(where, options)
    streamed = isinstance(where, Location) and where.kind == "stdin"  # read once: a cut-short end fails the run
    again = _unchanged_file(where, lambda: _utf8_blocks(where, source_blocks(where, BLOCK_BYTES, gzipped=gzipped),
                                                        encoding))
    blocks = _utf8_blocks(where, source_blocks(where, BLOCK_BYTES, gzipped=gzipped, storage_options=options),
                          encoding)
    if kind == "jsonl":
        return open_jsonl(where, blocks, streamed=streamed, again=again)
    return open_csv(where, blocks, delimiter or ("\t" if kind == "tsv" else None), streamed=streamed)


def _unchanged_file(where: SourcePath, read: Callable[[], Iterator[bytes]]) -> Callable[[], Iterator[bytes]] | None:
    """``read`` once more, for a local regular file that has not changed since now (a JSONL source that
    starts over reads it twice); None for anything that reads once (a pipe, a FIFO, a URL)."""
    if not isinstance(where, Path):
        return None
    try:
        before = where.stat()
    except OSError:
        return None  # the first read says why
    if not stat.S_ISREG(before.st_mode):
        return None

    def again() -> Iterator[bytes]:
        try:
            now = where.stat()
        except OSError as exc:
            raise InputError(f"{where}: cannot be read again ({exc.strerror}); check the file is complete") from None
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
            raise InputError(f"{where}: changed while it was read; run again once the export is complete")
        return read()

    return again


def _utf8_blocks(path: SourcePath, blocks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """The source as UTF-8 blocks without a BOM and with ``\\n`` line ends (universal newlines).

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
    raw_blocks = chain(blocks, [b""])  # the empty block flushes the decoder
    for number, raw in enumerate(raw_blocks):
        data = raw
        if decoder is not None:
            try:
                data = decoder.decode(raw, final=not raw).encode("utf-8")
            except UnicodeDecodeError as exc:  # exc.object: the bytes decoded (with any the decoder held back)
                raise undecodable(path, carried + exc.object, len(carried) + exc.start, encoding, lines) from None
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

