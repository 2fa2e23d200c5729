"""What is printed for people: the summary table and the dry run's preview."""

from __future__ import annotations

import json
from pathlib import Path

from bulksync.errors import printable
from bulksync.report.summary import Summary, SyncResult
from bulksync.report.writer import describe_change


def render_summary(summary: Summary, report_path: Path | None) -> str:
    """The table printed at the end of a run."""
    title = "Dry run: nothing was sent" if summary.dry_run else "Sync finished"
    verbs = "would be" if summary.dry_run else ""
    lines = [f"{title} in {summary.duration_s:.1f}s"]
    for name in ("created", "updated", "recreated", "deleted", "unchanged", "rejected", "failed", "skipped", "exists"):
        if name in ("recreated", "skipped", "exists") and not getattr(summary, name):
            continue
        label = f"{verbs} {name}".strip() if name in ("created", "updated", "deleted") else name
        label = "already in Loops" if name == "exists" else label
        lines.append(f"  {label:<20} {getattr(summary, name):>9,}")
    lines.append(f"  {'requests':<20} {summary.requests:>9,}")
    if report_path is not None:
        lines.append(f"Report: {report_path}")
    return "\n".join(lines)


def render_preview(result: SyncResult) -> str:
    """The first planned changes, field by field, and the first rejections with reasons."""
    lines: list[str] = []
    if result.preview:
        lines.append(f"Planned changes (first {len(result.preview)}):")
        for action in result.preview:
            where = f"row {action.row}" if action.row is not None else "not in source"
            lines.append(f"  {action.kind:<7} {action.key}  ({where})")
            if action.kind == "create":
                fields = ", ".join(f"{c.field}={json.dumps(c.after, ensure_ascii=False)}" for c in action.changes)
                lines.append(f"      {fields}")
            elif action.kind == "update":
                lines.extend(f"      {describe_change(change)}" for change in action.changes)
    if result.rejects_preview:
        lines.append(f"Rejected rows (first {len(result.rejects_preview)}):")
        lines.extend(f"  row {row}: {reason}" for row, _key, reason in result.rejects_preview)
    # Values come from the file: escape control characters so no cell can drive the terminal.
    return "\n".join(printable(line) for line in lines) if lines else "No changes planned."
