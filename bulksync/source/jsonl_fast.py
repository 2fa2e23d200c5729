"""The fast path for a batch of JSONL: polars parses it, when its reading can be shown, by counting
bytes, to be what the line-by-line parser (``jsonl_reader``) would make of it.

Taken only for a batch without an escaped quote (``\\"``) or a space before a key's colon, where
every ``"`` delimits a string and every key ends with ``":``, so that these counts are exact:

- every key was read, none dropped and none repeated: the ``":`` equal the values polars holds plus
  the explicit nulls (``":null``);
- no number or array was turned into text: the strings (the ``"`` over two, less the keys) equal
  the values of polars' text columns;
- every column is text, an integer, a boolean or null (a float's or an array's canonical text is
  Python's to write), every line an object, none blank, no name reserved or unprintable, and no
  ``\\uD800``-``\\uDFFF`` escape (polars reads a lone surrogate as something else).

Anything else returns None, and the batch is parsed line by line, which names every bad line. One
difference is left: a key repeated with a null for one of its values (``{"a": 1, "a": null}``) keeps
its first value here, where the line-by-line parser rejects the line.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from bulksync.columns import ROW
from bulksync.source.batch import ValueKind

_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SPACED_COLON = re.compile(rb'"[ \t]+:')
INFER_LINES = 1000  # polars infers the types from this many lines; a later line that differs fails the read
_KINDS: dict[pl.DataType, ValueKind] = {
    pl.String(): "string", pl.Int64(): "number", pl.Int128(): "number", pl.UInt64(): "number",
    pl.Boolean(): "boolean",
}
Parsed = tuple[pl.DataFrame, dict[str, set[ValueKind]], list[tuple[int, str]]]


def parse(data: bytes, lines_before: int, lines: int) -> Parsed | None:
    """The batch's rows as text (``ROW`` its line numbers), the kinds seen, and no malformed line; or
    None when polars' reading cannot be shown to be exact."""
    if b"\\" in data and (b'\\"' in data or (b"\\u" in data and _SURROGATE.search(data))):
        return None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulksync-jsonl") as reader:
        reading = reader.submit(_read, data, INFER_LINES)  # polars lets go of the GIL: count meanwhile
        counts = _Counts.of(data)
        # ``"key" :`` would hide from the count; a colon after no quote (a time, a URL) may be one.
        spaced = data.count(b":") > counts.keys and (b'" ' in data or b'"\t' in data) and _SPACED_COLON.search(data)
        first = reading.result()
    if spaced:
        return None
    parsed = _checked(first, counts, lines_before, lines) if first is not None else None
    if parsed is None:  # typed from the first lines; a key first seen later, or a type changing, needs them all
        every = _read(data, None)
        parsed = _checked(every, counts, lines_before, lines) if every is not None else None
    return parsed


@dataclass(frozen=True)
class _Counts:
    """What the bytes hold, exactly when no quote is escaped: keys (``":``) and quotes."""

    data: bytes
    keys: int
    quotes: int

    @classmethod
    def of(cls, data: bytes) -> _Counts:
        return cls(data, data.count(b'":'), data.count(b'"'))

    def every_key_read(self, values: int) -> bool:
        """Whether polars' ``values`` (not null) account for every key: the keys beyond them must all
        be explicit nulls (counted only when there are such keys: most batches have none)."""
        beyond = self.keys - values
        return beyond == 0 or (beyond > 0 and beyond == self.data.count(b'":null') + self.data.count(b'": null'))


def _checked(frame: pl.DataFrame, counts: _Counts, lines_before: int, lines: int) -> Parsed | None:
    if frame.height != lines:  # polars skips blank lines: the line numbers would slip
        return None
    schema = frame.schema
    if any(dtype not in _KINDS and dtype != pl.Null for dtype in schema.values()):
        return None
    if any(name.startswith("__") or not name.isprintable() for name in schema):
        return None
    present = dict(zip(frame.columns, frame.count().row(0), strict=True))
    strings = sum(present[name] for name, dtype in schema.items() if dtype == pl.String)
    if not counts.every_key_read(sum(present.values())) or counts.quotes // 2 - counts.keys != strings:
        return None
    text = frame.select(
        pl.int_range(lines_before + 1, lines_before + 1 + lines, dtype=pl.UInt32).alias(ROW),
        *(pl.col(name).cast(pl.String) for name in schema),
    )
    kinds = {name: {_KINDS[dtype]} for name, dtype in schema.items() if dtype != pl.Null and present[name]}
    return text, kinds, []


def _read(data: bytes, infer: int | None) -> pl.DataFrame | None:
    """The batch as polars reads it, typed from ``infer`` lines (None: all); None if polars refuses it."""
    try:
        return pl.read_ndjson(data, infer_schema_length=infer)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # any refusal, a panic included: the line-by-line parser names the line
        return None
