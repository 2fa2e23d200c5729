"""What every reader makes: a ``Source`` (rows as text, with their record numbers) per batch, in a ``SourceStream``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import InputError
from bulksync.source.location import SourcePath

# The kinds a JSONL value can have; CSV values are all "string".
ValueKind = str


@dataclass
class Source:
    """What the reader found: rows as text, the kind of each column, and records it could not parse."""

    path: SourcePath
    frame: pl.DataFrame
    kinds: dict[str, ValueKind] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    header_lines: int = 0
    rejects: pl.DataFrame | None = None  # rows a mapping refused ("__row", "__reason"), already out of frame
    may_hold_nul: bool = True  # False when the file has no NUL byte: normalise then skips that check

    def line_of(self, row: int) -> int:
        """The line a record starts on, assuming no quoted line breaks before it."""
        return row + self.header_lines

    @property
    def header_line(self) -> int:
        """The line that names the columns (blank lines may come before it); 1 for JSONL."""
        return max(self.header_lines, 1)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]

    def cleared(self) -> Source:
        """The same source without its rows: what a stream's header is."""
        return Source(path=self.path, frame=self.frame.clear(), kinds=dict(self.kinds), header_lines=self.header_lines,
                      may_hold_nul=self.may_hold_nul)


@dataclass
class SourceStream:
    """An opened source: its columns (``header``, a Source without rows) and then its rows, batch by batch.

    ``batches`` yields at least one Source; each has the header's columns and the next records.
    """

    header: Source
    batches: Iterator[Source]


def check_column_names(where: str, names: Iterable[str]) -> None:
    """Every column named, none twice, none reserved (``__``); ``where`` is ``source:line`` for messages."""
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputError(f"{where}: the header has an empty column name; name every column")
        if name.startswith("__"):
            raise InputError(f"{where}: column name {name!r} is reserved (starts with __); rename it")
        if name in seen:
            raise InputError(f"{where}: column {name!r} appears twice in the header; rename or drop one")
        seen.add(name)
