"""The state in PostgreSQL, for runners that keep nothing between runs (a CI schedule, a CronJob).

Each audience lives in its own schema (the URL's ``schema`` parameter, default ``bulksync``),
made on first use: the SQLite store's tables (meta, contacts, tombstones) and ``runner``, which
names the run holding the lock. A store opened for writing holds a session advisory lock on its
one connection from open to close, and writes only through that connection: a second run is
refused at once, the server drops the lock of a run that dies, and a run whose connection is lost
has lost its lock and every means of writing with it (it then stops sending: ``check_alive``).

Every wait for the server is bounded: by the server (``lock_timeout``, ``statement_timeout``,
``idle_in_transaction_session_timeout``, each unless the URL's ``options``, the role or the
database set it), by TCP (keepalives, ``tcp_user_timeout``), and by the client itself (watchdog.py),
which also ends a wait soon after the run was asked to stop. A statement that ran out of time
stops the run as a lost connection does.
"""

from __future__ import annotations

import array
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, LiteralString

import polars as pl
import psycopg
from psycopg import sql

from bulksync.columns import KEY, STATE_HASH
from bulksync.errors import StateError, StateLostError
from bulksync.location import StateURL
from bulksync.state import pg_connect as bounds  # its timeouts read at use: tests shorten them
from bulksync.state.lock import LOCK_CLASS, in_use, lock_key, taking_over, this_run
from bulksync.state.pg_connect import bound_server, connect, readable, reason
from bulksync.state.pg_tables import MIGRATIONS, SCHEMA_VERSION, TABLES
from bulksync.state.store import Fields, Record, StateStore, Tombstone, batches, dump_fields, load_fields, utc_now
from bulksync.state.watchdog import Watchdog

_BATCH = 5_000
_CHUNK_PAGES = 16_384  # 128 MiB of table a query: its keys stay far below PostgreSQL's 1 GB per value


