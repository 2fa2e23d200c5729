"""The Python front door: ``bulksync.sync(...)`` for people who schedule syncs from Python.

It takes the ``sync`` command's options (underscored) and runs the same library code as the CLI;
errors raise the documented :class:`~bulksync.errors.BulksyncError` subclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulksync.config import DEFAULT_STATE_PATH, Runtime, sync_config
from bulksync.report.summary import SyncResult
from bulksync.sync import run_sync


def sync(
    source: str | Path,
    state: str | Path = DEFAULT_STATE_PATH,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    dry_run: bool = False,
    progress: bool = False,
    report: str | Path | None = None,
    runtime: Runtime | None = None,
    **options: Any,
) -> SyncResult:
    """Sync ``source`` into Loops, remembering what was sent in ``state``.

    ``options`` are the ``sync`` command's long options with underscores: ``delete_missing=True``,
    ``preset="mailchimp"``, ``max_delete="5%"``, ``rate_limit=5``, ... ``api_key`` and ``base_url``
    default to ``LOOPS_API_KEY`` and ``LOOPS_BASE_URL``. ``runtime`` injects a transport, clock and
    stop event (tests, or a scheduler's own cancellation).

    >>> result = bulksync.sync("users.csv", delete_missing=True)   # doctest: +SKIP
    >>> result.summary.created, result.summary.failed               # doctest: +SKIP
    """
    config = sync_config(source, state, api_key=api_key, base_url=base_url, dry_run=dry_run, progress=progress,
                         report=report, **options)
    return run_sync(config, runtime)
