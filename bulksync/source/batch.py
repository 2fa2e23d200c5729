"""What every reader makes: a ``Source`` (rows as text, with their record numbers) per batch, in a ``SourceStream``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bulksync.columns import ROW

# The kinds a JSONL value can have; CSV values are all "string".
ValueKind = str


@dataclass
class Source:
    """What the reader found: rows as text, the kind of each column, and records it could not parse."""

    path: Path
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


@dataclass
class SourceStream:
    """An opened source: its columns (``header``, a Source without rows) and then its rows, batch by batch.

    ``batches`` yields at least one Source; each has the header's columns and the next records.
    """

    header: Source
    batches: Iterator[Source]
