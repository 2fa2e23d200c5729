"""What bulksync last pushed successfully: one SQLite row per contact, written only after Loops confirmed.

Each contact row holds the content hash of the source row that was synced (for the fast "changed?"
join) and the fields Loops has as bulksync set them (for field-level updates). Writes are grouped in
transactions, so a crash loses at most the last uncommitted confirmations, never corrupts, and never
claims a write Loops did not confirm.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl

from bulksync.columns import KEY, STATE_HASH
from bulksync.errors import StateError
from bulksync.files import FileProblem, create_private, open_private_fd
from bulksync.state.store import Fields, Record, StateStore, Tombstone, batches, dump_fields, load_fields, utc_now

SCHEMA_VERSION = "3"  # 2 added contacts.held_back; 3 contacts.loops_id and the tombstones
_FIELD_SEPARATOR = "\x1f"  # keys never hold control characters: normalise rejects them
_BATCH = 500

_TOMBSTONES = """CREATE TABLE IF NOT EXISTS tombstones (
    key TEXT PRIMARY KEY,
    deleted_at TEXT NOT NULL,
    unsubscribed INTEGER NOT NULL,
    left_lists TEXT NOT NULL
) WITHOUT ROWID"""
_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE contacts (
        key TEXT PRIMARY KEY,
        row_hash INTEGER NOT NULL,
        held_back INTEGER NOT NULL DEFAULT 0,
        fields TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        loops_id TEXT
    ) WITHOUT ROWID""",
    _TOMBSTONES,
)

