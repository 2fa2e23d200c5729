"""The state's keys as a sorted index, so a batch of source rows finds its contacts by binary search."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import polars as pl
import polars_hash as plh

from bulksync.columns import KEY, KEY_HASH, STATE_HASH, STATE_ROW


def key_hash(column: str = KEY) -> pl.Expr:
    """A 64-bit hash of a key, to find it by number rather than by text."""
    return plh.col(column).nchash.xxhash64()


@dataclass(frozen=True)
class StateIndex:
    """The state's keys and row hashes ordered by key hash: a batch of source rows finds its
    contacts by binary search, without joining (and hashing) the whole state once per batch.

    Matches are checked on the key text too. If two state keys ever share a hash (astronomically
    rare), lookups fall back to a join on the text: slower, never wrong.
    """

    frame: pl.DataFrame  # KEY, STATE_HASH, KEY_HASH; sorted by KEY_HASH
    by_hash: bool

    @classmethod
    def of(cls, state_hashes: pl.DataFrame) -> StateIndex:
        """The index of ``state_hashes`` (KEY, STATE_HASH); a saved index frame is only checked."""
        frame = state_hashes
        if KEY_HASH not in frame.columns:
            frame = frame.with_columns(key_hash().alias(KEY_HASH))
        frame = frame.select(KEY, STATE_HASH, KEY_HASH)
        if not frame[KEY_HASH].is_sorted():
            frame = frame.sort(KEY_HASH)
        frame = frame.rechunk()  # gathering from one chunk is ten times faster than from many
        return cls(frame, by_hash=frame[KEY_HASH].n_unique() == frame.height)

    @property
    def height(self) -> int:
        return self.frame.height

    def positions(self, keys: pl.DataFrame) -> pl.Series:
        """Where each row's ``KEY`` is in the index (``KEY_HASH`` computed), or null where it is not."""
        if self.height == 0:
            return pl.Series(STATE_ROW, [None] * keys.height, dtype=pl.UInt32)
        if not self.by_hash:
            positions = self.frame.select(KEY).with_row_index(STATE_ROW)
            joined = keys.select(KEY).join(positions, on=KEY, how="left", maintain_order="left")
            return joined[STATE_ROW].cast(pl.UInt32)
        hashes = keys[KEY_HASH].rechunk()
        # Binary searches in key-hash order walk the index once instead of jumping about it.
        order = hashes.arg_sort()
        found = self.frame[KEY_HASH].search_sorted(hashes.gather(order), side="left")
        at = pl.zeros(keys.height, pl.UInt32, eager=True).scatter(order, found).clip(upper_bound=self.height - 1)
        match = (self.frame[KEY_HASH].gather(at) == hashes) & (self.frame[KEY].gather(at) == keys[KEY])
        return pl.select(pl.when(match).then(at).otherwise(None).cast(pl.UInt32).alias(STATE_ROW)).to_series()


def kept_positions(index: StateIndex, keys: Iterable[str]) -> pl.Series:
    """The index positions of ``keys`` (for rejected rows: still in the source, so never missing)."""
    frame = pl.DataFrame({KEY: list(keys) if not isinstance(keys, pl.Series) else keys}, schema={KEY: pl.String})
    return index.positions(frame.with_columns(key_hash().alias(KEY_HASH)))


def hashes_after(known: pl.DataFrame, changes: Mapping[str, int | None]) -> pl.DataFrame:
    """``known`` with ``changes`` applied: a key's new hash, or ``None`` for a key forgotten."""
    if not changes:
        return known
    kept = known.filter(~pl.col(KEY).is_in(pl.Series(list(changes), dtype=pl.String).implode()))
    saved = {key: row_hash for key, row_hash in changes.items() if row_hash is not None}
    added = pl.DataFrame(
        {KEY: list(saved), STATE_HASH: list(saved.values())}, schema={KEY: pl.String, STATE_HASH: pl.Int64}
    )
    return pl.concat([kept.select(KEY, STATE_HASH), added])
