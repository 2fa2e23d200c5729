"""What the PostgreSQL state tests share: looks into the server, and the ways a server misbehaves
(a session ended by an administrator, a table locked by someone else, a proxy that stops forwarding)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import quote

from psycopg import sql

from bench.pgserver import USER, PostgresServer
from bulksync.location import StateURL
from bulksync.state.lock import LOCK_CLASS, lock_key
from tests.helpers import wait_until


def lock_holder(postgres: PostgresServer, url: StateURL) -> int | None:
    """The server process of the connection that holds the schema's lock, if one does."""
    with postgres.admin() as admin:
        row = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 2", (LOCK_CLASS, lock_key(url.schema)),
        ).fetchone()
    return None if row is None else int(str(row[0]))


def redacted(postgres: PostgresServer, url: StateURL) -> str:
    return postgres.url(url.schema, password=False)


def terminate(postgres: PostgresServer, backend: int | None) -> None:
    """End a server process's session as an administrator (or a failover) does, and wait until it is gone."""
    with postgres.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        wait_until(lambda: admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone()
                   is None, "the terminated connection to end")


@contextmanager
def table_locked(postgres: PostgresServer, schema: str, table: str = "contacts") -> Iterator[None]:
    """Another session holds ``LOCK TABLE schema.table IN ACCESS EXCLUSIVE MODE`` for the block."""
    with postgres.admin() as admin:
        admin.autocommit = False
        admin.execute(sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(schema), sql.Identifier(table)))
        try:
            yield
        finally:
            admin.rollback()


def waiting_for_a_lock(postgres: PostgresServer) -> bool:
    """Whether a bulksync session waits for a lock now."""
    with postgres.admin() as admin:
        return admin.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'bulksync' "
                             "AND wait_event_type = 'Lock'").fetchone() is not None


@contextmanager
def role(postgres: PostgresServer, name: str, password: str) -> Iterator[str]:
    """A login role with ``password`` that may make schemas; yields the start of its URLs, the password
    percent-encoded (``postgresql://name:...@host:port/postgres``). Dropped with all it owns after."""
    with postgres.admin() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://{name}:{quote(password, safe='')}@127.0.0.1:{postgres.port}/postgres"
    finally:
        with postgres.admin() as admin:
            admin.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


class StallingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server that, once ``stall()`` is called, forwards
    nothing more either way: it keeps reading (its end still acknowledges) and holds every socket open."""

    def __init__(self, postgres: PostgresServer) -> None:
        self._upstream = ("127.0.0.1", postgres.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stalled = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, schema: str, password: str) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/postgres?schema={schema}"

    def stall(self) -> None:
        self._stalled.set()

    def close(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a pump blocked in recv() on it would keep it open
            sock.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._upstream)
                self._sockets += [client, server]
                for source, target in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if not self._stalled.is_set():
                    target.sendall(data)
