"""The PostgreSQL state against a real server (tests/state/conftest.py starts it): its schema, its
lock, losing the connection mid-run, kill -9, dry runs, the commands that use a state, and the
password, which nothing may print. The interface's own tests run on it too (test_state.py)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from psycopg import sql

from bench.pgserver import PostgresServer
from bulksync.columns import KEY, STATE_HASH
from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.errors import StateError, StateLostError
from bulksync.location import StateURL
from bulksync.loops import record
from bulksync.state import open_state, pg_tables
from bulksync.state import postgres as pg_store
from bulksync.state.lock import LOCK_CLASS, lock_key
from bulksync.state.store import Tombstone
from tests.helpers import (
    ROOT,
    assert_loops_equals_source,
    emails_in_state,
    generated,
    spawn,
    wait_for_contacts,
    wait_until,
    writes,
)
from tests.state.pg import lock_holder, redacted, terminate

TABLES = ("meta", "contacts", "tombstones", "runner")
HOLD_LOCK = (
    "import os, time\n"
    "from bulksync.location import StateURL\n"
    "from bulksync.state import open_state\n"
    "store = open_state(StateURL(os.environ['BULKSYNC_STATE']))\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def tables(postgres: PostgresServer, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of ``schema``, in order."""
    with postgres.admin() as admin:
        return {name: admin.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY 1").format(
            sql.Identifier(schema), sql.Identifier(name))).fetchall() for name in TABLES}


def schema_exists(postgres: PostgresServer, schema: str) -> bool:
    with postgres.admin() as admin:
        return admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def hold_lock(url: StateURL) -> subprocess.Popen[str]:
    """Another process that opens the state for writing and keeps it open."""
    env = {**os.environ, "BULKSYNC_STATE": url.url, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK], env=env, text=True, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def kill_and_wait_for_the_lock(postgres: PostgresServer, url: StateURL, process: subprocess.Popen[Any]) -> None:
    process.kill()
    process.communicate(timeout=30)
    wait_until(lambda: lock_holder(postgres, url) is None, "the server to release the killed run's lock")


# -- the schema ----------------------------------------------------------------------------------------


def test_the_schema_is_made_on_first_use_and_versioned(postgres: PostgresServer, pg_url: StateURL) -> None:
    assert not schema_exists(postgres, pg_url.schema)

    with open_state(pg_url) as store:
        assert store.meta("schema_version") == pg_tables.SCHEMA_VERSION == "1"
        assert store.count() == 0 and store.generation() == 0
    before = tables(postgres, pg_url.schema)
    open_state(pg_url).close()  # opening again changes nothing but the lock's holder, cleared on close

    assert tables(postgres, pg_url.schema) == before
    assert before["runner"] == []  # released cleanly: nothing to take over


def test_a_later_version_migrates_the_schema_through_its_hook(
    postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_state(pg_url) as store:
        store.save([("ada@example.com", 5, {"email": "ada@example.com"}, False, None)])
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", "2")
    monkeypatch.setattr(pg_store, "MIGRATIONS", {"1": ("ALTER TABLE {s}.contacts ADD COLUMN note text",)})

    with pytest.raises(StateError, match=r"at an older state version; run a sync once to upgrade it$"):
        open_state(pg_url, readonly=True)  # a dry run never migrates
    with open_state(pg_url) as store:
        assert store.meta("schema_version") == "2" and store.count() == 1
    with postgres_admin(pg_url) as admin:
        assert admin.execute(sql.SQL("SELECT note FROM {}.contacts").format(sql.Identifier(pg_url.schema))).fetchall() \
            == [(None,)]


def postgres_admin(url: StateURL) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url.conninfo, autocommit=True)


