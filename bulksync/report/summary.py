"""The run in numbers, and what a run returns to its caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulksync.loops.push import Outcome
    from bulksync.plan.actions import Action

SUMMARY_KEYS = (
    "created", "updated", "recreated", "deleted", "unchanged", "rejected", "failed", "not_recorded", "requests",
    "dry_run", "duration_s",
)


@dataclass
class Summary:
    """The run in numbers; ``--summary-json`` writes exactly these keys."""

    created: int = 0
    updated: int = 0
    recreated: int = 0  # updates that found the contact deleted in Loops and sent it whole again
    deleted: int = 0
    unchanged: int = 0
    rejected: int = 0
    failed: int = 0
    # Of the writes counted above, those Loops confirmed but the state could not record (a full disk):
    # the next run sends them again, which changes nothing in Loops.
    not_recorded: int = 0
    requests: int = 0
    dry_run: bool = False
    duration_s: float = 0.0
    # Shown in the table, not in the summary JSON (whose keys are a contract):
    skipped: int = 0
    exists: int = 0

    def count(self, action: Action) -> None:
        """Count one applied (or, in a dry run, planned) action."""
        if action.kind == "refresh":
            self.unchanged += 1
        else:
            name = {"create": "created", "update": "updated", "delete": "deleted"}[action.kind]
            setattr(self, name, getattr(self, name) + 1)

    def record(self, outcome: Outcome) -> None:
        """Count one action's outcome in a real run."""
        if outcome.exists:
            self.exists += 1
        elif outcome.recreated:
            self.recreated += 1
        elif outcome.ok:
            self.count(outcome.action)
        else:
            self.failed += 1

    def to_json(self) -> dict[str, Any]:
        data = {name: value for name, value in asdict(self).items() if name in SUMMARY_KEYS}
        data["duration_s"] = round(self.duration_s, 3)
        return data


@dataclass
class SyncResult:
    """What ``run_sync``, ``apply_plan`` and :func:`bulksync.sync` return."""

    summary: Summary
    report_path: Path
    preview: list[Action] = field(default_factory=list)
    rejects_preview: list[tuple[int | None, str | None, str]] = field(default_factory=list)
    plan_path: Path | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
