"""A PostgreSQL state under hostile conditions: passwords holding URL syntax, a table locked by
another session, a proxy that stops forwarding, a signal while the state does not answer, a state
lost while an outage holds the run, and a connection on a descriptor past 1023."""

from __future__ import annotations

import os
import re
import resource
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench.pgserver import PostgresServer
from bulksync.config import Runtime, sync_config
from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.errors import StateError, StateLostError
from bulksync.location import StateURL, url_secrets
from bulksync.loops import record
from bulksync.state import open_state, pg_connect
from bulksync.state.lock import lock_key
from bulksync.state.postgres import PostgresStateStore
from bulksync.sync import run_sync
from tests.helpers import (
    API_KEY,
    IN_PROCESS_URL,
    ROOT,
    FakeClock,
    emails_in_state,
    generated,
    spawn,
    wait_for_contacts,
    wait_until,
)
from tests.state.pg import StallingProxy, lock_holder, redacted, role, table_locked, terminate, waiting_for_a_lock

README = (ROOT / "README.md").read_text(encoding="utf-8")
LOST = ("lost the connection to the state database ({}), and with it the run lock: the run stopped sending; "
        "run it again to settle what was in flight")

# -- passwords ---------------------------------------------------------------------------------------------


def test_a_url_is_read_as_libpq_reads_it_and_shown_without_its_passwords() -> None:
    url = StateURL("postgresql://q:pa?ss#Word@h:5432/db?sslpassword=Ssl-Secret&schema=users&sslmode=require")

    assert str(url) == repr(url)[10:-2] == "postgresql://q@h:5432/db?schema=users&sslmode=require"
    assert url.schema == "users"
    assert conninfo_to_dict(url.conninfo) == {"user": "q", "password": "pa?ss#Word", "host": "h", "port": "5432",
                                              "dbname": "db", "sslpassword": "Ssl-Secret", "sslmode": "require"}
    assert set(url.secrets) == {"pa?ss#Word", "Ssl-Secret"}
    encoded = StateURL("postgresql://q:p%40ss%2Fw0rd@h/db?password=also%26this")
    assert str(encoded) == "postgresql://q@h/db" and set(encoded.secrets) == {
        "p%40ss%2Fw0rd", "p@ss/w0rd", "also%26this", "also&this"}
    # A password of a few letters blanks nothing in messages (it would blank those letters in every
    # word), and is never shown either: every message names a URL without its password.
    short = StateURL("postgresql://q:ab@h/db?password=xyz")
    assert (short.secrets, str(short)) == ((), "postgresql://q@h/db")


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://u:Sec@ret-Part-1@h/db", "holds an '@' libpq would take for part of the host"),
    ("postgresql://u:Sec/ret-Part-2@h/db", "holds an '@' libpq would take for part of the host"),
    ("postgres://u:Sec%ret-Part-3@h/db", "holds a '%' that starts no %XX escape"),
    ("postgresql://h/db?password=Secret&ret-Part-4", "has a parameter without '='"),
])
def test_a_url_libpq_would_misread_is_refused_without_quoting_its_password(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as refused:
        StateURL(url)

    assert str(refused.value).startswith(f"a {url.split(':', maxsplit=1)[0]}:// state URL {problem}")
    assert "ret-Part" not in str(refused.value) and "Secret" not in str(refused.value)
    assert any(secret.startswith("Sec") for secret in url_secrets(url))  # the CLI blanks it anywhere


def test_a_libpq_error_quoting_the_url_reaches_python_without_the_password() -> None:
    with pytest.raises(StateError) as refused:
        open_state(StateURL("postgresql://u:Sec-ret-99@[::1/db?sslpassword=Ssl-Secret-98"))

    assert str(refused.value) == (
        'postgresql://u@[::1/db: not a PostgreSQL URL libpq can use (end of string reached when looking for '
        'matching "]" in IPv6 host address in URI: "postgresql://u:[redacted]@[::1/db?sslpassword=[redacted]")'
    )


PASSWORDS = {  # a password, and whether libpq reads it typed into the URL as it is
    "Pa?ss-Word-1": True, "Pa#ss-Word-2": True, "Pa@ss-Word-3": False, "Pa/ss-Word-4": False, "Pa%ss-Word-5": False,
}


@pytest.mark.parametrize("password", PASSWORDS)
def test_no_password_is_printed_nor_written_whatever_it_holds(
    cli: Any, workdir: Path, postgres: PostgresServer, pg_url: StateURL, password: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ssl = "Ssl-Pass-" + secrets.token_hex(4)  # unused without a client certificate, yet never shown
    with role(postgres, "r_" + secrets.token_hex(4), password) as base:
        good = f"{base}?schema={pg_url.schema}&sslpassword={ssl}"
        typed = good.replace(quote(password, safe=""), password)
        wrong = good.replace(quote(password, safe=""), quote(password + "-not", safe=""))
        outputs = [
            cli("sync", "contacts.csv", "--debug", "-v", "--state", good, "--log-file", "log.txt"),
            cli("sync", "contacts_changed.csv", "--debug", "--state", good, "--dry-run", "--plan", "p.plan"),
            cli("state", "show", "--debug", "--state", good),
            cli("state", "baseline", "contacts.csv", "--state", good),
            cli("sync", "contacts.csv", "--debug", "--state", typed),
            cli("sync", "contacts.csv", "--debug", "--state", wrong),
        ]
    usage = capsys.readouterr().err  # argparse's own: a --state it cannot use

    assert [o.status for o in outputs] == [0, 0, 0, 0, 0 if PASSWORDS[password] else 2, 2], outputs[4].err
    assert "password authentication failed" in outputs[5].err
    assert ("percent-encode" in usage) is not PASSWORDS[password]
    texts = [usage] + [o.out + o.err for o in outputs]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in workdir.iterdir() if p.is_file()]
    shown = [form for form in (password, quote(password, safe=""), "ss-Word", ssl) if any(form in t for t in texts)]
    assert shown == []


# -- a state that does not answer ------------------------------------------------------------------------------


def lock_contacts_when(
    emulator: LoopsEmulator, contacts: int, postgres: PostgresServer, url: StateURL
) -> tuple[threading.Event, Callable[[], None]]:
    """From another thread: once Loops holds ``contacts``, another session locks the state's contacts
    table (at most a minute). Returns the event set once it is locked, and a release."""
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        wait_for_contacts(emulator, contacts)
        with table_locked(postgres, url.schema):
            locked.set()
            done.wait(60)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()

    def release() -> None:
        done.set()
        thread.join(timeout=30)
        assert locked.is_set(), "the table was never locked"

    return locked, release


def test_a_table_locked_by_another_session_ends_the_run_at_the_lock_timeout(
    cli: Any, loops: EmulatorServer, workdir: Path, postgres: PostgresServer, pg_url: StateURL,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_connect, "LOCK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(record, "STATE_COMMIT_EVERY", 10)
    loops.emulator.configure(faults=Faults(latency_ms=20))
    generated(workdir, 400)
    _, release = lock_contacts_when(loops.emulator, 40, postgres, pg_url)
    try:
        stalled = cli("sync", "people.csv", "--state", pg_url.url, "--rate-limit", "100", "--concurrency", "4")
    finally:
        release()

    assert stalled.status == 1, stalled.err
    assert stalled.err.endswith(
        f"bulksync: error: {redacted(postgres, pg_url)}: the state database did not answer in time (canceling "
        f"statement due to lock timeout): the run stopped sending; another session may hold a lock in schema "
        f"{pg_url.schema} (see pg_locks); run it again to settle what was in flight\n"
    )
    in_loops, in_state = {c["email"] for c in loops.emulator.contacts()}, emails_in_state(pg_url)
    assert in_state < in_loops and len(in_loops) < 400  # nothing claimed that was not sent; it stopped
    assert stalled.summary()["not_recorded"] == len(in_loops) - len(in_state)
    assert lock_holder(postgres, pg_url) is None  # its session ended with the run


def test_sigterm_ends_a_run_whose_state_waits_on_a_lock_with_no_timeout(
    loops: EmulatorServer, workdir: Path, postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The URL turns the server's bounds off: only the signal can end the wait.
    unbounded = pg_url.url + "&options=-c%20lock_timeout%3D0%20-c%20statement_timeout%3D0"
    monkeypatch.setenv("BULKSYNC_STATE", unbounded)
    loops.emulator.configure(faults=Faults(latency_ms=20))
    generated(workdir, 400)
    locked, release = lock_contacts_when(loops.emulator, 30, postgres, pg_url)
    run = spawn(loops, workdir, "sync", "people.csv", "--rate-limit", "100", "--concurrency", "4",
                "--summary-json", "summary.json", "--report", "report.csv")
    try:
        wait_until(lambda: locked.is_set() and waiting_for_a_lock(postgres), "the run to wait for the locked table")
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=45)  # the client's own bound (75 s) is far off: only the signal ends it
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        release()

    assert run.returncode == 1, err
    assert err.endswith(f"bulksync: error: {StateURL(unbounded)}: "
                        + LOST.format("no answer 5s after the run was asked to stop") + "\n")
    in_loops, in_state = {c["email"] for c in loops.emulator.contacts()}, emails_in_state(pg_url)
    assert in_state < in_loops and len(in_loops) < 400
    assert (workdir / "summary.json").read_text().count(f'"not_recorded": {len(in_loops) - len(in_state)},') == 1


def test_a_proxy_that_stops_forwarding_cannot_hang_the_state(
    postgres: PostgresServer, pg_url: StateURL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_connect, "STATEMENT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(pg_connect, "CLIENT_MARGIN_S", 1.0)
    proxy = StallingProxy(postgres)
    failed: list[BaseException] = []
    try:
        url = StateURL(proxy.url(pg_url.schema, postgres.password))
        store = open_state(url)
        store.save([("a@x.io", 1, {}, False, None)])
        proxy.stall()  # the server never hears of what follows, so its statement timeout cannot help

        def save() -> None:
            try:
                store.save([("b@x.io", 2, {}, False, None)])
            except BaseException as exc:
                failed.append(exc)

        saving = threading.Thread(target=save, daemon=True)
        saving.start()
        saving.join(timeout=60)
    finally:
        proxy.close()  # ends whatever still waits on it
    store.close()

    assert [type(exc) for exc in failed] == [StateLostError]
    assert str(failed[0]) == f"{url}: " + LOST.format("no answer for 2s")
    wait_until(lambda: lock_holder(postgres, pg_url) is None, "the server to drop the proxied session")
    assert emails_in_state(pg_url) == {"a@x.io"}


def test_the_session_is_bounded_unless_the_url_bounds_it_itself(pg_url: StateURL) -> None:
    names = ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")

    def settings(url: StateURL) -> list[object]:
        store = open_state(url)
        assert isinstance(store, PostgresStateStore)
        with store:
            parameters = store._db.info.get_parameters()
            shown = [store._db.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone() for name in names]
            return [row[0] for row in shown if row] + [parameters.get("tcp_user_timeout"),
                                                       parameters.get("keepalives_idle")]

    assert settings(pg_url) == ["10s", "1min", "1min", "30000", "30"]
    assert settings(StateURL(pg_url.url + "&options=-c%20lock_timeout%3D3s&tcp_user_timeout=5000")) == [
        "3s", "1min", "1min", "5000", "30"]


def test_the_readmes_recipe_ends_the_lock_of_one_schema_only(postgres: PostgresServer, pg_url: StateURL) -> None:
    recipe = re.search(r"`(SELECT\s+pg_terminate_backend\(pid\) FROM pg_locks [^`]*)`", README)
    assert recipe is not None
    other = StateURL(postgres.url(pg_url.schema + "_b"))
    first, second = open_state(pg_url), open_state(other)
    try:
        with postgres.admin() as admin:
            admin.execute(" ".join(recipe[1].split()).replace("OBJID", str(lock_key(pg_url.schema))))
        wait_until(lambda: lock_holder(postgres, pg_url) is None, "the first schema's run to be ended")

        with pytest.raises(StateLostError):
            first.check_alive()
        second.check_alive()  # the other schema's run goes on
        assert lock_holder(postgres, other) is not None
    finally:
        first.close()
        second.close()
        with postgres.admin() as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other.schema)))


