"""The state file: create, save, forget, read back, refuse what is not ours, and stay private.

Tests of the interface (``any_store``, ``location``) run on the SQLite file and on PostgreSQL alike."""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from bulksync.columns import KEY, STATE_HASH
from bulksync.errors import StateError
from bulksync.location import StateLocation
from bulksync.state import open_state
from bulksync.state.sqlite import SCHEMA_VERSION, SQLiteStateStore
from bulksync.state.store import StateStore, Tombstone

KEY_COLUMN = "__key"
RECOVER_HINT = "restore it from a backup or pass another --state (a new file re-sends every contact once, safely)"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path) -> Iterator[StateStore]:
    opened = open_state(path)
    yield opened
    opened.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('someone else')")
    db.commit()
    db.close()


def state_error(path: Path, readonly: bool = False) -> str:
    with pytest.raises(StateError) as info:
        open_state(path, readonly=readonly).close()
    return str(info.value)


# -- creating and writing -------------------------------------------------------------------------------


def test_open_creates_an_empty_private_state_file(path: Path, store: StateStore) -> None:
    assert path.exists()
    assert mode(path) == 0o600
    assert store.meta("schema_version") == SCHEMA_VERSION == "3"
    assert store.meta("generation") is None
    assert store.count() == 0
    assert not store.readonly


def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"

    open_state(path).close()

    assert mode(path) == 0o600


def test_wal_files_are_private_too(path: Path, store: StateStore) -> None:
    store.save([("ada@example.com", 1, {"email": "ada@example.com"}, False, None)])

    companions = [p for p in (path.with_name("state.db-wal"), path.with_name("state.db-shm")) if p.exists()]
    assert companions, "the store runs in WAL mode"
    assert {p.name: mode(p) for p in companions} == {p.name: 0o600 for p in companions}


def test_save_then_read_back(any_store: StateStore) -> None:
    any_store.save(
        [
            ("grace@example.com", -(2**63), {"email": "grace@example.com", "firstName": "Grace"}, False, None),
            ("ada@example.com", 2**63 - 1, {"email": "ada@example.com", "zip": "02134", "n": "Zoë"}, False, None),
        ]
    )

    assert any_store.count() == 2
    assert list(any_store.contacts()) == [
        ("ada@example.com", {"email": "ada@example.com", "n": "Zoë", "zip": "02134"}),
        ("grace@example.com", {"email": "grace@example.com", "firstName": "Grace"}),
    ]
    assert any_store.fields_for(["grace@example.com", "nobody@example.com"]) == {
        "grace@example.com": {"email": "grace@example.com", "firstName": "Grace"}
    }


def test_saving_a_key_again_replaces_it(any_store: StateStore) -> None:
    any_store.save([("ada@example.com", 1, {"email": "ada@example.com", "plan": "free"}, False, None)])
    any_store.save([("ada@example.com", 2, {"email": "ada@example.com"}, False, None)])

    assert any_store.count() == 1
    assert any_store.hashes().to_dicts() == [{KEY_COLUMN: "ada@example.com", STATE_HASH: 2}]
    assert any_store.fields_for(["ada@example.com"]) == {"ada@example.com": {"email": "ada@example.com"}}


def test_forget_drops_keys_and_ignores_unknown_ones(any_store: StateStore) -> None:
    any_store.save([(k, i, {"email": k}, False, None) for i, k in enumerate(["a@x.io", "b@x.io", "c@x.io"])])

    any_store.forget(["a@x.io", "zzz@x.io", "c@x.io"])

    assert [key for key, _ in any_store.contacts()] == ["b@x.io"]


def test_generation_counts_every_committed_write(any_store: StateStore) -> None:
    assert any_store.generation() == 0
    any_store.save([("a@x.io", 1, {}, False, None)])
    assert (any_store.generation(), any_store.meta("generation")) == (1, "1")
    any_store.forget(["a@x.io"])
    assert any_store.generation() == 2
    any_store.save([("b@x.io", 2, {}, False, None)])
    assert any_store.generation() == 3
    any_store.set_meta({"key": "email"})  # bookkeeping, not a write to the contacts
    assert any_store.generation() == 3


