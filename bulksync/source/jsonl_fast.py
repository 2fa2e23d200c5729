"""The fast path for a batch of JSONL: polars parses it, when its reading can be shown, by counting
bytes, to be what the line-by-line parser (``jsonl_reader``) would make of it.

Taken only for a batch without an escaped quote (``\\"``), where every ``"`` delimits a string, and
where every colon ends a key or every key ends with ``":`` (no space before its colon), so that these
counts are exact:

- every key was read, none dropped and none repeated: the keys (the colons, when there are as many
  as polars' values, which is then all there is to count; else the ``":``) equal the values polars
  holds plus the explicit nulls (``":null``);
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

import polars as pl

from bulksync.columns import ROW
from bulksync.source.batch import ValueKind

_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SPACED_COLON = re.compile(rb'"[ \t]+:')
_COUNT_BYTES = 4 << 20  # about 2 ms of counting
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
        counts = _Counts(data, _count(data, b":"), _count(data, b'"'))
        first = reading.result()
    parsed = _checked(first, counts, lines_before, lines) if first is not None else None
    if parsed is None:  # typed from the first lines; a key first seen later, or a type changing, needs them all
        every = _read(data, None)
        parsed = _checked(every, counts, lines_before, lines) if every is not None else None
    return parsed


class _Counts:
    """What the bytes hold, exactly when no quote is escaped: colons, quotes, and keys (``":``)."""

    def __init__(self, data: bytes, colons: int, quotes: int) -> None:
        self.data, self.colons, self.quotes = data, colons, quotes
        self._keys: int | None = None  # the ``":``, counted when needed

    def keys(self, frame: pl.DataFrame, values: int) -> int | None:
        """How many keys the batch has, given polars' reading and its ``values`` (not null); None when
        one may hide from the count of ``":`` (``"key" :``)."""
        if self.colons == values:  # as many colons as values, and a key each: the usual plain export
            return values  # (each key has its colon, so there are no more keys, and no colon elsewhere)
        if self._keys is None:
            self._keys = _count(self.data, b'":')
        if self.colons > self._keys and self._spaced(frame, self._keys):
            return None
        return self._keys

    def _spaced(self, frame: pl.DataFrame, keys: int) -> bool:
        """Whether a colon not after a quote (most are in values: a time, a URL) may end a spaced key."""
        if b"\\" not in self.data:  # no escape: a value's colons are the text's, so the rest are keys'
            texts = [pl.col(name).str.count_matches(":", literal=True).sum()
                     for name, dtype in frame.schema.items() if dtype == pl.String]
            in_values = sum(frame.select(texts).row(0)) if texts else 0
            return self.colons != keys + in_values
        return (b" :" in self.data or b"\t:" in self.data) and _SPACED_COLON.search(self.data) is not None

    def every_key_read(self, keys: int, values: int) -> bool:
        """Whether polars' ``values`` (not null) account for every key: the keys beyond them must all
        be explicit nulls (counted only when there are such keys: most batches have none)."""
        beyond = keys - values
        return beyond == 0 or (beyond > 0 and beyond == _count(self.data, b'":null') + _count(self.data, b'": null'))


def _count(data: bytes, sub: bytes) -> int:
    """``data.count(sub)`` (``sub`` never overlapping itself), ``_COUNT_BYTES`` at a time: the GIL is let
    go between them, so that the plan's thread runs on meanwhile."""
    reach = len(sub) - 1  # each match is counted in the slice it starts in
    return sum(data.count(sub, start, start + _COUNT_BYTES + reach) for start in range(0, len(data), _COUNT_BYTES))


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
    values = sum(present.values())
    keys = counts.keys(frame, values)
    if keys is None or not counts.every_key_read(keys, values) or counts.quotes // 2 - keys != strings:
        return None
    text = frame.select(
        pl.int_range(lines_before + 1, lines_before + 1 + lines, dtype=pl.UInt32).alias(ROW),
        *(pl.col(name).cast(pl.String) for name in schema),
    ).rechunk()  # polars reads in many small pieces: whole columns are quicker for every check after
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