# -- a lost state, noticed before any send ---------------------------------------------------------------------


def test_a_state_lost_while_an_outage_holds_the_run_stops_the_probes_at_once(
    workdir: Path, team: LoopsEmulator, clock: FakeClock, postgres: PostgresServer, pg_url: StateURL
) -> None:
    team.configure(rate_algorithm="token-bucket")
    (workdir / "many.csv").write_text("email,firstName\n" + "".join(f"u{i}@example.com,U\n" for i in range(100)))
    team.start_outage(None, after=3)  # Loops never comes back: no answer will tell the run anything
    ended: list[int] = []

    def sleep(seconds: float) -> None:  # a worker waiting out the outage (the only thread that sleeps)
        if not ended and team.outage()["requests"] >= 12:
            terminate(postgres, lock_holder(postgres, pg_url))  # meanwhile a second runner may take the lock
            ended.append(team.outage()["requests"])
        clock.sleep(seconds)

    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=sleep)
    config = sync_config("many.csv", pg_url, api_key=API_KEY, base_url=IN_PROCESS_URL, environ={},
                         report="report.csv", concurrency=1, outage_wait="1h")

    with pytest.raises(StateLostError, match="lost the connection to the state database"):
        run_sync(config, runtime)

    assert ended and team.outage()["requests"] == ended[0]  # not one request after the lock was gone


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """The next descriptor this process opens is past 1023 (select() refuses those)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    fillers: list[int] = []
    while not fillers or fillers[-1] < 1030:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    try:
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_check_alive_works_on_a_connection_past_descriptor_1023(
    high_descriptors: None, postgres: PostgresServer, pg_url: StateURL
) -> None:
    store = open_state(pg_url)
    assert isinstance(store, PostgresStateStore) and store._db.fileno() > 1023
    store.check_alive()

    terminate(postgres, lock_holder(postgres, pg_url))

    with pytest.raises(StateLostError, match="lost the connection to the state database"):
        store.check_alive()
    store.close()

