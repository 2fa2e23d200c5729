"""bulksync: keep a Loops.so audience in sync with a CSV or JSONL file of contacts.

The pipeline, one module a stage: ``read`` -> ``normalise`` -> ``diff`` -> ``push`` -> ``report``,
with ``state`` remembering what Loops confirmed and ``sync`` tying the stages together.
"""

from bulksync.config import SyncConfig
from bulksync.errors import BulksyncError, ExitStatus
from bulksync.sync import SyncResult, run_sync

__all__ = ["BulksyncError", "ExitStatus", "SyncConfig", "SyncResult", "run_sync"]
__version__ = "0.1.0"
