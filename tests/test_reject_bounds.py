"""Millions of duplicate or rejected rows cost no memory a row beyond a few bytes: each batch keeps
one row per contact, rejects are kept small (invalid ones spooled to a temporary file) and worded
only when the report is written. These runs shrink the batches, the report's chunks and the spool's
memory so that a few hundred rows cross every boundary, and check the report line by line."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.columns import KEY, ROW, STATE_HASH
from bulksync.emulator import LoopsEmulator
from bulksync.plan import rejects
from bulksync.plan.index import StateIndex
from bulksync.plan.scan import Scanned, scan
from bulksync.source import csv_reader, read, spool
from bulksync.source.read import open_source

LAST_WINS = "(the last row for a contact wins)"
NO_STATE = StateIndex.of(pl.DataFrame(schema={KEY: pl.String, STATE_HASH: pl.Int64}))


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few rows a batch, seven rejects worded at a time, and every invalid row spooled to disk."""
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 150)
    monkeypatch.setattr(read, "BLOCK_BYTES", 37)
    monkeypatch.setattr(rejects, "CHUNK_ROWS", 7)
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)


def gzipped(path: Path, header: str, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress((header + "\n" + "".join(line + "\n" for line in lines)).encode()))
    return path


def rejected(result: Any) -> list[tuple[str, str, str]]:
    """The report's reject lines, in the report's order."""
    return [(line["row"], line["key"], line["error"]) for line in result.report() if line["action"] == "reject"]


def scanned(path: Path, index: StateIndex = NO_STATE) -> Scanned:
    return scan(open_source(path), "email", index)


def test_copies_of_one_row_keep_one_row_and_every_line_names_the_last(
    cli: Any, workdir: Path, small: None
) -> None:
    bomb = gzipped(workdir / "bomb.csv.gz", "email,userId,firstName", ["Same@X.io,u1,Sam"] * 300)
    assert len(list(open_source(bomb).batches)) >= 30

    result = cli("sync", "bomb.csv.gz", "--dry-run")

    assert result.status == 0, result.err
    assert rejected(result) == [(str(row), "same@x.io", f"duplicate of row 300 {LAST_WINS}") for row in range(1, 300)]
    assert [(line["row"], line["action"]) for line in result.report()][299:] == [("300", "create")]
    summary = result.summary()
    assert (summary["created"], summary["unchanged"], summary["rejected"]) == (1, 0, 299)
    plan = scanned(bomb)
    assert plan.rows.height == 1 and plan.contacts.height == 1  # one full row, not one a batch or a copy
    assert plan.rejects.height == 299 and plan.rejects.invalid == 0


def test_copies_of_a_contact_the_state_holds_are_named_by_its_key(
    cli: Any, workdir: Path, small: None
) -> None:
    (workdir / "v1.csv").write_text("email,userId,firstName\nsame@x.io,u1,Sam\n")
    assert cli("sync", "v1.csv", "--state", "state.db").status == 0
    gzipped(workdir / "bomb.csv.gz", "email,userId,firstName", ["same@x.io,u1,Sam"] * 120)

    result = cli("sync", "bomb.csv.gz", "--state", "state.db", "--dry-run")

    assert result.status == 0, result.err
    assert rejected(result) == [(str(row), "same@x.io", f"duplicate of row 120 {LAST_WINS}") for row in range(1, 120)]
    assert (result.summary()["unchanged"], result.summary()["rejected"]) == (1, 119)


def batches_of(path: Path) -> dict[int, int]:
    """Which batch each row is read in."""
    return {row: n for n, part in enumerate(open_source(path).batches) for row in part.frame[ROW]}


def filler(start: int, count: int) -> list[str]:
    return [f"c{n}@x.io,uc{n},C{n}" for n in range(start, start + count)]


# Rows 1-2 are a@x.io (row 2 wins its batch), row 26 too (wins its batch), row 50 last of all: every
# one of them names row 50. Row 4 loses to row 5 of its batch, and row 5 then loses its userId to
# row 27: row 4 still names row 5, its key's last row, which is no contact.
CROSSING = [
    "a@x.io,u1,A1", "a@x.io,u1,A2", "bad,u2,Bad", "b@x.io,u3,B1", "b@x.io,u3,B2", *filler(6, 20),
    "a@x.io,u1,A3", "d@x.io,u3,D", *filler(28, 22), "a@x.io,u1,A4", *filler(51, 5),
]
CROSSING_REJECTS = [
    ("1", "a@x.io", f"duplicate of row 50 {LAST_WINS}"),
    ("2", "a@x.io", f"duplicate of row 50 {LAST_WINS}"),
    ("3", "bad", "invalid email syntax: bad"),
    ("4", "b@x.io", f"duplicate of row 5 {LAST_WINS}"),
    ("5", "b@x.io", "userId u3 is also on row 27 (one userId belongs to one contact)"),
    ("26", "a@x.io", f"duplicate of row 50 {LAST_WINS}"),
]


