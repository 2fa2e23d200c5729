"""Reading a source in batches gives exactly the run one batch gives: de-duplication across
batches, the other identifier, deletes, --limit and the report, through the real CLI and emulator."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.columns import KEY, KEY_HASH, STATE_HASH
from bulksync.emulator import LoopsEmulator
from bulksync.loops import record
from bulksync.source import csv_reader, read
from bulksync.state.sqlite import SQLiteStateStore


def rows(*lines: str) -> str:
    return "email,userId,firstName,plan\n" + "".join(line + "\n" for line in lines)


FIRST = rows(*(f"user{n}@example.com,u{n},First{n},free" for n in range(40)))
# Row 3 repeats row 35's key (row 35 wins); row 36 takes row 7's userId; user1 changes; user39 is
# gone; a bad row and a quoted line break land wherever the batch boundaries fall.
SECOND = rows(
    *(
        "user1@example.com,u1,Changed,free" if n == 1
        else "user30@example.com,u30,Early,free" if n == 3
        else 'user12@example.com,u12,"Two\nLines",pro' if n == 12
        else "not-an-email,u20,Bad,free" if n == 20
        else "user30@example.com,u30,Late,pro" if n == 35
        else "new36@example.com,u7,Thief,free" if n == 36
        else f"user{n}@example.com,u{n},First{n},free"
        for n in range(39)
    ),
    "new40@example.com,u40,New,free",
    "user5@example.com,u5,Again,free",
    "new40@example.com,u40,Newer,free",
)


def synced(cli: Any, workdir: Path, *extra: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    (workdir / "first.csv").write_text(FIRST)
    (workdir / "second.csv").write_text(SECOND)
    key = extra if extra[:1] == ("--key",) else ()
    assert cli("sync", "first.csv", "--state", "state.db", *key).status == 0
    deletes = () if "--limit" in extra else ("--delete-missing", "--max-delete", "100%")  # a trial run never deletes
    result = cli("sync", "second.csv", "--state", "state.db", *deletes, *extra)
    assert result.status in (0, 1), result.err
    summary = result.summary()
    del summary["duration_s"]
    # Outcomes are written as they arrive, so with several requests in flight their order varies.
    return summary, sorted(result.report(), key=lambda line: (line["action"], line["key"] or ""))


def in_loops(emulator: LoopsEmulator) -> list[dict[str, Any]]:
    """The audience without Loops' own ids (new each time a contact is created)."""
    return sorted(({k: v for k, v in c.items() if k != "id"} for c in emulator.contacts()), key=lambda c: c["email"])


@pytest.mark.parametrize("extra", [(), ("--dry-run",), ("--limit", "30"), ("--key", "userId")])
def test_small_batches_give_the_same_run_as_one(
    cli: Any, workdir: Path, emulator: LoopsEmulator, monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...]
) -> None:
    whole = synced(cli, workdir, *extra)
    whole_contacts = in_loops(emulator)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    for snapshot in workdir.glob("state.db.hashes-*"):
        snapshot.unlink()
    emulator.reset()
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 150)  # a few rows per batch
    monkeypatch.setattr(read, "BLOCK_BYTES", 37)
    assert len(list(read.open_source(workdir / "second.csv").batches)) >= 8

    batched = synced(cli, workdir, *extra)

    assert batched == whole
    assert in_loops(emulator) == whole_contacts
    summary, report = batched
    reasons = {line["row"]: line["error"] for line in report if line["action"] == "reject"}
    rejected = {line["row"]: line["key"] for line in report if line["action"] == "reject"}
    if "--key" not in extra:
        # Rejected rows are named by their key, whether their contact was unchanged, changed or new:
        # the slim rows keep no key text, so it is looked up for these.
        last_wins = "(the last row for a contact wins)"
        assert {row: (rejected[row], reasons[row]) for row in ("4", "6", "8", "40")} == {
            "4": ("user30@example.com", f"duplicate of row 36 {last_wins}"),  # changed
            "6": ("user5@example.com", f"duplicate of row 41 {last_wins}"),  # unchanged
            "8": ("user7@example.com", "userId u7 is also on row 37 (one userId belongs to one contact)"),
            "40": ("new40@example.com", f"duplicate of row 42 {last_wins}"),  # new
        }
    assert any(reason.startswith("invalid email syntax") for reason in reasons.values())
    if extra == ("--limit", "30"):
        valid = sorted(set(range(1, 43)) - {int(row) for row in reasons})
        assert sorted(int(line["row"]) for line in report if line["status"] == "skipped") == valid[30:]
    elif "--key" not in extra:
        assert summary["deleted"] == 5  # user3, user20, user35, user36 and user39; never user7, rejected