class SQLiteStateStore(StateStore):
    """The state in one SQLite file (the default). Use :meth:`open`; read-only stores refuse every write."""

    path: Path

    def __init__(self, path: Path, connection: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self._db = connection
        self.readonly = readonly

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> SQLiteStateStore:
        """Open (or, unless read-only, create) the state file, checking that it is one of ours."""
        if readonly and not path.exists():
            db = sqlite3.connect(":memory:")
            for statement in _SCHEMA:
                db.execute(statement)
            return cls(path, db, readonly=True)
        is_new = not path.exists()
        if is_new:
            try:
                create_private(path)
            except FileProblem as problem:
                raise StateError(f"cannot create the state file {path}: {problem.reason}") from None
        try:
            return cls._connect(path, readonly, is_new, immutable=False)
        except sqlite3.DatabaseError as exc:
            if readonly and not os.access(path.parent, os.W_OK):
                # A read-only directory or file system: SQLite cannot make the WAL's shared-memory file
                # even to read. Nobody can write there either, so reading it as immutable is safe.
                try:
                    return cls._connect(path, readonly, is_new, immutable=True)
                except sqlite3.DatabaseError:
                    pass
            raise StateError(
                f"{path}: not a readable bulksync state file ({exc}); restore it from a backup or "
                "pass another --state (a new file re-sends every contact once, safely)"
            ) from None

    @classmethod
    def _connect(cls, path: Path, readonly: bool, is_new: bool, *, immutable: bool) -> SQLiteStateStore:
        name = quote(str(path))  # a '?', '#' or '%' in the name is the file's, not the URI's
        uri = f"file:{name}?mode=ro" + ("&immutable=1" if immutable else "") if readonly else f"file:{name}"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        store = cls(path, db, readonly)
        store._prepare(is_new)
        return store

    def _prepare(self, is_new: bool) -> None:
        """Check the file is ours (changing nothing in a file that is not), then set it up."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and not is_new:  # an existing file with nothing in it was truncated, not new
            raise sqlite3.DatabaseError("the file is empty or truncated")
        if tables and not {"meta", "contacts"} <= tables:
            raise sqlite3.DatabaseError("it is an SQLite file but not a bulksync state file")
        version = self.meta("schema_version") if tables else SCHEMA_VERSION
        if version not in ("1", "2", SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version!r}; this bulksync reads {SCHEMA_VERSION}")
        if self.readonly:
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version!r}; run a sync once to upgrade it")
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        if tables and version == SCHEMA_VERSION:
            return  # ours and current: opening it writes nothing (a refused run leaves it byte for byte)
        self._db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, when the file is made
        with self.transaction():
            if not tables:
                for statement in _SCHEMA:
                    self._db.execute(statement)
            else:
                if version == "1":
                    self._db.execute("ALTER TABLE contacts ADD COLUMN held_back INTEGER NOT NULL DEFAULT 0")
                self._db.execute("ALTER TABLE contacts ADD COLUMN loops_id TEXT")
                self._db.execute(_TOMBSTONES)
            self._set_meta("schema_version", SCHEMA_VERSION)

    def check_alive(self) -> None:
        """A file does not go away mid-run (and its lock is the kernel's)."""

    def close(self) -> None:
        self._db.close()

    # -- meta ------------------------------------------------------------------------------------
    def meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self.transaction():
            for name, value in values.items():
                self._set_meta(name, value)

    # -- reading ---------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM contacts").fetchone()[0])

    def hashes(self) -> pl.DataFrame:
        """Every key with its row hash, as a frame.

        From the snapshot of this generation when there is one (a few milliseconds), else from
        SQLite (about a second per million contacts).
        """
        snapshot = self._snapshot_path()
        if snapshot.is_file():  # a FIFO or a folder in its place would hang or fail the read
            try:
                frame = pl.read_ipc(snapshot)
                if frame.schema.get(KEY) == pl.String and frame.schema.get(STATE_HASH) == pl.Int64:
                    return frame
            except (OSError, pl.exceptions.PolarsError):
                pass  # a damaged snapshot is only a cache: read the database
        return self._hashes_from_db()

    def save_snapshot(self, hashes: pl.DataFrame) -> None:
        """Remember ``hashes`` (which must equal the contacts table now, by key and row hash) for the
        next run's plan; any other columns (such as an index's key hashes) are kept too."""
        if self.readonly:
            return
        target = self._snapshot_path()
        for old in self.path.parent.glob(f"{self.path.name}.hashes-*"):
            old.unlink(missing_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(open_private_fd(temporary, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
            hashes.write_ipc(fh)
        os.replace(temporary, target)  # atomic: a reader sees the whole snapshot or none

    def _snapshot_path(self) -> Path:
        """The snapshot of the state as it is now: named by its generation and by the random revision
        of its last write, so a restored or copied state never pairs with another history's snapshot."""
        revision = self.meta("revision") or "0"
        return self.path.with_name(f"{self.path.name}.hashes-{self.generation()}-{revision}.arrow")

    def _hashes_from_db(self) -> pl.DataFrame:
        """One SQL round trip, parsed by polars (per-row Python objects would take three times longer)."""
        with self._reading():
            (text,) = self._db.execute(
                f"SELECT group_concat(key || char({ord(_FIELD_SEPARATOR)}) || row_hash, char(10)) FROM contacts"
            ).fetchone()
        schema = {KEY: pl.String, STATE_HASH: pl.Int64}
        if not text:
            return pl.DataFrame(schema=schema)
        return pl.read_csv(
            io.StringIO(text), has_header=False, separator=_FIELD_SEPARATOR, quote_char=None,
            new_columns=list(schema), schema=schema,
        )

    def fields_for(self, keys: Iterable[str]) -> dict[str, Fields]:
        """The fields Loops has, as bulksync set them, for each known key among ``keys``."""
        with self._reading():
            return {key: self._load(key, fields)
                    for key, fields in self._select_in("SELECT key, fields FROM contacts WHERE key IN", keys)}

    def _load(self, key: str, text: str) -> Fields:
        return load_fields(self.path, key, text)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Damage found while reading (a truncated or overwritten file) is a StateError, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{self.path}: the state file is damaged ({exc}); restore it from a backup or pass another "
                "--state (a new file re-sends every contact once, safely)"
            ) from None

    def contacts(self) -> Iterator[tuple[str, Fields]]:
        for key, fields in self._db.execute("SELECT key, fields FROM contacts ORDER BY key"):
            yield key, self._load(key, fields)

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.readonly:
            raise StateError(f"{self.path}: opened read-only (dry run); nothing may be written")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with suppress(sqlite3.Error):  # a failed COMMIT or a full disk may have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # a full disk, an I/O error, a file made read-only meanwhile
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(
                f"{self.path}: could not write the state ({exc}); nothing of this batch was recorded: free "
                "space or fix the disk, then run again (what Loops confirmed but the state lacks is sent "
                "again, which changes nothing in Loops)"
            ) from None

    def held_back_keys(self) -> list[str]:
        """Keys whose source says ``subscribed: true`` that bulksync did not send (see ``--resubscribe``)."""
        with self._reading():
            return [key for (key,) in self._db.execute("SELECT key FROM contacts WHERE held_back = 1")]

    def save(self, records: Iterable[Record]) -> None:
        """Record confirmed contacts: key, hash of the synced source row, fields now in Loops, whether
        the source's ``subscribed: true`` was held back, and Loops' id for it (kept when not known)."""
        now = utc_now()
        with self.transaction():
            self._db.executemany(
                "INSERT INTO contacts(key, row_hash, held_back, fields, synced_at, loops_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET row_hash = excluded.row_hash, held_back = excluded.held_back, "
                "fields = excluded.fields, synced_at = excluded.synced_at, "
                "loops_id = coalesce(excluded.loops_id, contacts.loops_id)",
                ((key, row_hash, int(held), dump_fields(fields), now, loops_id)
                 for key, row_hash, fields, held, loops_id in records),
            )
            self._bump_generation()

    def loops_ids(self, keys: Iterable[str]) -> dict[str, str]:
        with self._reading():
            return dict(self._select_in("SELECT key, loops_id FROM contacts WHERE loops_id IS NOT NULL AND key IN",
                                        keys))

    def tombstones_for(self, keys: Iterable[str]) -> dict[str, Tombstone]:
        with self._reading():
            rows = self._select_in("SELECT key, deleted_at, unsubscribed, left_lists FROM tombstones WHERE key IN",
                                   keys)
            return {key: Tombstone(key, at, bool(unsub), tuple(json.loads(lists))) for key, at, unsub, lists in rows}

    def save_tombstones(self, tombstones: Iterable[Tombstone]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO tombstones(key, deleted_at, unsubscribed, left_lists) VALUES (?, ?, ?, ?)",
                ((t.key, t.deleted_at, int(t.unsubscribed), json.dumps(list(t.left_lists))) for t in tombstones),
            )

    def drop_tombstone(self, key: str) -> bool:
        with self.transaction():
            return self._db.execute("DELETE FROM tombstones WHERE key = ?", (key,)).rowcount > 0

    def tombstone_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tombstones").fetchone()[0])

    def _select_in(self, query: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """``query`` ending in ``key IN``, run over ``keys`` in batches (SQLite caps the parameters)."""
        rows: list[tuple[Any, ...]] = []
        for batch in batches(keys, _BATCH):
            rows.extend(self._db.execute(f"{query} ({','.join('?' * len(batch))})", batch))
        return rows

    def save_frame(self, frame: pl.DataFrame, key: str, row_hash: str, fields: list[str]) -> None:
        """Record a whole frame of contacts at once (a baseline): the JSON is built by polars."""
        now = utc_now()
        encoded = frame.select(
            pl.col(key), pl.col(row_hash), pl.struct(sorted(fields)).struct.json_encode().alias("fields")
        )
        with self.transaction():
            for chunk in encoded.iter_slices(50_000):
                self._db.executemany(
                    "INSERT OR REPLACE INTO contacts(key, row_hash, fields, synced_at) VALUES (?, ?, ?, ?)",
                    ((k, h, f, now) for k, h, f in chunk.iter_rows()),
                )
            self._bump_generation()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop deleted contacts."""
        with self.transaction():
            self._db.executemany("DELETE FROM contacts WHERE key = ?", ((k,) for k in keys))
            self._bump_generation()

    def _bump_generation(self) -> None:
        self._db.execute(
            "INSERT INTO meta(name, value) VALUES ('generation', '1') "
            "ON CONFLICT(name) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        self._set_meta("revision", secrets.token_hex(8))
