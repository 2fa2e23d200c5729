"""Files bulksync writes: private when bulksync creates them, untouched in mode when they exist."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from bulksync.errors import ConfigError

PRIVATE_MODE = 0o600  # states, reports, plans and logs hold personal data


def open_private_fd(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` (``os.O_WRONLY`` and so on), creating it if need be: a file this
    creates is readable by its owner only. Anything that exists already (a file, ``/dev/null``, a
    FIFO) keeps its mode: bulksync never changes the permissions of a file it did not create."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags | os.O_CREAT, PRIVATE_MODE)  # the mode applies only to a file created here
    except OSError as exc:
        raise FileProblem(path, exc) from None


class FileProblem(ConfigError):
    """A file bulksync must write cannot be: one line naming it and why (exit 2)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path, self.reason = path, os_problem(path, exc)
        super().__init__(f"cannot write {path}: {self.reason}")


def os_problem(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be opened, in words (the errno's own text is terse and sometimes wrong)."""
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if (problem := unwritable(path)) is not None:
        return problem
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"a part of the path ({_first_non_directory(path)}) is a file, not a directory"
    return exc.strerror or str(exc)


def _first_non_directory(path: Path) -> Path:
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def open_private(path: Path, *, append: bool = False) -> IO[str]:
    """A text file to write (truncated, or appended to), created private (see :func:`open_private_fd`)."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(open_private_fd(path, flags), "a" if append else "w", encoding="utf-8", newline="")


def create_private(path: Path) -> None:
    """Make sure ``path`` exists, creating it empty and private if it does not."""
    os.close(open_private_fd(path, os.O_WRONLY))


# Files bulksync keeps beside a state file: its lock, hash snapshots and SQLite's journals.
STATE_COMPANIONS = (".lock", ".hashes-", "-wal", "-shm", "-journal")


def refuse_clashes(
    inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None], state: str = "--state"
) -> None:
    """Refuse a run whose output would overwrite an input, a file beside the state, or another output.

    Compared by resolved path and by inode (a symlink, ``./`` or a hard link does not slip
    through); devices and FIFOs (``/dev/null``, ``/dev/stdout``) may take several outputs.
    """
    given_inputs = {name: path for name, path in inputs.items() if path is not None}
    seen: dict[str, Path] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        if problem := unwritable(path):
            raise ConfigError(f"{name} {path}: {problem}; nothing was read or sent")
        for other, target in given_inputs.items():
            if _same(path, target) or (other == state and _beside_state(path, target)):
                what = "a file bulksync keeps beside the state" if other == state and not _same(path, target) else other
                raise ConfigError(
                    f"{name} {path} is {what} ({target}): an output must never overwrite an input; "
                    f"nothing was read or sent. Pass {name} another path"
                )
        for other, earlier in seen.items():
            if _same(path, earlier) and not _special(path):
                raise ConfigError(
                    f"{name} {path} and {other} {earlier} are the same file: one would overwrite the other; "
                    "nothing was read or sent. Give each its own path"
                )
        seen[name] = path


def unwritable(path: Path, *, directory: bool = False) -> str | None:
    """Why a file (or, with ``directory``, a folder) could not be written at ``path``, if that can be
    told without writing: it is a directory (or a file), or a symbolic link leads nowhere."""
    if path.is_dir() and not directory:
        return "it is a directory; give a file's path"
    if directory and path.exists() and not path.is_dir():
        return "it is a file, not a directory"
    dangling = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
    if dangling is not None:
        return f"{dangling} is a symbolic link to nothing ({os.readlink(dangling)})"
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def _special(path: Path) -> bool:
    """A device or FIFO: writing to it twice loses nothing."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _beside_state(path: Path, state: Path) -> bool:
    resolved, state_resolved = path.resolve(), state.resolve()
    if resolved.parent != state_resolved.parent:
        return False
    return any(resolved.name.startswith(state_resolved.name + suffix) for suffix in STATE_COMPANIONS)
