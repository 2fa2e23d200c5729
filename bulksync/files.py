"""Files bulksync writes: private when bulksync creates them, untouched in mode when they exist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE_MODE = 0o600  # states, reports, plans and logs hold personal data


def open_private_fd(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` (``os.O_WRONLY`` and so on); a file this call creates is made
    readable by its owner only. Anything that exists already (a file, ``/dev/null``, a FIFO) keeps
    its mode: bulksync never changes the permissions of a file it did not create."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return os.open(path, flags & ~os.O_CREAT)


def open_private(path: Path, *, append: bool = False) -> IO[str]:
    """A text file to write (truncated, or appended to), created private (see :func:`open_private_fd`)."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(open_private_fd(path, flags), "a" if append else "w", encoding="utf-8", newline="")


def create_private(path: Path) -> bool:
    """Make sure ``path`` exists, creating it empty and private if it does not; True if created."""
    existed = path.exists()
    os.close(open_private_fd(path, os.O_WRONLY))
    return not existed
