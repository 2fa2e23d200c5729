"""The settings of one run, built by the CLI from flags and environment and passed to the library."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_BASE_URL = "https://app.loops.so/api"
DEFAULT_STATE_PATH = Path("bulksync.state.db")

KeyField = Literal["email", "userId"]
CreateVia = Literal["create", "update"]


@dataclass(frozen=True)
class HttpConfig:
    """How to reach Loops and how hard to push."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    rate_limit: float = 10.0
    concurrency: int = 4
    max_retries: int = 6
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


@dataclass(frozen=True)
class SyncConfig:
    """Everything ``run_sync`` needs to know about one run."""

    source: Path
    state_path: Path = DEFAULT_STATE_PATH
    key: KeyField = "email"
    dry_run: bool = False
    delete_missing: bool = False
    keep_empty: bool = False
    resubscribe: bool = False
    report_path: Path | None = None
    summary_json_path: Path | None = None
    encoding: str = "utf-8"
    progress: bool = True
    create_via: CreateVia = "create"
    http: HttpConfig = field(default_factory=HttpConfig)