def test_a_schema_of_a_newer_bulksync_or_of_someone_else_is_refused_untouched(
    postgres: PostgresServer, pg_url: StateURL
) -> None:
    with open_state(pg_url) as store:
        store.set_meta({"schema_version": "7"})
    before = tables(postgres, pg_url.schema)

    with pytest.raises(StateError) as newer:
        open_state(pg_url)
    with postgres_admin(pg_url) as admin:
        admin.execute("CREATE SCHEMA other_app")
        admin.execute("CREATE TABLE other_app.users (id int)")
    try:
        with pytest.raises(StateError) as foreign:
            open_state(StateURL(postgres.url("other_app")))
    finally:
        with postgres_admin(pg_url) as admin:
            admin.execute("DROP SCHEMA other_app CASCADE")

    assert str(newer.value) == (
        f"{redacted(postgres, pg_url)}: schema {pg_url.schema} is at state version '7'; this bulksync reads 1: use "
        "the bulksync that made it, or a newer one"
    )
    assert tables(postgres, pg_url.schema) == before
    assert str(foreign.value) == (
        f"{postgres.url('other_app', password=False)}: schema other_app holds tables that are not a bulksync state "
        "(users); pick another schema with ?schema=NAME"
    )


def test_an_empty_schema_made_by_an_administrator_is_filled(postgres: PostgresServer, pg_url: StateURL) -> None:
    with postgres_admin(pg_url) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_url.schema)))

    with open_state(pg_url) as store:
        store.save([("ada@example.com", 5, {}, False, None)])

    assert [row[0] for row in tables(postgres, pg_url.schema)["contacts"]] == ["ada@example.com"]


def test_two_schemas_are_two_independent_states(postgres: PostgresServer, pg_url: StateURL) -> None:
    other = StateURL(postgres.url(pg_url.schema + "_b"))
    try:
        with open_state(pg_url) as first, open_state(other) as second:  # two locks: both write at once
            first.save([("a@x.io", 1, {"email": "a@x.io"}, False, None)])
            second.save([("b@x.io", 2, {"email": "b@x.io"}, False, None)])
            second.save([("c@x.io", 3, {"email": "c@x.io"}, False, None)])
            first.set_meta({"key": "email"})
            second.set_meta({"key": "userId"})
        assert (emails_in_state(pg_url), emails_in_state(other)) == ({"a@x.io"}, {"b@x.io", "c@x.io"})
        with open_state(pg_url, readonly=True) as first, open_state(other, readonly=True) as second:
            assert (first.generation(), second.generation()) == (1, 2)
            assert (first.meta("key"), second.meta("key")) == ("email", "userId")
    finally:
        with postgres.admin() as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other.schema)))


# -- reading fast, reading read-only ---------------------------------------------------------------------


def test_hashes_reads_every_page_range_of_a_big_table(pg_url: StateURL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "_CHUNK_PAGES", 3)  # many ranges, the last one open-ended
    records = [(f"user{i:05d}@example.com", random.Random(i).randint(-(2**63), 2**63 - 1), {"n": str(i) * 20},
                False, None) for i in range(5000)]
    with open_state(pg_url) as store:
        for start in range(0, len(records), 700):
            store.save(records[start : start + 700])
        store.forget([f"user{i:05d}@example.com" for i in range(0, 5000, 7)])  # holes in the pages

        frame = store.hashes()

    expected = {key: row_hash for i, (key, row_hash, *_) in enumerate(records) if i % 7}
    assert frame.schema == pl.Schema({KEY: pl.String, STATE_HASH: pl.Int64})
    assert dict(zip(frame[KEY], frame[STATE_HASH], strict=True)) == expected and frame.height == len(expected)


def test_contacts_come_in_key_order_a_page_at_a_time(pg_url: StateURL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_store, "_BATCH", 100)
    keys = [f"k{i:04d}" for i in range(1234)]
    with open_state(pg_url) as store:
        store.save([(key, i, {"email": key}, False, None) for i, key in enumerate(reversed(keys))])

        assert [key for key, _ in store.contacts()] == keys
        assert len(store.fields_for(keys)) == 1234


def test_read_only_on_a_schema_not_made_yet_makes_nothing_and_refuses_writes(
    postgres: PostgresServer, pg_url: StateURL
) -> None:
    with open_state(pg_url, readonly=True) as store:
        assert (store.count(), store.hashes().height, store.fields_for(["a@x.io"]), store.meta("key")) == (
            0, 0, {}, None)
        with pytest.raises(StateError, match=r"opened read-only \(dry run\); nothing may be written$"):
            store.save([("a@x.io", 1, {}, False, None)])
        with pytest.raises(StateError, match="read-only"):
            store.set_meta({"key": "email"})

    assert not schema_exists(postgres, pg_url.schema)


