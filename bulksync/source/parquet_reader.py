"""Parquet, read by polars (locally, or from a URL through polars' own object store) in batches.

Every value becomes text, as the other readers give it: a string column's ``02134`` stays
``02134``. A column's Parquet type gives its kind, as a JSON value's does for JSONL (integers and
floats: number, booleans, dates and timestamps: date, lists and structs: JSON text); the mapping or
the account's property type still decides how a value is sent. A float that is not finite rejects
its row, as in JSONL. Each row's ``ROW`` is its 1-based position in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.columns import ROW
from bulksync.errors import ConfigError, InputError
from bulksync.source.batch import Source, SourceStream, ValueKind, check_column_names
from bulksync.source.location import Location, SourcePath
from bulksync.source.values import DATE_OUT, DATETIME_OUT

BATCH_ROWS = 200_000  # about the rows of a 16 MB CSV batch


def open_parquet(where: SourcePath, storage_options: Mapping[str, str]) -> SourceStream:
    """The file's schema checked now; its rows read as ``batches`` is consumed."""
    if isinstance(where, Location) and where.kind == "stdin":
        raise ConfigError("Parquet cannot be read from standard input (its index is at the end of the file); "
                          "give its path or URL")
    if isinstance(where, Path) and where.is_dir():  # polars would read every file in it
        raise InputError(f"{where}: is a directory; SOURCE must be a .csv, .jsonl or .parquet file")
    target = where.given if isinstance(where, Location) else str(where)
    try:
        scan = pl.scan_parquet(target, storage_options=dict(storage_options) or None, glob=False,
                               hive_partitioning=False)
        schema = scan.collect_schema()
    except Exception as exc:
        raise _unreadable(where, exc) from None
    names = list(schema.names())
    check_column_names(f"{where}:1", names)
    garbled = next((name for name in names if not name.isprintable()), None)
    if garbled is not None:
        raise InputError(f"{where}:1: column name {garbled!r} holds a control character or line break; rename it")
    kinds = {name: _kind(dtype) for name, dtype in schema.items()}
    header = Source(path=where, frame=pl.DataFrame(schema={ROW: pl.UInt32, **{n: pl.String for n in names}}),
                    kinds={name: kind for name, kind in kinds.items() if kind is not None})
    return SourceStream(header, _batches(where, scan, schema, header))


def _kind(dtype: pl.DataType) -> ValueKind | None:
    if dtype.is_numeric():
        return "number"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype in (pl.Date, pl.Datetime):
        return "date"
    if dtype.is_nested():
        return "json"
    return None if dtype == pl.Null else "string"


def _batches(where: SourcePath, scan: pl.LazyFrame, schema: pl.Schema, header: Source) -> Iterator[Source]:
    rows_before = 0
    try:
        batches = iter(scan.collect_batches(chunk_size=BATCH_ROWS))
    except Exception as exc:
        raise _unreadable(where, exc) from None
    emitted = False
    while True:
        try:
            frame = next(batches, None)
        except Exception as exc:  # a download that broke off, a damaged row group
            raise _unreadable(where, exc) from None
        if frame is None:
            break
        if frame.height == 0 and emitted:
            continue
        yield _text_batch(where, frame, schema, header, rows_before)
        rows_before += frame.height
        emitted = True
    if not emitted:
        yield Source(path=where, frame=header.frame, kinds=dict(header.kinds))


def _text_batch(where: SourcePath, frame: pl.DataFrame, schema: pl.Schema, header: Source, before: int) -> Source:
    """One batch as text columns, the rows with a float that is not finite set aside."""
    frame = frame.with_row_index(ROW, offset=before + 1)
    malformed: list[tuple[int, str]] = []
    for name, dtype in schema.items():
        if dtype.is_float():
            bad = frame.filter(pl.col(name).is_not_null() & ~pl.col(name).is_finite())
            malformed += [(row, f"{name} is not a finite number; Loops takes none like it") for row in bad[ROW]]
    if malformed:
        frame = frame.filter(~pl.col(ROW).is_in([row for row, _ in malformed]))
        malformed = sorted(dict(malformed).items())  # one reason a row
    try:
        text = frame.select(pl.col(ROW), *(_as_text(frame, name, dtype) for name, dtype in schema.items()))
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{where}: a column cannot be read as text ({_first_line(exc)}); "
                         "export it as a string column") from None
    return Source(path=where, frame=text, kinds=dict(header.kinds), malformed=malformed)


def _as_text(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr | pl.Series:
    column = pl.col(name)
    if dtype == pl.Date:
        return column.dt.strftime(DATE_OUT)
    if isinstance(dtype, pl.Datetime):
        moment = column.dt.convert_time_zone("UTC") if dtype.time_zone else column  # a naive time is UTC
        return moment.dt.strftime(DATETIME_OUT)
    if dtype.is_nested():  # JSON text as JSONL gives it: sorted keys, no spaces (rare: per value)
        return pl.Series(name, [_json(value) for value in frame[name].to_list()], dtype=pl.String)
    return column.cast(pl.String)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _unreadable(where: SourcePath, exc: Exception) -> InputError:
    if isinstance(where, Location):
        from bulksync.source.remote import unreadable  # noqa: PLC0415

        return unreadable(where, exc)
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{where}: no such file; check the SOURCE path")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{where}: is a directory; SOURCE must be a .csv, .jsonl or .parquet file")
    return InputError(f"{where}: not a readable Parquet file ({_first_line(exc)}); check the file is complete")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