class PostgresStateStore(StateStore):
    """One audience's state in one schema of a PostgreSQL database. Use :meth:`open`."""

    def __init__(self, url: StateURL, connection: psycopg.Connection[tuple[Any, ...]], schema: str,
                 readonly: bool) -> None:
        self.path = self._url = url
        self.readonly = readonly
        self._db = connection
        self._schema = schema  # pg_temp for a read-only look at a schema not made yet
        self._locked = False
        self._lost: str | None = None
        self._statement_s = bounds.STATEMENT_TIMEOUT_S  # the session's statement_timeout (0: none)
        self._busy = threading.RLock()  # held by every use of the connection: a worker's check_alive skips
        self._watchdog = Watchdog(connection.fileno())

    @classmethod
    def open(cls, url: StateURL, *, readonly: bool = False) -> PostgresStateStore:
        """Connect; for writing, take the schema's lock (or refuse, naming its holder), then make or
        migrate the schema. Read-only, a schema not made yet reads as an empty state."""
        store = cls(url, connect(url), url.schema, readonly)
        try:
            with store._busy, store._watchdog.watching(bounds.STATEMENT_TIMEOUT_S + bounds.CLIENT_MARGIN_S):
                store._statement_s = bound_server(store._db)
                if readonly:
                    store._look()
                else:
                    store._lock()
                    store._prepare()
        except psycopg.errors.InsufficientPrivilege as exc:
            store._drop()
            raise StateError(
                f"{url}: cannot use schema {url.schema}: {store._why(exc)}; have an administrator run CREATE "
                f"SCHEMA {url.schema} AUTHORIZATION <this user> (or grant it CREATE on the database)"
            ) from None
        except psycopg.Error as exc:
            store._drop()
            raise StateError(f"{url}: cannot use schema {url.schema}: {store._why(exc)}") from None
        except BaseException:
            store._drop()
            raise
        return store

    def _wait_s(self, statement_s: float | None = None) -> float:
        """How long the client waits for one statement: the server's bound on it, and a margin."""
        return (statement_s or self._statement_s or bounds.STATEMENT_TIMEOUT_S) + bounds.CLIENT_MARGIN_S

    def stop_on(self, stop: threading.Event | None) -> None:
        self._watchdog.stop_on(stop)

    # -- opening ---------------------------------------------------------------------------------
    def _q(self, text: LiteralString) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self._schema))

    def _tables(self) -> set[str] | None:
        """The schema's tables, or None when there is no such schema."""
        if self._db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,)).fetchone() is None:
            return None
        rows = self._db.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", (self._schema,),
        )
        return {name for (name,) in rows}

    def _check_ours(self, tables: set[str]) -> str | None:
        """The schema's version; None for an empty schema (made by an administrator, for bulksync to fill)."""
        if not tables:
            return None
        if not {"meta", "contacts", "tombstones", "runner"} <= tables:
            raise StateError(
                f"{self.path}: schema {self._schema} holds tables that are not a bulksync state "
                f"({', '.join(sorted(tables)[:5])}); pick another schema with ?schema=NAME"
            )
        version = self.meta("schema_version")
        if version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise StateError(
                f"{self.path}: schema {self._schema} is at state version {version!r}; this bulksync reads "
                f"{SCHEMA_VERSION}: use the bulksync that made it, or a newer one"
            )
        return version

    def _look(self) -> None:
        """Read-only: a missing schema reads as empty (temporary tables, gone with the connection)."""
        tables = self._tables()
        if not tables:
            self._schema = "pg_temp"
            for statement in TABLES:
                self._db.execute(self._q(statement))
        elif self._check_ours(tables) != SCHEMA_VERSION:
            raise StateError(f"{self.path}: schema {self._schema} is at an older state version; run a sync "
                             "once to upgrade it")
        self._db.execute("SET default_transaction_read_only = on")  # a dry run cannot write, even by a bug

    def _lock(self) -> None:
        """Take the schema's lock on this connection, or refuse at once, naming the run that holds it."""
        key = lock_key(self._schema)
        (got,) = self._db.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, key)).fetchone() or (False,)
        if not got:
            raise in_use(self.path, self._holder(key))
        self._locked = True

    def _holder(self, key: int) -> dict[str, object]:
        """The runner row, if it belongs to the backend that holds the lock now."""
        tables = self._tables() or set()
        if "runner" not in tables:
            return {}
        row = self._db.execute(self._q("SELECT pid, host, started, backend FROM {s}.runner")).fetchone()
        holding = self._db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 2 AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", (LOCK_CLASS, key),
        ).fetchone()
        if row is None or (holding is not None and holding[0] != row[3]):
            return {}
        return {"pid": row[0], "host": row[1], "started": row[2]}

    def _prepare(self) -> None:
        """Under the lock: make the schema and its tables, or migrate them, then name this run as holder."""
        tables = self._tables()
        with self._db.transaction():
            if tables is None:
                self._db.execute(self._q("CREATE SCHEMA {s}"))
            version = self._check_ours(tables or set())
            if version is None:  # new
                for statement in TABLES:
                    self._db.execute(self._q(statement))
                self._set_meta("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                while version != SCHEMA_VERSION:
                    for statement in MIGRATIONS[version]:
                        self._db.execute(self._q(statement))
                    version = str(int(version) + 1)
                self._set_meta("schema_version", SCHEMA_VERSION)
            row = self._db.execute(self._q("SELECT pid, host, started FROM {s}.runner")).fetchone()
            if row is not None:
                taking_over({"pid": row[0], "host": row[1], "started": row[2]})
            me = this_run()
            self._db.execute(
                self._q("INSERT INTO {s}.runner (pid, host, started, backend) VALUES (%s, %s, %s, pg_backend_pid()) "
                        "ON CONFLICT (only_one) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
                        "started = excluded.started, backend = excluded.backend"),
                (me["pid"], me["host"], me["started"]),
            )

    def check_alive(self) -> None:
        """Cheap, and safe from any thread (workers ask before each send): an idle connection that was
        closed shows as a readable socket, and only then is it asked. While a statement is under way,
        that statement finds out itself."""
        if self._lost is not None:
            raise StateLostError(self._lost)
        if not self._busy.acquire(blocking=False):
            return
        try:
            if self._db.closed or readable(self._db.fileno()):
                with self._talking():
                    self._db.execute("SELECT 1")
        finally:
            self._busy.release()

    def close(self) -> None:
        try:
            if self._locked and self._lost is None and not self._db.closed:
                with self._talking():
                    with self._db.transaction():
                        self._db.execute(self._q("DELETE FROM {s}.runner"))  # released cleanly: nothing to take over
                    self._db.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, lock_key(self._schema)))
        except StateError:
            pass  # the server drops the lock with the connection anyway
        finally:
            self._drop()

    def _drop(self) -> None:
        self._watchdog.close()
        self._db.close()

    # -- talking to the server -------------------------------------------------------------------
    @contextmanager
    def _talking(self, statement_s: float | None = None) -> Iterator[None]:
        """One use of the connection, bounded. A lost connection, or a statement that ran out of time,
        is a StateLostError (the run stops, and so does every later use); another failure a StateError."""
        if self._lost is not None:
            raise StateLostError(self._lost)
        with self._busy:
            try:
                with self._watchdog.watching(self._wait_s(statement_s)):
                    yield
            except psycopg.Error as exc:
                raise self._failure(exc) from None

    def _failure(self, exc: psycopg.Error) -> StateError:
        reason = self._why(exc)
        if self._db.broken or self._db.closed:
            self._lost = (
                f"{self.path}: lost the connection to the state database ({reason}), and with it the run lock: "
                "the run stopped sending; run it again to settle what was in flight"
            )
        elif isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            self._lost = (
                f"{self.path}: the state database did not answer in time ({reason}): the run stopped sending; "
                f"another session may hold a lock in schema {self._schema} (see pg_locks); run it again to "
                "settle what was in flight"
            )
        else:
            return StateError(f"{self.path}: {reason}")
        return StateLostError(self._lost)

    def _why(self, exc: BaseException) -> str:
        """The watchdog's reason when it cut the connection, else the server's or libpq's words."""
        return self._watchdog.cut or reason(exc, self._url)

    @contextmanager
    def transaction(self, statement_s: float | None = None) -> Iterator[None]:
        if self.readonly:
            raise StateError(f"{self.path}: opened read-only (dry run); nothing may be written")
        with self._talking(statement_s), self._db.transaction():
            yield

    def _rows(self, query: LiteralString, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._talking():
            return self._db.execute(self._q(query), params).fetchall()

    def _select_in(self, query: LiteralString, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """``query`` ending in ``key = ANY(%s)``, run over ``keys`` in batches."""
        rows: list[tuple[Any, ...]] = []
        for batch in batches(keys, _BATCH):
            rows.extend(self._rows(query, (batch,)))
        return rows

    # -- meta ------------------------------------------------------------------------------------
    def meta(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM {s}.meta WHERE name = %s", (name,))
        return str(rows[0][0]) if rows else None

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute(self._q("INSERT INTO {s}.meta (name, value) VALUES (%s, %s) "
                                 "ON CONFLICT (name) DO UPDATE SET value = excluded.value"), (name, value))

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self.transaction():
            for name, value in values.items():
                self._set_meta(name, value)

    # -- reading ---------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM {s}.contacts")[0][0])

    def hashes(self) -> pl.DataFrame:
        """Every key with its row hash, about half a second a million: each query returns one row for a
        range of the table's pages, its keys as one text and its hashes as one run of 8-byte integers,
        split by polars. (A row a contact, fetched or through COPY, is twice as slow or worse.)"""
        keys: list[pl.Series] = []
        hashes = array.array("q")
        with self._talking(), self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for every range
            table = f"{self._schema}.contacts"
            (pages,) = self._db.execute(
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::bigint", (table,)
            ).fetchone() or (0,)
            step = _CHUNK_PAGES if self._db.info.server_version >= 140000 else pages + 1  # TID range scans: 14+
            cursor = self._db.cursor(binary=True)
            for start in range(0, pages + 1, step):
                last = start + step > pages
                query = ("SELECT string_agg(key, chr(10)), string_agg(int8send(row_hash), ''::bytea) "
                         "FROM {s}.contacts WHERE ctid >= %s::tid" + ("" if last else " AND ctid < %s::tid"))
                bounds = (f"({start},0)",) if last else (f"({start},0)", f"({start + step},0)")
                self._watchdog.renew()
                text, packed = cursor.execute(self._q(query), bounds).fetchone() or (None, None)
                if text is not None:
                    keys.append(pl.Series(KEY, [text], dtype=pl.String).str.split("\n").explode())
                    hashes.frombytes(packed)
        if sys.byteorder == "little":
            hashes.byteswap()  # int8send is big-endian
        if not keys:
            return pl.DataFrame(schema={KEY: pl.String, STATE_HASH: pl.Int64})
        return pl.DataFrame([pl.concat(keys), pl.Series(STATE_HASH, hashes, dtype=pl.Int64)])

    def fields_for(self, keys: Iterable[str]) -> dict[str, Fields]:
        rows = self._select_in("SELECT key, fields FROM {s}.contacts WHERE key = ANY(%s)", keys)
        return {key: load_fields(self.path, key, fields) for key, fields in rows}

    def contacts(self) -> Iterator[tuple[str, Fields]]:
        """In key order, a page at a time (no transaction stays open between pages)."""
        after: str | None = None
        while True:
            rows = (self._rows("SELECT key, fields FROM {s}.contacts ORDER BY key LIMIT %s", (_BATCH,)) if after is None
                    else self._rows("SELECT key, fields FROM {s}.contacts WHERE key > %s ORDER BY key LIMIT %s",
                                    (after, _BATCH)))
            for key, fields in rows:
                yield key, load_fields(self.path, key, fields)
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    def held_back_keys(self) -> list[str]:
        return [key for (key,) in self._rows("SELECT key FROM {s}.contacts WHERE held_back")]

    def loops_ids(self, keys: Iterable[str]) -> dict[str, str]:
        return dict(self._select_in(
            "SELECT key, loops_id FROM {s}.contacts WHERE loops_id IS NOT NULL AND key = ANY(%s)", keys))

    def tombstones_for(self, keys: Iterable[str]) -> dict[str, Tombstone]:
        rows = self._select_in(
            "SELECT key, deleted_at, unsubscribed, left_lists FROM {s}.tombstones WHERE key = ANY(%s)", keys)
        return {key: Tombstone(key, at, unsub, tuple(lists)) for key, at, unsub, lists in rows}

    def tombstone_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM {s}.tombstones")[0][0])

    # -- writing ---------------------------------------------------------------------------------
    def save(self, records: Iterable[Record]) -> None:
        now = utc_now()
        with self.transaction(), self._db.cursor() as cursor:
            cursor.executemany(
                self._q("INSERT INTO {s}.contacts AS c (key, row_hash, held_back, fields, synced_at, loops_id) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                        "row_hash = excluded.row_hash, held_back = excluded.held_back, fields = excluded.fields, "
                        "synced_at = excluded.synced_at, loops_id = coalesce(excluded.loops_id, c.loops_id)"),
                [(key, row_hash, held, dump_fields(fields), now, loops_id)
                 for key, row_hash, fields, held, loops_id in records],
            )
            self._bump_generation()

    def save_tombstones(self, tombstones: Iterable[Tombstone]) -> None:
        with self.transaction(), self._db.cursor() as cursor:
            cursor.executemany(
                self._q("INSERT INTO {s}.tombstones (key, deleted_at, unsubscribed, left_lists) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET deleted_at = excluded.deleted_at, "
                        "unsubscribed = excluded.unsubscribed, left_lists = excluded.left_lists"),
                [(t.key, t.deleted_at, t.unsubscribed, list(t.left_lists)) for t in tombstones],
            )

    def drop_tombstone(self, key: str) -> bool:
        with self.transaction():
            return self._db.execute(self._q("DELETE FROM {s}.tombstones WHERE key = %s"), (key,)).rowcount > 0

    def save_frame(self, frame: pl.DataFrame, key: str, row_hash: str, fields: list[str]) -> None:
        """A baseline: COPY into a temporary table, then replace those keys (the last row of a key wins;
        held-back flag and Loops' id start afresh, as in the SQLite store)."""
        now = utc_now()
        encoded = frame.select(
            pl.col(key), pl.col(row_hash), pl.struct(sorted(fields)).struct.json_encode().alias("fields")
        )
        statement_s = max(self._statement_s or bounds.STATEMENT_TIMEOUT_S,
                          frame.height / 1e6 * bounds.BASELINE_S_PER_MILLION)
        with self.transaction(statement_s):
            if self._statement_s:  # the server's bound too, unless someone turned it off
                self._db.execute("SELECT set_config('statement_timeout', %s, true)", (f"{statement_s * 1000:.0f}ms",))
            self._db.execute("CREATE TEMPORARY TABLE bulksync_baseline (key text COLLATE \"C\", row_hash bigint, "
                             "fields text, position bigserial) ON COMMIT DROP")
            copying = self._db.cursor().copy("COPY bulksync_baseline (key, row_hash, fields) FROM STDIN (FORMAT csv)")
            with copying as copy:
                for chunk in encoded.iter_slices(50_000):
                    copy.write(chunk.write_csv(include_header=False))
            # Delete, then insert: a replace, and faster than an upsert row by row.
            self._db.execute(self._q("DELETE FROM {s}.contacts c USING bulksync_baseline b WHERE c.key = b.key"))
            self._db.execute(
                self._q("INSERT INTO {s}.contacts (key, row_hash, fields, synced_at) SELECT DISTINCT ON (key) key, "
                        "row_hash, fields, %s FROM bulksync_baseline ORDER BY key, position DESC"),
                (now,),
            )
            self._bump_generation()

    def forget(self, keys: Iterable[str]) -> None:
        with self.transaction():
            for batch in batches(keys, _BATCH):
                self._watchdog.renew()
                self._db.execute(self._q("DELETE FROM {s}.contacts WHERE key = ANY(%s)"), (batch,))
            self._bump_generation()

    def save_snapshot(self, hashes: pl.DataFrame) -> None:
        """Nothing to keep: :meth:`hashes` reads a million in about half a second."""

    def _bump_generation(self) -> None:
        self._db.execute(self._q(
            "INSERT INTO {s}.meta (name, value) VALUES ('generation', '1') "
            "ON CONFLICT (name) DO UPDATE SET value = (meta.value::bigint + 1)::text"
        ))


def state_exists(url: StateURL) -> bool:
    """Whether a run made this schema's state already."""
    with PostgresStateStore.open(url, readonly=True) as store:
        return store._schema != "pg_temp"


