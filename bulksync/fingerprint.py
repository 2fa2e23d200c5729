"""A stable content hash per row, so "has this contact changed?" is one integer comparison.

The canonical form of a row is its field values in field-name order, joined by NUL, with an
absent value as the empty string. That is unambiguous because ``normalise`` turns empty cells
into absent values and rejects values holding NUL. The field names and types, the same for every
row, are folded in through the hash seed. xxhash64 is fixed by its specification, unlike polars'
own ``hash``, which may change between releases, so stored hashes survive upgrades.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import polars as pl
import polars_hash as plh

HASH = "__hash"
_CANONICAL = "__canonical"


def schema_seed(fields: Iterable[str], types: Mapping[str, str]) -> int:
    """A 64-bit seed naming the fields and their types, in order."""
    signature = "\x00".join(f"{name}\x1f{types.get(name, 'string')}" for name in sorted(fields))
    return int.from_bytes(hashlib.blake2b(signature.encode(), digest_size=8).digest(), "big")


def with_fingerprint(frame: pl.DataFrame, fields: Iterable[str], types: Mapping[str, str]) -> pl.DataFrame:
    """``frame`` plus a ``HASH`` column: each row's content hash as a signed 64-bit integer."""
    names = sorted(fields)
    canonical = pl.concat_str([pl.col(name).fill_null("") for name in names] or [pl.lit("")], separator="\x00")
    return (
        frame.with_columns(canonical.alias(_CANONICAL))
        .with_columns(
            plh.col(_CANONICAL).nchash.xxhash64(seed=schema_seed(names, types)).reinterpret(signed=True).alias(HASH)
        )
        .drop(_CANONICAL)
    )