def test_a_failed_save_writes_nothing(any_store: StateStore) -> None:
    any_store.save([("a@x.io", 1, {}, False, None)])
    refusal = sqlite3.IntegrityError if isinstance(any_store, SQLiteStateStore) else StateError

    with pytest.raises(refusal, match=r"(?i)not[ -]null"):
        any_store.save([("b@x.io", 2, {}, False, None), ("c@x.io", None, {}, False, None)])  # type: ignore[list-item]

    assert [key for key, _ in any_store.contacts()] == ["a@x.io"]
    assert any_store.meta("generation") == "1"


def test_set_meta_and_state_survive_reopening(location: StateLocation) -> None:
    with open_state(location) as store:
        store.set_meta({"key": "email", "last_run_outcome": "ok"})
        store.save([("ada@example.com", 5, {"email": "ada@example.com"}, False, None)])

    with open_state(location) as again:
        assert (again.meta("key"), again.meta("last_run_outcome")) == ("email", "ok")
        assert again.hashes().to_dicts() == [{KEY_COLUMN: "ada@example.com", STATE_HASH: 5}]
        assert again.generation() == 1


def test_held_back_lists_contacts_whose_subscribed_true_was_not_sent(any_store: StateStore) -> None:
    any_store.save([("a@x.io", 1, {}, True, None), ("b@x.io", 2, {}, False, None), ("c@x.io", 3, {}, True, None)])
    assert sorted(any_store.held_back_keys()) == ["a@x.io", "c@x.io"]

    any_store.save([("a@x.io", 4, {}, False, None)])
    any_store.forget(["c@x.io"])

    assert any_store.held_back_keys() == []


def test_a_state_file_from_before_held_back_is_migrated_or_refused(path: Path) -> None:
    # Schema 1 as the first release wrote it: no held_back column.
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE contacts (key TEXT PRIMARY KEY, row_hash INTEGER NOT NULL, fields TEXT NOT NULL,
                               synced_at TEXT NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', '1'), ('key', 'email');
        INSERT INTO contacts VALUES ('ada@example.com', 5, '{"email":"ada@example.com"}', '2024-01-01T00:00:00Z');
        """
    )
    db.close()

    try:
        store = open_state(path)
    except StateError:
        return  # refused up front, with a message: acceptable
    with store:
        store.save([("grace@example.com", 6, {"email": "grace@example.com"}, True, None)])  # must not crash
        assert store.hashes().sort(KEY_COLUMN)[STATE_HASH].to_list() == [5, 6]
        assert store.held_back_keys() == ["grace@example.com"]


def test_loops_ids_are_kept_and_tombstones_replaced_and_dropped(any_store: StateStore) -> None:
    any_store.save([("ada@example.com", 6, {"email": "ada@example.com"}, False, "c1")])
    any_store.save([("ada@example.com", 7, {"email": "ada@example.com"}, False, None)])  # an answer without one
    assert any_store.loops_ids(["ada@example.com", "nobody@example.com"]) == {"ada@example.com": "c1"}
    any_store.save_tombstones([Tombstone("gone@example.com", "2026-01-01T00:00:00Z", False)])
    newer = Tombstone("gone@example.com", "2026-02-01T00:00:00Z", True, ("news", "beta"))
    any_store.save_tombstones([newer])

    assert any_store.tombstones_for(["gone@example.com", "x"]) == {"gone@example.com": newer}
    assert any_store.tombstone_count() == 1 and any_store.drop_tombstone("gone@example.com")
    assert any_store.tombstone_count() == 0 and not any_store.drop_tombstone("gone@example.com")


def test_a_schema_2_state_gains_ids_and_tombstones_and_keeps_its_contacts(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE contacts (key TEXT PRIMARY KEY, row_hash INTEGER NOT NULL, held_back INTEGER NOT NULL DEFAULT 0,
                               fields TEXT NOT NULL, synced_at TEXT NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', '2'), ('key', 'email');
        INSERT INTO contacts VALUES ('ada@example.com', 5, 1, '{"email":"ada@example.com"}', '2024-01-01T00:00:00Z');
        """
    )
    db.close()

    with open_state(path) as store:
        assert store.meta("schema_version") == "3" and store.held_back_keys() == ["ada@example.com"]
        assert store.loops_ids(["ada@example.com"]) == {}  # recorded with the first answer that carries one
        store.save([("ada@example.com", 6, {"email": "ada@example.com"}, False, "c1")])
        store.save([("ada@example.com", 7, {"email": "ada@example.com"}, False, None)])  # an answer without one
        assert store.loops_ids(["ada@example.com"]) == {"ada@example.com": "c1"}
        store.save_tombstones([Tombstone("gone@example.com", "2026-01-01T00:00:00Z", True, ("news",))])
        assert store.tombstones_for(["gone@example.com", "x"]) == {
            "gone@example.com": Tombstone("gone@example.com", "2026-01-01T00:00:00Z", True, ("news",))
        }
        assert store.tombstone_count() == 1 and store.drop_tombstone("gone@example.com")
        assert store.tombstone_count() == 0 and not store.drop_tombstone("gone@example.com")


