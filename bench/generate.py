"""Synthetic contact files: N rows, M custom columns, and a later version with chosen shares of
changed, new and missing rows, so a plan has creates, updates, deletes and unchanged rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

PLANS = ["free", "pro", "team", "enterprise"]


@dataclass(frozen=True)
class Shape:
    rows: int
    custom_columns: int = 4
    changed: float = 0.01
    new: float = 0.0
    missing: float = 0.0
    seed: int = 42


def contacts(start: int, count: int, custom_columns: int) -> pl.DataFrame:
    """Rows ``start`` .. ``start + count - 1``, deterministic from the row number alone."""
    index = pl.int_range(start, start + count, dtype=pl.Int64, eager=True).alias("i")
    frame = pl.DataFrame(index)
    i = pl.col("i")
    columns = [
        pl.format("user{}@example.com", i).alias("email"),
        pl.format("First{}", i).alias("firstName"),
        pl.format("Last{}", i % 9973).alias("lastName"),
        pl.format("u{}", i).alias("userId"),
        pl.when(i % 17 == 0).then(pl.lit("false")).otherwise(pl.lit("true")).alias("subscribed"),
    ]
    for n in range(custom_columns):
        if n % 2 == 0:
            columns.append(pl.lit(PLANS).list.get(i % len(PLANS)).alias(f"prop{n}"))
        else:
            columns.append(pl.format("{}", (i * 7919 + n) % 100_000).str.zfill(5).alias(f"prop{n}"))
    return frame.select(columns)


def versions(shape: Shape) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(previous, current): current changes ``changed`` of the rows, adds ``new``, drops ``missing``."""
    previous = contacts(0, shape.rows, shape.custom_columns)
    n_changed = int(shape.rows * shape.changed)
    n_missing = int(shape.rows * shape.missing)
    n_new = int(shape.rows * shape.new)
    # Changed rows are spread through the file (every k-th row), missing ones come from the end.
    step = max(1, shape.rows // max(1, n_changed)) if n_changed else 0
    current = previous.with_row_index("__n")
    if n_changed:
        hit = (pl.col("__n") % step == 0) & (pl.col("__n") < step * n_changed)
        current = current.with_columns(
            pl.when(hit).then(pl.format("{}-changed", pl.col("firstName"))).otherwise(pl.col("firstName"))
            .alias("firstName")
        )
    current = current.head(shape.rows - n_missing).drop("__n")
    if n_new:
        current = pl.concat([current, contacts(shape.rows, n_new, shape.custom_columns)])
    return previous, current


def write(frame: pl.DataFrame, path: Path) -> Path:
    """``frame`` as CSV, or as JSONL for a ``.jsonl`` path (the same rows, each value a JSON string)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        frame.write_ndjson(path)
    else:
        frame.write_csv(path)
    return path
