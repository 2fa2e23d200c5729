"""Stream a CSV or JSONL file (optionally gzipped) as polars frames of text columns.

Every value stays text here (``02134`` stays ``02134``); types are decided by ``normalise``. Each
record keeps its 1-based position in the source in the ``ROW`` column so that every later message
can point at it. The file is read in blocks, decoded to UTF-8 with ``\\n`` line ends, and handed to
the reader of its kind: ``csv_reader`` (in batches, so a file of any size passes through a bounded
amount of memory) or ``jsonl_reader``.
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import polars as pl

from bulksync.errors import InputError
from bulksync.source.batch import Source, SourceStream
from bulksync.source.csv_reader import open_csv
from bulksync.source.jsonl_reader import open_jsonl
from bulksync.source.text import undecodable

BLOCK_BYTES = 8 << 20  # read from disk (or gzip) this much at a time


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
        return open_jsonl(path, blocks)
    return open_csv(path, blocks, delimiter or ("\t" if fmt == ".tsv" else None))


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

