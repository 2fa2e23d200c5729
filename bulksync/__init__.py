"""bulksync: keep a Loops.so audience in sync with a CSV or JSONL file of contacts.

The folders are the pipeline: ``source/`` reads and maps, ``plan/`` decides (pure), ``loops/``
talks to Loops, ``report/`` tells people, with ``state/`` remembering what Loops confirmed.
``bulksync.sync(...)`` is the front door for Python; the ``bulksync`` command is the other.
"""

# ``bulksync.sync`` names the function; the module stays importable (``from bulksync.sync import run_sync``).
from bulksync.api import sync
from bulksync.config import Runtime, SyncConfig
from bulksync.errors import (
    ApiError,
    AuthError,
    BulksyncError,
    ClearGuardError,
    ConfigError,
    DeleteGuardError,
    ExitStatus,
    GuardError,
    InputError,
    Interrupted,
    StateError,
    StateLostError,
)
from bulksync.report.summary import Summary, SyncResult
from bulksync.sync import apply_plan, record_baseline, run_sync

__all__ = [
    "ApiError", "AuthError", "BulksyncError", "ClearGuardError", "ConfigError", "DeleteGuardError", "ExitStatus",
    "GuardError", "InputError",
    "Interrupted", "Runtime", "StateError", "StateLostError", "Summary", "SyncConfig", "SyncResult", "apply_plan",
    "record_baseline", "run_sync", "sync",
]
__version__ = "0.1.0"
