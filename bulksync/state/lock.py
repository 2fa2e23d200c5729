"""One run at a time per state file: an exclusive ``flock`` on ``<state>.lock``.

The kernel drops the lock when its holder dies, even by ``kill -9``, so a lock left by a killed
run is simply taken over. The file names its holder (pid, start time) for the message a second
run prints. (A PostgreSQL state holds an advisory lock instead, on its own connection: see
``postgres.py``; both name their holder in the same words.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bulksync.errors import StateError
from bulksync.files import FileProblem, open_private_fd
from bulksync.state.store import utc_now

log = logging.getLogger("bulksync")
LOCK_CLASS = 0x62756C6B  # "bulk": the first key of bulksync's PostgreSQL advisory locks; the second is the schema's


def lock_key(schema: str) -> int:
    """A PostgreSQL schema's advisory lock key (advisory locks are per database, as schemas are)."""
    return int.from_bytes(hashlib.blake2b(schema.encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


@contextmanager
def run_lock(state_path: Path) -> Iterator[None]:
    """Hold the state file's lock for the block, or raise StateError naming the run that holds it."""
    path = lock_path(state_path)
    try:
        fd = open_private_fd(path, os.O_RDWR | os.O_NONBLOCK)  # a FIFO in its place must not hang the open
    except FileProblem as problem:
        raise StateError(
            f"cannot take the run lock {path}: {problem.reason}. A run writes the state: put --state on a "
            "writable disk (a dry run and 'bulksync state show' work read-only)"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StateError(f"the run lock {path} is not a regular file; remove it (bulksync makes a new one)")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use(state_path, _read_holder(fd)) from None
        taking_over(_read_holder(fd))
        _write_holder(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released cleanly: nothing to take over next time
    finally:
        os.close(fd)  # closing drops the flock


def _read_holder(fd: int) -> dict[str, object]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(fd, 4096) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(this_run()).encode())
    os.fsync(fd)


def this_run() -> dict[str, object]:
    """How a lock names its holder."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now()}


def in_use(state: object, holder: dict[str, object]) -> StateError:
    """The refusal a second run gets, naming the run that holds the lock."""
    return StateError(
        f"{state} is in use by another bulksync run ({_describe(holder)}); wait for it to finish, or stop it"
    )


def taking_over(previous: dict[str, object]) -> None:
    """A lock whose last holder ended without releasing it (killed): say so, and take it."""
    if previous.get("pid") and (previous.get("pid"), previous.get("host")) != (os.getpid(), socket.gethostname()):
        log.warning("taking over the lock of %s, which ended without releasing it", _describe(previous))


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
