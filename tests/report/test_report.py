"""The per-row CSV report, formula neutralisation, the JSON summary and the closing table."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bulksync.loops.push import Outcome
from bulksync.plan.actions import Action, Change
from bulksync.plan.requests import Sent
from bulksync.report.summary import Summary
from bulksync.report.text import render_summary
from bulksync.report.writer import (
    REPORT_COLUMNS,
    ReportWriter,
    describe_change,
    describe_changes,
    safe_cell,
    write_json,
)
from bulksync.state.store import Fields

HEADER = "row,key,action,status,http_status,attempts,error,changes\r\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def create(key: str = "ada@example.com", row: int = 1, **send: str | None) -> Action:
    return Action("create", key, row, 11, {}, {"email": key, **send}, ("email",))


def update(key: str, before: dict[str, str], row: int = 2, **send: str | None) -> Action:
    return Action("update", key, row, 12, before, {"email": key, **send}, ("email",))


def written(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


# -- safe_cell ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=b", "a=b"),
        ("ada@example.com", "ada@example.com"),
        (" =1", " =1"),
        ("", ""),
        (None, ""),
        (404, "404"),
        (0, "0"),
    ],
)
def test_safe_cell(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


# -- describing changes ---------------------------------------------------------------------------


def test_describe_change_quotes_values_and_names_empties() -> None:
    assert describe_change(Change("lastName", "Byron", "Lovelace")) == 'lastName: "Byron" -> "Lovelace"'
    assert describe_change(Change("plan", "pro", None)) == 'plan: "pro" -> (empty)'
    assert describe_change(Change("firstName", None, 'Zoë "Z"')) == 'firstName: (empty) -> "Zoë \\"Z\\""'


def test_describe_changes_lists_only_real_changes() -> None:
    before = {"email": "ada@example.com", "plan": "free", "zip": "02134"}

    action = update("ada@example.com", before, plan="pro", zip=None)

    assert describe_changes(action) == 'plan: "free" -> "pro"; zip: "02134" -> (empty)'


# -- ReportWriter ---------------------------------------------------------------------------------


def test_report_lines_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    created = create(firstName="Ada")
    updated = update("grace@example.com", {"email": "grace@example.com", "plan": "free"}, row=3, plan="pro")
    failed = create("alan@example.com", row=4)
    refresh = Action("refresh", "x@example.com", 5, 1, {}, {"email": "x@example.com"})

    writer = ReportWriter(path)
    writer.reject(22, None, "missing email")
    writer.reject(23, "not-an-email", "invalid email syntax: not-an-email")
    writer.planned(created)
    writer.planned(refresh)
    writer.outcome(Outcome(created, True, created.send, 200, 2, note="already in Loops (409): updated"))
    writer.outcome(Outcome(updated, True, updated.send, 200, 1))
    writer.outcome(Outcome(failed, False, None, 500, 7, error="HTTP 500: Internal server error"))
    writer.outcome(Outcome(refresh, True, {}, 0, 0))
    writer.close()

    assert written(path) == (
        HEADER
        + "22,,reject,failed,,0,missing email,\r\n"
        + "23,not-an-email,reject,failed,,0,invalid email syntax: not-an-email,\r\n"
        + '1,ada@example.com,create,planned,,0,,"email: (empty) -> ""ada@example.com""; '
        'firstName: (empty) -> ""Ada"""\r\n'
        + "1,ada@example.com,create,ok,200,2,already in Loops (409): updated,"
        '"email: (empty) -> ""ada@example.com""; firstName: (empty) -> ""Ada"""\r\n'
        + '3,grace@example.com,update,ok,200,1,,"plan: ""free"" -> ""pro"""\r\n'
        + '4,alan@example.com,create,failed,500,7,HTTP 500: Internal server error,'
        + '"email: (empty) -> ""alan@example.com"""\r\n'
    )
    assert tuple(HEADER.strip().split(",")) == REPORT_COLUMNS


