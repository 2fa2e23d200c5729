"""A stable content hash per row, so "has this contact changed?" is one integer comparison.

The canonical form is the row's non-empty fields in name order, each as ``name:type:length:value``
(length-prefixed, so no value can fake a boundary). xxhash64 of that text is fixed by its
specification, unlike polars' own ``hash``, which may change between releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl
import polars_hash as plh

HASH = "__hash"


def fingerprint(fields: Iterable[str], types: Mapping[str, str]) -> pl.Expr:
    """Expression giving each row's content hash as a signed 64-bit integer (SQLite's integer)."""
    parts = [
        pl.when(pl.col(name).is_not_null())
        .then(
            pl.concat_str(
                pl.lit(f"{name}:{types.get(name, 'string')}:"),
                pl.col(name).str.len_bytes().cast(pl.String),
                pl.lit(":"),
                pl.col(name),
            )
        )
        .otherwise(pl.lit(""))
        for name in sorted(fields)
    ]
    if not parts:
        parts = [pl.lit("")]
    return plh.concat_str(parts).nchash.xxhash64().reinterpret(signed=True).alias(HASH)