# -- hashes and fields_for -----------------------------------------------------------------------------


def test_hashes_of_an_empty_store_is_an_empty_typed_frame(any_store: StateStore) -> None:
    frame = any_store.hashes()

    assert frame.height == 0
    assert frame.schema == pl.Schema({KEY_COLUMN: pl.String, STATE_HASH: pl.Int64})


def test_hashes_keeps_every_key_exactly_as_text(any_store: StateStore) -> None:
    keys = ["00123", "1e5", "NA", "null", "true", 'o"brien@example.ie', "a,b@example.com", "zoë@example.com", "#x@y.io"]
    any_store.save([(key, -i - 1, {}, False, None) for i, key in enumerate(keys)])

    frame = any_store.hashes().sort(STATE_HASH, descending=True)

    assert frame.schema == pl.Schema({KEY_COLUMN: pl.String, STATE_HASH: pl.Int64})
    assert frame[KEY_COLUMN].to_list() == keys
    assert frame[STATE_HASH].to_list() == [-i - 1 for i in range(len(keys))]


def test_fields_for_reads_more_keys_than_one_batch(any_store: StateStore) -> None:
    keys = [f"user{i:04d}@example.com" for i in range(1234)]
    any_store.save([(key, i, {"email": key, "n": str(i)}, False, None) for i, key in enumerate(keys)])

    found = any_store.fields_for([*reversed(keys), "nobody@example.com"])

    assert len(found) == 1234
    assert found["user0000@example.com"] == {"email": "user0000@example.com", "n": "0"}
    assert found["user1233@example.com"] == {"email": "user1233@example.com", "n": "1233"}
    assert any_store.fields_for([]) == {}


def test_save_frame_records_a_baseline_without_null_fields(any_store: StateStore) -> None:
    frame = pl.DataFrame(
        {"__key": ["ada@example.com", "grace@example.com"], "__hash": [11, -22],
         "email": ["ada@example.com", "grace@example.com"], "plan": ["pro", None]},
        schema={"__key": pl.String, "__hash": pl.Int64, "email": pl.String, "plan": pl.String},
    )

    any_store.save_frame(frame, "__key", "__hash", ["plan", "email"])

    assert any_store.hashes().sort(KEY_COLUMN).to_dicts() == [
        {KEY_COLUMN: "ada@example.com", STATE_HASH: 11},
        {KEY_COLUMN: "grace@example.com", STATE_HASH: -22},
    ]
    assert any_store.fields_for(["ada@example.com", "grace@example.com"]) == {
        "ada@example.com": {"email": "ada@example.com", "plan": "pro"},
        "grace@example.com": {"email": "grace@example.com"},
    }
    assert any_store.meta("generation") == "1"


def test_a_baseline_replaces_its_keys_the_last_row_of_a_key_winning(any_store: StateStore) -> None:
    any_store.save([("ada@example.com", 1, {"email": "ada@example.com", "plan": "free"}, True, "c1"),
                    ("bob@example.com", 2, {"email": "bob@example.com"}, False, "c2")])
    frame = pl.DataFrame({"__key": ["ada@example.com", "cy@example.com", "ada@example.com"], "__hash": [3, 4, 5],
                          "email": ["ada@example.com", "cy@example.com", "ada@example.com"]})

    any_store.save_frame(frame, "__key", "__hash", ["email"])

    assert dict(any_store.hashes().iter_rows()) == {"ada@example.com": 5, "bob@example.com": 2, "cy@example.com": 4}
    assert any_store.fields_for(["ada@example.com"]) == {"ada@example.com": {"email": "ada@example.com"}}
    assert any_store.held_back_keys() == [] and any_store.loops_ids(["ada@example.com", "bob@example.com"]) == {
        "bob@example.com": "c2"}