def test_read_only_needs_no_lock_and_changes_nothing(postgres: PostgresServer, pg_url: StateURL) -> None:
    with open_state(pg_url) as writer:
        writer.save([("ada@example.com", 7, {"email": "ada@example.com"}, False, None)])
        before = tables(postgres, pg_url.schema)
        with open_state(pg_url, readonly=True) as reader:  # while a run holds the lock
            assert reader.hashes().to_dicts() == [{KEY: "ada@example.com", STATE_HASH: 7}]
            with pytest.raises(StateError, match="read-only"):
                reader.forget(["ada@example.com"])
        assert tables(postgres, pg_url.schema) == before


# -- the lock --------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_at_once_naming_the_first(postgres: PostgresServer, pg_url: StateURL) -> None:
    with open_state(pg_url) as store:
        started = tables(postgres, pg_url.schema)["runner"][0][3]
        with pytest.raises(StateError) as refused:
            open_state(pg_url)
        store.save([("a@x.io", 1, {}, False, None)])  # the holder goes on

    assert str(refused.value) == (
        f"{redacted(postgres, pg_url)} is in use by another bulksync run (pid {os.getpid()} on "
        f"{socket.gethostname()}, started {started}); wait for it to finish, or stop it"
    )
    open_state(pg_url).close()  # released on close


def test_the_lock_refuses_a_second_run_with_exit_2_and_is_freed_when_its_holder_is_killed(
    cli: Any, emulator: LoopsEmulator, postgres: PostgresServer, pg_url: StateURL
) -> None:
    holder = hold_lock(pg_url)
    try:
        refused = cli("sync", "contacts.csv", "--state", pg_url.url)
        assert refused.status == 2
        assert refused.err.startswith(
            f"bulksync: error: {redacted(postgres, pg_url)} is in use by another bulksync run (pid {holder.pid} on "
            f"{socket.gethostname()}, started 20"
        )
        assert refused.err.endswith("wait for it to finish, or stop it\n")
        assert emulator.stats()["requests"] == 0
    finally:
        kill_and_wait_for_the_lock(postgres, pg_url, holder)

    result = cli("sync", "contacts.csv", "--state", pg_url.url)

    assert result.status == 0, result.err
    assert f"taking over the lock of pid {holder.pid} on {socket.gethostname()}, started 20" in result.err
    assert result.summary()["created"] == 47 and tables(postgres, pg_url.schema)["runner"] == []


# -- kill -9 and a lost connection -------------------------------------------------------------------------


def test_kill_9_mid_push_then_the_same_command_converges(
    loops: EmulatorServer, workdir: Path, postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKSYNC_STATE", pg_url.url)  # the child runs take their state from the environment
    loops.emulator.configure(faults=Faults(latency_ms=20, jitter_ms=30))
    generated(workdir, 150)
    chance = random.Random(11)
    killed: list[int] = []
    for _ in range(3):
        before = len(loops.emulator.contacts())
        run = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "100", "--concurrency", "6")
        wait_for_contacts(loops.emulator, min(150, before + chance.randint(1, 25)))
        kill_and_wait_for_the_lock(postgres, pg_url, run)
        killed.append(run.pid)
        # The state never claims a write Loops did not confirm.
        assert emails_in_state(pg_url) <= {c["email"] for c in loops.emulator.contacts()}
    final = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "200")
    _, err = final.communicate(timeout=120)

    assert final.returncode == 0, err
    assert f"taking over the lock of pid {killed[-1]} on" in err
    assert_loops_equals_source(loops.emulator, 150)
    assert len(loops.emulator.contacts()) == 150  # nobody twice
    assert emails_in_state(pg_url) == {c["email"] for c in loops.emulator.contacts()}


def terminate_when(
    emulator: LoopsEmulator, contacts: int, postgres: PostgresServer, url: StateURL
) -> Callable[[], int]:
    """From another thread: once Loops holds ``contacts``, end the run's connection to its state the way
    an administrator (or a failover) does. Returns a join that gives the writes Loops had by then."""
    sent_when_gone: list[int] = []

    def end_it() -> None:
        wait_for_contacts(emulator, contacts)
        terminate(postgres, lock_holder(postgres, url))
        sent_when_gone.append(len(writes(emulator)))

    thread = threading.Thread(target=end_it, daemon=True)
    thread.start()

    def join() -> int:
        thread.join(timeout=60)
        assert sent_when_gone, "the run's connection was never terminated"
        return sent_when_gone[0]

    return join