def test_a_batchs_winner_beaten_by_a_later_batch_hands_its_duplicates_to_the_last_row(
    cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "crossing.csv").write_text("email,userId,firstName\n" + "".join(line + "\n" for line in CROSSING))
    whole = cli("sync", "crossing.csv", "--dry-run")
    assert whole.status == 0, whole.err
    one_batch = (workdir / "report.csv").read_bytes()
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 150)
    monkeypatch.setattr(read, "BLOCK_BYTES", 37)
    monkeypatch.setattr(rejects, "CHUNK_ROWS", 2)
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)
    batch = batches_of(workdir / "crossing.csv")
    assert batch[1] == batch[2] < batch[26] < batch[50] and batch[4] == batch[5] < batch[27]

    batched = cli("sync", "crossing.csv", "--dry-run")

    assert batched.status == 0, batched.err
    assert rejected(batched) == CROSSING_REJECTS
    assert (workdir / "report.csv").read_bytes() == one_batch
    assert batched.summary()["rejected"] == whole.summary()["rejected"] == 6
    plan = scanned(workdir / "crossing.csv")
    assert plan.rows[KEY].n_unique() == plan.rows.height == plan.contacts.height  # one full row a contact


def test_copies_of_invalid_rows_are_all_rejected_and_their_contact_is_never_deleted(
    cli: Any, workdir: Path, emulator: LoopsEmulator, small: None
) -> None:
    (workdir / "v1.csv").write_text("email,subscribed\na@x.io,true\nb@x.io,true\nc@x.io,true\n")
    assert cli("sync", "v1.csv").status == 0
    lines = ["a@x.io,true", *(["b@x.io,maybe", "not-an-email,true"] * 100)]
    gzipped(workdir / "v2.csv.gz", "email,subscribed", lines)

    result = cli("sync", "v2.csv.gz", "--delete-missing", "--max-delete", "100%")

    assert result.status == 0, result.err
    boolean = "subscribed value 'maybe' is not a boolean (use true/false/yes/no/1/0)"
    assert rejected(result) == [
        (str(row), *(("b@x.io", boolean) if row % 2 == 0 else ("not-an-email", "invalid email syntax: not-an-email")))
        for row in range(2, 202)
    ]
    summary = result.summary()
    assert (summary["rejected"], summary["deleted"], summary["unchanged"]) == (200, 1, 1)
    assert emulator.contact("b@x.io") is not None  # its rows were rejected: still in the source
    assert emulator.contact("c@x.io") is None
    plan = scanned(workdir / "v2.csv.gz")
    assert (plan.rejects.height, plan.rejects.invalid, plan.rejects.unreadable) == (200, 200, 0)


def test_one_unreadable_row_among_many_rejects_stops_every_delete(
    cli: Any, workdir: Path, emulator: LoopsEmulator, small: None
) -> None:
    (workdir / "v1.csv").write_text("email,subscribed\na@x.io,true\nc@x.io,true\n")
    assert cli("sync", "v1.csv").status == 0
    gzipped(workdir / "v2.csv.gz", "email,subscribed", ["a@x.io,true", *(["not-an-email,true"] * 150), "x@x.io,1,2"])

    result = cli("sync", "v2.csv.gz", "--delete-missing", "--max-delete", "100%")

    assert result.status == 0, result.err
    ragged = "line 153: 3 fields but the header has 2; check its quoting and separators"
    assert rejected(result)[-1] == ("152", "", ragged)
    assert len(rejected(result)) == 151
    assert result.summary()["deleted"] == 0
    assert emulator.contact("c@x.io") is not None
    assert "Note: 1 row(s) could not be read (see the report), so their contacts are unknown: no contact is " \
           "deleted this run" in result.out


def test_rejects_are_read_once(workdir: Path) -> None:
    (workdir / "dup.csv").write_text("email\na@x.io\na@x.io\n")
    plan = scanned(workdir / "dup.csv")

    assert plan.rejects.frame().rows() == [(1, "a@x.io", f"duplicate of row 2 {LAST_WINS}")]
    with pytest.raises(AssertionError, match="read once"):
        plan.rejects.frame()
