"""The per-row report (CSV or JSON lines) and the summary JSON: what happened to every row, for files."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksync.files import open_private
from bulksync.plan.actions import Action, Change

if TYPE_CHECKING:
    from bulksync.loops.push import Outcome

REPORT_COLUMNS = ("row", "key", "action", "status", "http_status", "attempts", "error", "changes")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_SHOWN_KEY = 200


def write_json(path: Path, data: Any) -> None:
    with open_private(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def shown_key(key: str | None, limit: int = MAX_SHOWN_KEY) -> str | None:
    """A rejected row's key as the report shows it: a megabyte-long "email" is cut, with a mark."""
    if key is None or len(key) <= limit:
        return key
    return key[:limit] + f"... ({len(key):,} characters)"


def safe_cell(value: object) -> str:
    """Neutralise spreadsheet formulas: the report is opened in Excel."""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    return "" if value is None else str(value)  # numbers we wrote: a row number or a status code


def change_text(name: str, before: str | None, after: str | None) -> str:
    """``field: "before" -> "after"``."""
    return f"{name}: {_shown(before)} -> {_shown(after)}"


def describe_change(change: Change) -> str:
    return change_text(change.field, change.before, change.after)


def describe_changes(action: Action) -> str:
    """Every field the action changes, ``;``-separated (built directly: it runs once per planned row).

    A delete changes no field: it removes the contact.
    """
    if action.kind == "delete":
        return ""
    before = action.before
    return "; ".join(
        change_text(name, before.get(name), value) for name, value in action.send.items() if before.get(name) != value
    )


def _shown(value: str | None) -> str:
    """A value in double quotes, backslash-escaped (JSON-like, but cheaper than json.dumps per cell)."""
    if value is None:
        return "(empty)"
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


class ReportWriter:
    """Streams one line per row that was not unchanged, in the order things happen: CSV (the
    default, safe to open in a spreadsheet) or JSON lines with the same fields."""

    def __init__(self, path: Path, fmt: str = "csv") -> None:
        self.path = path
        self._file = open_private(path)
        self._csv = csv.writer(self._file) if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(REPORT_COLUMNS)

    def _write(self, *cells: object) -> None:
        """One line: row, key, action, status, http_status, attempts, error, changes."""
        if self._csv:  # only the text cells (key, error, changes) come from the source or from Loops
            row, key, action, status, http_status, attempts, error, changes = cells
            self._csv.writerow(
                (row, safe_cell(key), action, status, http_status, attempts, safe_cell(error), safe_cell(changes))
            )
        else:
            self._file.write(json.dumps(dict(zip(REPORT_COLUMNS, cells, strict=True)), ensure_ascii=False) + "\n")

    def reject(self, row: int | None, key: str | None, reason: str) -> None:
        self._write(row, shown_key(key), "reject", "failed", None, 0, reason, None)

    def rejects(self, lines: Iterable[tuple[int | None, str | None, str]]) -> None:
        """A :meth:`reject` line for each (row, key, reason): a source of millions of rejected rows
        spends its time here, so CSV lines are made without a call per line."""
        if self._csv is None:
            for row, key, reason in lines:
                self.reject(row, key, reason)
            return
        self._csv.writerows((row, safe_cell(shown_key(key)), "reject", "failed", None, 0, safe_cell(reason), "")
                            for row, key, reason in lines)

    def skipped(self, row: int | None, key: str | None, action: str, reason: str) -> None:
        self._write(row, key, action, "skipped", None, 0, reason, None)

    def planned(self, action: Action) -> None:
        if action.kind != "refresh":
            self._write(action.row, action.key, action.kind, "planned", None, 0, action.note, describe_changes(action))

    def outcome(self, outcome: Outcome) -> None:
        action = outcome.action
        if action.kind == "refresh":
            return
        status = "failed"
        if outcome.ok:
            status = "exists" if outcome.exists else "recreated" if outcome.recreated else "ok"
        error = outcome.error if not outcome.ok else (outcome.note or action.note)
        self._write(
            action.row, action.key, action.kind, status, outcome.http_status, outcome.attempts, error,
            describe_changes(action),
        )

    def close(self) -> None:
        self._file.close()