def test_a_connection_terminated_mid_run_stops_the_sending_at_once_then_the_next_run_converges(
    cli: Any, loops: EmulatorServer, workdir: Path, postgres: PostgresServer, pg_url: StateURL,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Saves so rare that only noticing the lost connection itself can stop the run in time.
    monkeypatch.setattr(record, "STATE_COMMIT_SECONDS", 3600.0)
    monkeypatch.setattr(record, "STATE_COMMIT_EVERY", 100_000)
    loops.emulator.configure(faults=Faults(latency_ms=20))
    generated(workdir, 400)
    concurrency = 4
    sent_when_gone = terminate_when(loops.emulator, 40, postgres, pg_url)

    lost = cli("sync", "people.csv", "--state", pg_url.url, "--rate-limit", "100", "--concurrency", str(concurrency))

    sent = len(writes(loops.emulator))
    assert lost.status == 1, lost.err
    assert lost.err.endswith(
        f"bulksync: error: {redacted(postgres, pg_url)}: lost the connection to the state database (terminating "
        "connection due to administrator command), and with it the run lock: the run stopped sending; run it again "
        "to settle what was in flight\n"
    )
    # Only what was in flight, or had just been taken by a worker, went out after the connection was gone.
    assert sent - sent_when_gone() <= 2 * concurrency
    assert sent < 400
    in_loops, in_state = {c["email"] for c in loops.emulator.contacts()}, emails_in_state(pg_url)
    assert in_state <= in_loops
    assert lost.summary()["not_recorded"] == len(in_loops) - len(in_state) > 0  # the summary says what it lacks

    rerun = cli("sync", "people.csv", "--state", pg_url.url, "--rate-limit", "1000")

    assert rerun.status == 0, rerun.err
    assert_loops_equals_source(loops.emulator, 400)
    assert len(loops.emulator.contacts()) == 400
    assert emails_in_state(pg_url) == {c["email"] for c in loops.emulator.contacts()}


def test_a_lost_connection_is_noticed_before_any_write_and_stays_lost(
    postgres: PostgresServer, pg_url: StateURL
) -> None:
    store = open_state(pg_url)
    store.save([("a@x.io", 1, {}, False, None)])
    backend = lock_holder(postgres, pg_url)
    with postgres.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    wait_until(lambda: lock_holder(postgres, pg_url) is None, "the terminated connection's lock to go")

    with pytest.raises(StateLostError, match="lost the connection to the state database") as noticed:
        store.check_alive()
    with pytest.raises(StateLostError) as later:
        store.save([("b@x.io", 2, {}, False, None)])
    store.close()  # nothing left to release: no error

    assert noticed.value.exit_status == 1 and str(later.value) == str(noticed.value)
    assert emails_in_state(pg_url) == {"a@x.io"}


# -- the commands on a PostgreSQL state ----------------------------------------------------------------------


def test_a_dry_run_leaves_every_table_as_it_was(cli: Any, postgres: PostgresServer, pg_url: StateURL) -> None:
    assert cli("sync", "contacts.csv", "--state", pg_url.url, "--dry-run").status == 0
    assert not schema_exists(postgres, pg_url.schema)  # nor makes the schema
    assert cli("sync", "contacts.csv", "--state", pg_url.url).status == 0
    before = tables(postgres, pg_url.schema)

    dry = cli("sync", "contacts_changed.csv", "--state", pg_url.url, "--dry-run", "--delete-missing",
              "--max-delete", "100%")

    assert dry.status == 0, dry.err
    assert dry.summary()["dry_run"] is True and dry.summary()["updated"] > 0
    assert tables(postgres, pg_url.schema) == before


def test_baseline_show_plan_and_apply_on_a_postgresql_state(
    cli: Any, emulator: LoopsEmulator, workdir: Path, postgres: PostgresServer, pg_url: StateURL,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown = redacted(postgres, pg_url)
    missing = cli("state", "show", "--state", pg_url.url)
    assert (missing.status, missing.err) == (
        2, f"bulksync: error: {shown}: no such state; a first sync (or 'bulksync state baseline') makes it\n")

    baseline = cli("state", "baseline", "contacts.csv", "--state", pg_url.url)
    assert baseline.status == 0, baseline.err
    assert baseline.out == (f"Recorded 47 contacts of contacts.csv as already synced in {shown} (5 rows rejected); "
                            "nothing was sent.\n")
    show = cli("state", "show", "--state", pg_url.url)
    assert show.status == 0
    assert show.out.splitlines()[:4] == [
        f"state              {shown}",
        f"schema             {pg_url.schema} (its lock in pg_locks: classid {LOCK_CLASS}, "
        f"objid {lock_key(pg_url.schema)})",
        "contacts           47", "key                email"]

    monkeypatch.setenv("BULKSYNC_STATE", pg_url.url)  # from here on, no --state: the environment names it
    planned = cli("sync", "contacts_changed.csv", "--dry-run", "--plan", "changes.plan")
    assert planned.status == 0, planned.err
    header = json.loads((workdir / "changes.plan").read_text().splitlines()[0])
    assert header["state"] == shown  # no password in the plan file
    applied = cli("apply", "changes.plan", "--create-properties")
    assert applied.status == 0, applied.err
    assert len(writes(emulator)) == sum(planned.summary()[kind] for kind in ("created", "updated", "deleted")) > 0

    with open_state(pg_url) as store:
        store.save_tombstones([Tombstone("gone@example.com", "2026-01-01T00:00:00Z", True)])
    dropped = cli("state", "drop-tombstone", "gone@example.com")
    assert dropped.status == 0, dropped.err
    assert cli("state", "show").out.splitlines()[-1].startswith("tombstones         0 ")


def test_apply_finds_the_password_in_the_environment_or_says_it_has_none(
    cli: Any, workdir: Path, postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("sync", "contacts.csv", "--state", pg_url.url, "--dry-run", "--plan", "p.plan").status == 0
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(workdir / "no-such-pgpass"))

    refused = cli("apply", "p.plan", "--create-properties")

    assert refused.status == 2
    shown = redacted(postgres, pg_url)
    assert refused.err.startswith(f"bulksync: error: cannot connect to the state database {shown}: ")
    assert "no password supplied" in refused.err and "BULKSYNC_STATE, PGPASSWORD or ~/.pgpass" in refused.err
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    assert cli("apply", "p.plan", "--create-properties").status == 0


def test_the_password_is_never_printed_nor_written(
    cli: Any, workdir: Path, postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = StateURL(pg_url.url.replace(postgres.password, "Wrong-Secret-77"))
    typed_badly = pg_url.url.replace("schema=", "schema=Not-A-Name-")
    outputs = [
        cli("sync", "contacts.csv", "--debug", "-v", "--state", pg_url.url, "--log-file", "log.txt"),
        cli("sync", "contacts_changed.csv", "--debug", "--state", pg_url.url, "--dry-run", "--plan", "p.plan"),
        cli("state", "show", "--debug", "--state", pg_url.url),
        cli("sync", "contacts.csv", "--debug", "--state", wrong.url),
        cli("state", "show", "--debug", "--state", typed_badly),
        cli("sync", "contacts.csv", "--debug", "--state", postgres.url("x").replace(str(postgres.port), "1")),
    ]
    monkeypatch.setenv("BULKSYNC_STATE", typed_badly)
    outputs.append(cli("state", "show", "--debug"))

    usage = capsys.readouterr().err  # argparse's own errors: a --state, or a $BULKSYNC_STATE, it cannot use

    assert [o.status for o in outputs] == [0, 0, 0, 2, 2, 2, 2]
    assert "password authentication failed" in outputs[3].err
    assert "Connection refused" in outputs[5].err
    assert usage.count("is not a plain name (lowercase letters, digits and _, at most 63, not starting with pg_); "
                       "pick another ?schema=\n") == 2
    texts = [usage] + [o.out + o.err for o in outputs]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in workdir.iterdir() if p.is_file()]
    assert not [t for t in texts if postgres.password in t or "Wrong-Secret-77" in t]


def test_without_psycopg_the_error_names_the_extra(
    cli: Any, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "bulksync.state.postgres")

    result = cli("sync", "contacts.csv", "--state", pg_url.url)

    assert (result.status, result.err) == (
        2, "bulksync: error: a PostgreSQL state needs psycopg, which is not installed: "
           "pip install 'bulksync[postgres]'\n")
