"""A plan file: a dry run's actions, one JSON line each, that ``bulksync apply`` carries out exactly.

The first line is a header naming the state file, its key and the state's generation when the plan
was made; ``apply`` refuses a plan whose state has moved on since.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bulksync.config import CreateVia
from bulksync.errors import InputError
from bulksync.fields import payload_from_fields
from bulksync.files import open_private
from bulksync.plan.actions import Action
from bulksync.plan.requests import ENDPOINTS, first_request

PLAN_FORMAT = "bulksync-plan/1"
ACTION_KINDS = ("create", "update", "delete", "refresh")


@dataclass
class PlanHeader:
    source: str
    state: str
    key: str
    generation: int
    created_at: str
    types: dict[str, str]
    actions: int
    rejected: int = 0
    create_via: str = "update"
    mode: str = "upsert"
    unchanged: int = 0
    format: str = field(default=PLAN_FORMAT)


class PlanWriter:
    """Writes the header, then one line per action with its Loops payload and field-level diff."""

    def __init__(self, path: Path, header: PlanHeader) -> None:
        self.path = path
        self._types = header.types
        self._create_via: CreateVia = "create" if header.create_via == "create" else "update"
        self._file: IO[str] = open_private(path)
        self._file.write(json.dumps(asdict(header), ensure_ascii=False) + "\n")

    def write(self, action: Action) -> None:
        line = {
            "action": action.kind,
            "key": action.key,
            "row": action.row,
            "row_hash": action.row_hash,
            "identity": list(action.identity),
            "withheld": action.withheld,
            "note": action.note,
            "whole": action.whole,
            "before": action.before,
            "send": action.send,
            "request": self._request(action),
            "changes": [[c.field, c.before, c.after] for c in action.changes],
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")

    def _request(self, action: Action) -> dict[str, Any] | None:
        """The first request the action makes, as ``apply`` will send it."""
        if action.kind == "refresh":
            return None
        endpoint, sent = first_request(action, self._create_via)
        return {"endpoint": ENDPOINTS[endpoint], "body": payload_from_fields(sent, self._types)}

    def close(self) -> None:
        self._file.close()


def read_plan(path: Path) -> tuple[PlanHeader, list[Action]]:
    """Read and check a plan file; any damage is an InputError naming the line."""
    lines = _lines(path)
    number, first = next(lines, (1, ""))
    header = _header(path, number, first)
    actions = [_action(path, n, text) for n, text in lines]
    if len(actions) != header.actions:
        raise InputError(
            f"{path}: the plan announces {header.actions} actions but holds {len(actions)}; "
            "it is incomplete: make it again with --dry-run --plan"
        )
    return header, actions


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for number, text in enumerate(fh, start=1):
                if text.strip():
                    yield number, text
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such plan file; make one with 'bulksync sync SOURCE --dry-run --plan PATH'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as a plan ({exc})") from None


def _parse(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{number}: not a plan line ({exc.msg}); make the plan again") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}:{number}: not a plan line (expected a JSON object); make the plan again")
    return value


def _header(path: Path, number: int, text: str) -> PlanHeader:
    data = _parse(path, number, text) if text else {}
    if data.get("format") != PLAN_FORMAT:
        raise InputError(f"{path}:{number}: not a bulksync plan (no '{PLAN_FORMAT}' header line)")
    try:
        return PlanHeader(**data)
    except TypeError as exc:
        raise InputError(f"{path}:{number}: damaged plan header ({exc})") from None


def _action(path: Path, number: int, text: str) -> Action:
    data = _parse(path, number, text)
    try:
        kind = data["action"]
        if kind not in ACTION_KINDS:
            raise ValueError(f"unknown action {kind!r}")
        return Action(
            kind, str(data["key"]), data["row"], data["row_hash"], dict(data["before"]), dict(data["send"]),
            tuple(data["identity"]), bool(data.get("withheld", False)), data.get("note"),
            dict(data["whole"]) if data.get("whole") is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}:{number}: damaged plan line ({exc}); make the plan again") from None