def test_a_delete_line_has_no_row_and_lists_what_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    before: Fields = {"email": "gone@example.com"}
    send: Sent = {"email": "gone@example.com"}
    action = Action("delete", "gone@example.com", None, None, before, send, ("email",))

    writer = ReportWriter(path)
    writer.outcome(Outcome(action, True, action.send, 404, 1, note="already gone from Loops"))
    writer.close()

    assert written(path) == HEADER + ",gone@example.com,delete,ok,404,1,already gone from Loops,\r\n"


def test_formulas_in_any_cell_are_neutralised(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    key = "=cmd|'/c calc'!A1@x.io"
    action = update(key, {"email": key}, row=9, **{"+plan": "-1"})

    writer = ReportWriter(path)
    writer.reject(8, "@evil.example", "-bad value")
    writer.planned(action)
    writer.close()

    lines = written(path).split("\r\n")
    assert lines[1] == "8,'@evil.example,reject,failed,,0,'-bad value,"
    assert lines[2] == "9,'=cmd|'/c calc'!A1@x.io,update,planned,,0,,\"'+plan: (empty) -> \"\"-1\"\"\""


def test_report_replaces_an_old_one_without_changing_a_mode_bulksync_did_not_set(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "report.csv"
    path.parent.mkdir()
    path.write_text("old,stuff\n" * 100)
    path.chmod(0o640)  # the user's choice: bulksync never chmods a file it did not create

    ReportWriter(path).close()

    assert mode(path) == 0o640
    assert written(path) == HEADER
    fresh = tmp_path / "reports" / "new.csv"
    ReportWriter(fresh).close()
    assert mode(fresh) == 0o600


def test_report_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "report.csv"

    ReportWriter(path).close()

    assert mode(path) == 0o600
    assert written(path) == HEADER


# -- Summary ----------------------------------------------------------------------------------------


def test_summary_json_has_exactly_the_documented_keys(tmp_path: Path) -> None:
    summary = Summary(
        created=3, updated=2, deleted=1, unchanged=40, rejected=5, failed=1, requests=8, duration_s=1.23456
    )

    data = summary.to_json()

    assert list(data) == [
        "created", "updated", "recreated", "deleted", "unchanged", "rejected", "failed", "not_recorded", "requests",
        "dry_run", "duration_s",
    ]
    assert data == {
        "created": 3, "updated": 2, "recreated": 0, "deleted": 1, "unchanged": 40, "rejected": 5, "failed": 1,
        "not_recorded": 0, "requests": 8,
        "dry_run": False, "duration_s": 1.235,
    }


def test_summary_counts_actions_by_kind() -> None:
    summary = Summary()
    kinds = ["create", "create", "update", "delete", "refresh", "refresh", "refresh"]

    for kind in kinds:
        summary.count(Action(kind, "k", None, None, {}, {}))  # type: ignore[arg-type]

    assert (summary.created, summary.updated, summary.deleted, summary.unchanged) == (2, 1, 1, 3)
    assert (summary.rejected, summary.failed, summary.requests) == (0, 0, 0)


def test_write_json_is_private_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"

    write_json(path, {**Summary(created=1, duration_s=0.5).to_json(), "note": "Zoë"})

    assert mode(path) == 0o600
    text = written(path)
    assert text.endswith("}\n")
    assert '"note": "Zoë"' in text
    assert json.loads(text)["created"] == 1


def test_render_summary_of_a_run() -> None:
    summary = Summary(created=1234, updated=5, unchanged=40000, rejected=3, failed=1, requests=1300, duration_s=12.34)

    assert render_summary(summary, Path("report.csv")) == (
        "Sync finished in 12.3s\n"
        "  created                  1,234\n"
        "  updated                      5\n"
        "  deleted                      0\n"
        "  unchanged               40,000\n"
        "  rejected                     3\n"
        "  failed                       1\n"
        "  requests                 1,300\n"
        "Report: report.csv"
    )


def test_render_summary_of_a_dry_run_without_report() -> None:
    summary = Summary(created=47, deleted=2, rejected=5, dry_run=True, duration_s=0.04)

    assert render_summary(summary, None) == (
        "Dry run: nothing was sent in 0.0s\n"
        "  would be created            47\n"
        "  would be updated             0\n"
        "  would be deleted             2\n"
        "  unchanged                    0\n"
        "  rejected                     5\n"
        "  failed                       0\n"
        "  requests                     0"
    )
