"""What every reader makes: a ``Source`` (rows as text, with their record numbers) per batch, in a ``SourceStream``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import ConfigError, InputError
from bulksync.source.location import SourcePath

# The kinds a JSONL value can have; CSV values are all "string".
ValueKind = str
# The kinds that give a field their own type (plan.normalise); any other kind, or none, is text.
TYPED_KINDS = frozenset({"number", "boolean", "date"})
T = TypeVar("T")


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

    ``batches`` yields at least one Source; each has the header's columns and the next records. Read
    it through ``consume``, never directly: a JSONL stream may have to start over.
    """

    header: Source
    batches: Iterator[Source]
    # A stream whose header is only what its first batch showed (JSONL): reads the rest of the source and
    # returns the stream to start over with when a later batch changed the header, else None.
    settle: Callable[[], SourceStream | None] | None = None

    def consume(self, use: Callable[[SourceStream], T]) -> T:
        """``use(stream)``: what every consumer of a source calls, instead of reading ``batches`` itself.

        A JSONL stream hands on each batch as soon as it is parsed, under the header of its first batch;
        if a later batch adds a column or changes a column's type, its batches raise
        :class:`HeaderChanged` and ``use`` starts over with the whole source's header, every batch
        replayed. So ``use`` must send and write nothing it could not do again before it has read every
        batch (reading the account from Loops is fine). When ``use`` fails before the source is settled,
        the rest is read first: an error of the source's own (a cut-short stream, a line too long) comes
        first, as when the whole source was read before anything else, and an error that only the first
        batch's header made (a column it lacks) is not raised. Any other failure (the key, the state,
        a signal) is raised at once. CSV and Parquet never start over.
        """
        if self.settle is None:
            return use(self)
        try:
            result = use(self)
        except (HeaderChanged, InputError, ConfigError):  # what the first batch's header may have caused
            again = self.settle()
            if again is None:
                raise
            return again.consume(use)
        again = self.settle()
        return result if again is None else again.consume(use)


class HeaderChanged(Exception):
    """A batch changed the header its consumer was given; only ``SourceStream.consume`` sees it."""


def same_types(given: Source, whole: Source) -> bool:
    """Whether ``whole`` (the source read further) has the columns of ``given`` and types each as it did."""
    return whole.columns == given.columns and all(
        kind_type(given.kinds.get(name)) == kind_type(whole.kinds.get(name)) for name in whole.columns)


def kind_type(kind: ValueKind | None) -> str:
    """The field type a column of this kind gets when nothing else (a standard field, the account)
    decides it: number, boolean and date keep their own, anything else is text."""
    return kind if kind in TYPED_KINDS else "string"


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