# -- the key a state file is bound to -----------------------------------------------------------------


def test_check_key_accepts_a_fresh_file_and_the_same_key(any_store: StateStore) -> None:
    any_store.check_key("userId")
    any_store.set_meta({"key": "email"})
    any_store.check_key("email")


def test_check_key_mismatch_is_a_state_error(location: StateLocation, any_store: StateStore) -> None:
    any_store.set_meta({"key": "email"})

    with pytest.raises(StateError) as info:
        any_store.check_key("userId")

    other = "another --state file" if isinstance(location, Path) else "another schema (?schema=NAME)"
    assert str(info.value) == f"{location} identifies contacts by email, not userId; pass --key email or use {other}"


# -- read-only -----------------------------------------------------------------------------------------


def test_read_only_without_a_file_creates_nothing_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = open_state(path, readonly=True)
    try:
        assert store.readonly
        assert store.count() == 0
        assert store.hashes().height == 0
        assert store.fields_for(["a@x.io"]) == {}
        writes: tuple[Callable[[], None], ...] = (
            lambda: store.save([("a@x.io", 1, {}, False, None)]),
            lambda: store.forget(["a@x.io"]),
            lambda: store.set_meta({"key": "email"}),
        )
        for write in writes:
            with pytest.raises(StateError, match=r"opened read-only \(dry run\); nothing may be written$"):
                write()
    finally:
        store.close()

    assert not path.exists()
    assert not path.parent.exists()


def test_read_only_on_an_existing_file_reads_it_and_changes_nothing(path: Path) -> None:
    writer = open_state(path)
    writer.save([("ada@example.com", 7, {"email": "ada@example.com"}, False, None)])
    writer.close()
    before = path.read_bytes()

    store = open_state(path, readonly=True)
    try:
        assert store.hashes().to_dicts() == [{KEY_COLUMN: "ada@example.com", STATE_HASH: 7}]
        with pytest.raises(StateError, match="read-only"):
            store.save([("grace@example.com", 8, {}, False, None)])
    finally:
        store.close()

    assert path.read_bytes() == before


# -- files that are not a healthy state file ------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True], ids=["read-write", "read-only"])
def test_random_bytes_are_a_state_error(path: Path, readonly: bool) -> None:
    path.write_bytes(random.Random(7).randbytes(8192))

    assert state_error(path, readonly) == (
        f"{path}: not a readable bulksync state file (file is not a database); {RECOVER_HINT}"
    )


@pytest.mark.parametrize("readonly", [False, True], ids=["read-write", "read-only"])
def test_a_zero_byte_file_is_a_state_error(path: Path, readonly: bool) -> None:
    path.write_bytes(b"")

    assert state_error(path, readonly) == (
        f"{path}: not a readable bulksync state file (the file is empty or truncated); {RECOVER_HINT}"
    )


@pytest.mark.parametrize("readonly", [False, True], ids=["read-write", "read-only"])
def test_a_foreign_sqlite_file_is_a_state_error(path: Path, readonly: bool) -> None:
    foreign_sqlite(path)

    assert state_error(path, readonly) == (
        f"{path}: not a readable bulksync state file (it is an SQLite file but not a bulksync state file); "
        f"{RECOVER_HINT}"
    )


def test_another_schema_version_is_a_state_error(path: Path) -> None:
    store = open_state(path)
    store.set_meta({"schema_version": "99"})
    store.close()

    assert state_error(path) == (
        f"{path}: not a readable bulksync state file (schema version '99'; this bulksync reads 3); {RECOVER_HINT}"
    )


def test_a_file_cut_short_is_a_state_error(path: Path) -> None:
    store = open_state(path)
    store.save([(f"user{i}@example.com", i, {"email": f"user{i}@example.com", "bio": "x" * 200}, False, None)
                for i in range(2000)])
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    def open_and_read() -> None:
        opened = open_state(path, readonly=True)
        try:
            opened.hashes()
        finally:
            opened.close()

    with pytest.raises(StateError, match=f"^{re.escape(str(path))}: .*database disk image is malformed"):
        open_and_read()


