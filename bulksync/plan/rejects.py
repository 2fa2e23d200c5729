"""Every rejected row of a source, kept small until the report is written.

A file of a million copies of one row, or of one invalid row, must not cost memory per row:

- a batch's invalid rows (``ROW``, ``KEY``, ``REASON``) go to a :class:`Spool` (in memory up to a
  size, then a temporary file); the plan keeps only their count, how many had no key (unreadable:
  they stop deletions) and where their keys are in the state (those contacts are never missing);
- a duplicate is its row number and its winner's (8 bytes); its key (its winner's) and its reason
  are worded only when the report is written, a chunk at a time;
- a row that lost the other identifier keeps its key and that value: at most one per contact.

The report reads them back once, in row order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl

from bulksync.columns import KEY, REASON, ROW, STATE_ROW
from bulksync.config import KeyField
from bulksync.plan.index import StateIndex, kept_positions
from bulksync.plan.normalise import OTHER, WINNER, duplicate_lines, shared_lines
from bulksync.source.spool import Spool

CHUNK_ROWS = 100_000  # rejects worded at a time for the report
KeyOf = Callable[[pl.Series], pl.Series]  # the KEY of each winning ROW given (null where it is no contact)
_FINAL = "__final"
_NO_DUPLICATES = pl.DataFrame(schema={ROW: pl.UInt32, WINNER: pl.UInt32})
_NO_SHARED = pl.DataFrame(schema={ROW: pl.UInt32, WINNER: pl.UInt32, KEY: pl.String, OTHER: pl.String})


def _no_keys(winners: pl.Series) -> pl.Series:
    return pl.Series(KEY, [None] * winners.len(), dtype=pl.String)


class Rejects:
    """The rejected rows of one source: counted as they are found, worded when they are read.
    Batches come in row order, so each kind of reject is in row order without a sort of the whole."""

    def __init__(self, key: KeyField, index: StateIndex | None = None) -> None:
        self._key = key
        self._index = index
        self._invalid: Spool[None] = Spool()
        self._beaten: list[pl.DataFrame] = []  # ROW, WINNER per batch: a later row of the batch won
        self._duplicates = _NO_DUPLICATES  # ROW, WINNER: a later batch's row won (the file's last)
        self._shared = _NO_SHARED
        self._kept: list[pl.Series] = []
        self._key_of: KeyOf = _no_keys
        self._read = False
        self.invalid = 0
        self.unreadable = 0  # rejected rows with no key: whose contact they are is unknown

    @property
    def height(self) -> int:
        """How many rows were rejected."""
        beaten = sum(frame.height for frame in self._beaten)
        return self.invalid + beaten + self._duplicates.height + self._shared.height

    @property
    def kept(self) -> pl.Series:
        """The state positions of the contacts of rejected rows: still in the source, never missing."""
        return pl.concat([pl.Series(STATE_ROW, [], dtype=pl.UInt32), *self._kept]).unique()

    def add_invalid(self, rejects: pl.DataFrame) -> None:
        """A batch's rows that failed validation (``ROW``, ``KEY``, ``REASON``, in row order)."""
        if not rejects.height:
            return
        self.invalid += rejects.height
        self.unreadable += rejects[KEY].null_count()
        if self._index is not None and self._index.height:
            # The full key: a contact whose row is rejected is never missing (reports shorten it).
            positions = kept_positions(self._index, rejects[KEY].drop_nulls()).drop_nulls()
            if positions.len():
                self._kept.append(positions.unique())
        self._invalid.add(rejects, None)

    def add_beaten(self, beaten: pl.DataFrame) -> None:
        """A batch's rows that a later row of their key in the batch beat (``ROW``, ``WINNER``)."""
        if beaten.height:
            self._beaten.append(_compact(beaten))

    def settle(self, duplicates: pl.DataFrame, shared: pl.DataFrame, key_of: KeyOf) -> None:
        """Take the whole file's :func:`~bulksync.plan.normalise.deduplicate` of the batches' winners.
        ``key_of`` gives the KEY of winning rows, for the report."""
        self._duplicates = _compact(duplicates)
        if STATE_ROW in shared.columns:  # a contact that lost its other identifier is still in the source
            self._kept.append(shared[STATE_ROW].drop_nulls().cast(pl.UInt32))
        self._shared = shared.select(pl.col(ROW).cast(pl.UInt32), pl.col(WINNER).cast(pl.UInt32), KEY, OTHER).sort(ROW)
        self._key_of = key_of

    def frames(self) -> Iterator[pl.DataFrame]:
        """``ROW``, ``KEY``, ``REASON`` of every rejected row in row order, a chunk at a time. Once:
        the invalid rows' spool is gone after it."""
        assert not self._read, "rejects are read once"
        self._read = True
        invalid = (frame for frame, _ in self._invalid.replay())
        beaten = (self._worded(chunk) for frame in self._beaten for chunk in frame.iter_slices(CHUNK_ROWS))
        duplicates = (self._worded(chunk) for chunk in self._duplicates.iter_slices(CHUNK_ROWS))
        shared = (shared_lines(chunk, self._key) for chunk in self._shared.iter_slices(CHUNK_ROWS))
        return _merged(_merged(_merged(invalid, beaten), duplicates), shared)

    def frame(self) -> pl.DataFrame:
        """Every rejected row at once (a small source's; a big one's is read with :meth:`frames`)."""
        return pl.concat([pl.DataFrame(schema={ROW: pl.UInt32, KEY: pl.String, REASON: pl.String}), *self.frames()])

    def _worded(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """The lines of duplicates (``ROW``, ``WINNER``): a batch's winner that a later batch beat
        hands its duplicates on to the file's last row for the key, which the line names with its key."""
        distinct = chunk[WINNER].unique()  # a chunk of copies of one row has one winner
        final = distinct
        if self._duplicates.height:
            final = _at(self._duplicates[ROW], self._duplicates[WINNER], distinct).fill_null(distinct)
        keys = self._key_of(final)
        if self._shared.height:  # a winner that then lost its other identifier is no contact: its key is kept
            keys = keys.fill_null(_at(self._shared[ROW], self._shared[KEY], final))
        named = pl.DataFrame({WINNER: distinct, _FINAL: final, KEY: keys})
        lines = chunk.join(named, on=WINNER, how="left", maintain_order="left")
        return duplicate_lines(lines.select(ROW, pl.col(_FINAL).alias(WINNER), KEY))


def _compact(losers: pl.DataFrame) -> pl.DataFrame:
    """``ROW`` and ``WINNER`` of rejected duplicates, 8 bytes a row, in row order."""
    return losers.select(pl.col(ROW).cast(pl.UInt32), pl.col(WINNER).cast(pl.UInt32)).sort(ROW)


def _at(rows: pl.Series, values: pl.Series, wanted: pl.Series) -> pl.Series:
    """For each of ``wanted``, the value where ``rows`` (sorted) holds it, or null."""
    at = rows.search_sorted(wanted).clip(upper_bound=rows.len() - 1)
    return pl.select(pl.when(rows.gather(at) == wanted).then(values.gather(at))).to_series()


def _merged(left: Iterator[pl.DataFrame], right: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """Two streams of frames, each in ``ROW`` order, as one: each step ends one frame of either."""
    lefts, rights = (frame for frame in left if frame.height), (frame for frame in right if frame.height)
    a, b = next(lefts, None), next(rights, None)
    while a is not None and b is not None:
        bound = min(a[ROW][-1], b[ROW][-1])
        cut_a, cut_b = _cut(a, bound), _cut(b, bound)
        yield pl.concat([a.head(cut_a), b.head(cut_b)]).sort(ROW)
        a = a.slice(cut_a) if cut_a < a.height else next(lefts, None)
        b = b.slice(cut_b) if cut_b < b.height else next(rights, None)
    for rest, more in ((a, lefts), (b, rights)):
        if rest is not None:
            yield rest
            yield from more


def _cut(frame: pl.DataFrame, bound: int) -> int:
    """How many of ``frame``'s rows are at or before row ``bound``."""
    return int(frame[ROW].search_sorted(bound, side="right"))