@pytest.mark.parametrize("track_limit", [200_000, 2])
def test_a_run_leaves_a_snapshot_equal_to_the_state(
    cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, track_limit: int
) -> None:
    # Tracked changes refresh the snapshot; past the limit it is read back from SQLite: either way
    # the next plan starts from exactly what the state holds, without reading every hash again.
    monkeypatch.setattr(record, "SNAPSHOT_TRACK_LIMIT", track_limit)
    (workdir / "first.csv").write_text(FIRST)
    (workdir / "second.csv").write_text(SECOND)
    assert cli("sync", "first.csv", "--state", "state.db").status == 0
    assert cli("sync", "second.csv", "--state", "state.db", "--delete-missing", "--max-delete", "100%").status == 0

    state = SQLiteStateStore.open(workdir / "state.db", readonly=True)  # concrete: reads _hashes_from_db
    with state:
        from_db = state._hashes_from_db()
    [snapshot] = workdir.glob("state.db.hashes-*")  # only the newest is kept
    saved = pl.read_ipc(snapshot)
    assert saved[KEY_HASH].is_sorted()
    assert saved.select(KEY, STATE_HASH).sort(KEY).equals(from_db.sort(KEY))


def test_a_baseline_after_a_sync_keeps_the_state_and_its_snapshot_whole(cli: Any, workdir: Path) -> None:
    (workdir / "first.csv").write_text(FIRST)
    assert cli("sync", "first.csv", "--state", "state.db").status == 0  # leaves a snapshot with key hashes
    (workdir / "extra.csv").write_text(rows("extra@example.com,u99,Extra,free", "user1@example.com,u1,Re,pro"))

    assert cli("state", "baseline", "extra.csv", "--state", "state.db").status == 0

    state = SQLiteStateStore.open(workdir / "state.db", readonly=True)  # concrete: reads _hashes_from_db
    with state:
        assert state.count() == 41
        [path] = workdir.glob("state.db.hashes-*")
        snapshot = pl.read_ipc(path)
        assert snapshot.select(KEY, STATE_HASH).sort(KEY).equals(state._hashes_from_db().sort(KEY))


def test_a_property_only_a_losing_duplicate_fills_is_not_needed(cli: Any, workdir: Path) -> None:
    (workdir / "dup.csv").write_text("email,secretCol\na@x.io,X\na@x.io,\n")

    result = cli("sync", "dup.csv", "--state", "state.db", create_properties=False)

    assert result.status == 0, result.err
    assert (result.summary()["created"], result.summary()["rejected"]) == (1, 1)


def test_a_bad_byte_found_while_the_next_batch_is_read_ahead_is_the_runs_one_line_error(
    cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches are read in a background thread: its error must end the run like any other input error.
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 150)
    monkeypatch.setattr(read, "BLOCK_BYTES", 37)
    (workdir / "bad.csv").write_bytes(FIRST.encode() + b"jos\xe9@example.com,u77,Jos,free\n")

    result = cli("sync", "bad.csv", "--state", "state.db")

    assert result.status == 2
    assert result.err == (
        "bulksync: error: bad.csv:42: byte 0xe9 is not valid utf-8; "
        "pass the file's encoding, e.g. --encoding latin-1 or --encoding cp1252\n"
    )
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("bulksync-read")]
