"""A batch at a time: read, map, check and hash each batch of the source and mark it
against the state as it passes, so that memory holds one batch of the file's text, never all of it.

What a batch leaves behind: a slim frame of its valid rows (row number, key, the other identifier,
where the contact is in the state, whether it changed), the full rows of those that are new or
changed, and its rejected rows, kept small (``plan/rejects.py``). Within a batch the last row of a
key wins at once, so a file of one row a million times leaves one row a batch; which of the
batches' rows for one contact wins needs the whole file, so that de-duplication runs on the slim
frame at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import polars as pl

from bulksync.columns import KEY, KEY_HASH, ROW, STATE_ROW, STATUS
from bulksync.config import KeyField
from bulksync.errors import Interrupted
from bulksync.plan.diff import UNCHANGED, mark
from bulksync.plan.fingerprint import with_fingerprint
from bulksync.plan.index import StateIndex
from bulksync.plan.normalise import deduplicate, keep_last, other_identifier, validate
from bulksync.plan.rejects import Rejects
from bulksync.source.batch import Source, SourceStream


@dataclass
class Scanned:
    """A source read against the state."""

    contacts: pl.DataFrame  # one slim row per contact (its key's last row): ROW, KEY_HASH, STATE_ROW, STATUS
    rows: pl.DataFrame  # the full rows (with HASH) of new or changed contacts: a superset of what is sent
    rejects: Rejects
    types: dict[str, str]
    fields: list[str]
    index: StateIndex
    header_line: int  # the source's line naming the columns

    def keys(self, contacts: pl.DataFrame) -> pl.Series:
        """The KEY of some of ``contacts``: the slim rows keep no text (a million keys are ~40 MB)."""
        return key_text(contacts, self.index, self.rows)


def key_text(contacts: pl.DataFrame, index: StateIndex, rows: pl.DataFrame) -> pl.Series:
    """Each slim row's KEY: a contact the state holds has the index's key (matched exactly when
    the row was marked); any other row is new, so its full row, with its key, was kept in ``rows``."""
    kept = contacts.select(ROW).join(rows.select(ROW, KEY), on=ROW, how="left", maintain_order="left")[KEY]
    if not index.height:
        return kept
    known = index.frame[KEY].gather(contacts[STATE_ROW].fill_null(0))
    return pl.select(pl.when(contacts[STATE_ROW].is_not_null()).then(known).otherwise(kept).alias(KEY)).to_series()


def scan(
    stream: SourceStream,
    key: KeyField,
    index: StateIndex,
    mapped: Callable[[Source], Source] = lambda source: source,
    recheck: pl.Series | None = None,
    *,
    stopping: Callable[[], bool] = lambda: False,
) -> Scanned:
    """Every batch of ``stream`` mapped, validated, hashed and marked against ``index``; ``stopping``
    (a signal) is asked between batches: a 10M-row source takes half a minute to read."""
    other = other_identifier(key)
    slims: list[pl.DataFrame] = []
    changed: list[pl.DataFrame] = []
    rejects = Rejects(key, index)
    types: dict[str, str] = {}
    fields: dict[str, None] = {}  # ordered: the first batch's order, then any field a later batch adds
    for batch in prefetched(stream.batches):
        if stopping():
            raise Interrupted("stopped while the source was read: nothing was sent")
        checked = validate(mapped(batch), key)
        rejects.add_invalid(checked.rejects)
        marked = mark(with_fingerprint(checked.frame, checked.fields, checked.types), index, recheck)
        marked, beaten = keep_last(marked, KEY)  # a later row of the batch wins: these can never be sent
        rejects.add_beaten(beaten)
        slims.append(marked.select(ROW, KEY_HASH, *([other] if other in marked.columns else []), STATE_ROW, STATUS))
        changed.append(marked.filter(pl.col(STATUS) != UNCHANGED))
        types.update(checked.types)
        fields.update(dict.fromkeys(checked.fields))
    rows = pl.concat(changed, how="diagonal")
    contacts, duplicates, shared = deduplicate(
        pl.concat(slims, how="diagonal", rechunk=False), key, lambda some: key_text(some, index, rows)
    )
    if duplicates.height or shared.height:  # the full rows of rows beaten in a later batch are never sent
        rows = rows.filter(pl.col(ROW).is_in(contacts[ROW].implode()))
    rejects.settle(duplicates, shared, lambda winners: key_text(slim_rows(contacts, winners), index, rows))
    return Scanned(
        contacts=contacts,
        rows=rows,
        rejects=rejects,
        types=types,
        fields=list(fields),
        index=index,
        header_line=stream.header.header_line,
    )


def slim_rows(contacts: pl.DataFrame, wanted: pl.Series) -> pl.DataFrame:
    """The slim rows of ``contacts`` at the ``wanted`` row numbers, in that order (null where none is)."""
    picked = wanted.cast(contacts.schema[ROW]).alias(ROW).to_frame()
    return picked.join(contacts.select(ROW, STATE_ROW), on=ROW, how="left", maintain_order="left")


T = TypeVar("T")


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one made in a background thread while the caller works on the last:
    reading and parsing the next batch (polars, outside the GIL) overlaps checking this one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulksync-read") as reader:
        ahead = reader.submit(next, items, None)
        while (item := ahead.result()) is not None:
            ahead = reader.submit(next, items, None)
            yield item