@pytest.mark.parametrize(
    "make",
    [
        lambda path: path.write_bytes(b""),
        lambda path: path.write_bytes(random.Random(7).randbytes(8192)),
        foreign_sqlite,
    ],
    ids=["zero-bytes", "random-bytes", "foreign-sqlite"],
)
def test_a_refused_file_is_left_exactly_as_it_was(tmp_path: Path, make: object) -> None:
    # The message says "restore it from a backup": the file we refused must not have been rewritten.
    path = tmp_path / "state.db"
    make(path)  # type: ignore[operator]
    before = path.read_bytes()

    with pytest.raises(StateError):
        open_state(path)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


# -- the hash snapshot ---------------------------------------------------------------------------------


def test_snapshot_is_used_for_its_generation_only(path: Path, store: StateStore) -> None:
    store.save([("a@x.io", 1, {"email": "a@x.io"}, False, None), ("b@x.io", 2, {"email": "b@x.io"}, False, None)])
    from_db = store.hashes()
    store.save_snapshot(from_db.with_columns(pl.lit(99, dtype=pl.Int64).alias(STATE_HASH)))  # tell them apart
    [snapshot] = path.parent.glob("state.db.hashes-*")

    assert snapshot.name.startswith(f"state.db.hashes-{store.generation()}-") and mode(snapshot) == 0o600
    assert store.hashes()[STATE_HASH].to_list() == [99, 99]  # this generation: read from the snapshot

    store.save([("c@x.io", 3, {"email": "c@x.io"}, False, None)])  # the state moves on
    assert sorted(store.hashes()[STATE_HASH].to_list()) == [1, 2, 3]  # stale snapshot ignored


def test_damaged_snapshot_falls_back_to_the_database(path: Path, store: StateStore) -> None:
    store.save([("a@x.io", 1, {"email": "a@x.io"}, False, None)])
    store.save_snapshot(store.hashes())
    [snapshot] = path.parent.glob("state.db.hashes-*")
    snapshot.write_bytes(b"not arrow")

    assert store.hashes()[STATE_HASH].to_list() == [1]


def test_a_copied_state_never_pairs_with_another_historys_snapshot(path: Path, store: StateStore) -> None:
    store.save([("a@x.io", 1, {"email": "a@x.io"}, False, None)])
    with sqlite3.connect(path) as source, sqlite3.connect(path.with_name("fork.db")) as copy:
        source.backup(copy)  # the same generation, two histories from here
    store.save([("b@x.io", 2, {"email": "b@x.io"}, False, None)])
    with open_state(path.with_name("fork.db")) as fork:
        fork.save([("c@x.io", 3, {"email": "c@x.io"}, False, None)])
        fork.save_snapshot(fork.hashes())
        assert fork.generation() == store.generation()
    [forked] = path.parent.glob("fork.db.hashes-*")
    shutil.copy(forked, path.with_name(forked.name.replace("fork.db", "state.db")))  # the fork's, by name

    assert sorted(store.hashes()[KEY].to_list()) == ["a@x.io", "b@x.io"]  # read from the database


@pytest.mark.parametrize("kind", ["fifo", "directory", "other columns"])
def test_a_snapshot_that_is_not_one_is_ignored(path: Path, store: StateStore, kind: str) -> None:
    store.save([("a@x.io", 1, {"email": "a@x.io"}, False, None)])
    store.save_snapshot(store.hashes())
    [snapshot] = path.parent.glob("state.db.hashes-*")
    snapshot.unlink()
    if kind == "fifo":
        os.mkfifo(snapshot)  # reading it would wait for a writer forever
    elif kind == "directory":
        snapshot.mkdir()
    else:
        pl.DataFrame({"a": [1], "b": ["x"]}).write_ipc(snapshot)

    assert store.hashes()[STATE_HASH].to_list() == [1]


def test_fields_that_are_not_an_object_are_a_damaged_state(path: Path, store: StateStore) -> None:
    store.save([("a@x.io", 1, {"email": "a@x.io"}, False, None)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE contacts SET fields = '[1, 2]'")

    with pytest.raises(StateError, match=r"the fields of a@x.io are not a JSON object of text values"):
        store.fields_for(["a@x.io"])
