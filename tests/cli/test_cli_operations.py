"""What operators reach for: sync modes, trial runs, logs, report history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from bulksync.cli import main
from bulksync.emulator import Faults, LoopsEmulator
from tests.helpers import API_KEY, writes


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- sync modes -------------------------------------------------------------------------------------


def test_create_only_never_touches_an_existing_contact(cli: Any, emulator: LoopsEmulator) -> None:
    cli("sync", "contacts.csv")
    emulator.seed([{"email": "jean.bartik@example.com", "firstName": "Betty Jean"}])  # in Loops, not in state
    since = len(emulator.request_log())

    result = cli("sync", "contacts_changed.csv", "--mode", "create-only")

    assert result.status == 0
    sent = writes(emulator, since)
    assert {r["path"] for r in sent} == {"/v1/contacts/create"}
    assert sorted(r["json"]["email"] for r in sent) == [
        "betty.holberton@example.com", "jean.bartik@example.com", "kathleen.booth@example.com"
    ]
    assert emulator.contact("jean.bartik@example.com")["firstName"] == "Betty Jean"  # type: ignore[index]
    assert emulator.contact("grace.hopper@example.com")["lastName"] == "Hopper"  # type: ignore[index]
    report = result.report()
    assert [(r["key"], r["status"], r["http_status"]) for r in report if r["status"] == "exists"] == [
        ("jean.bartik@example.com", "exists", "409")
    ]
    skipped = [r for r in report if r["status"] == "skipped"]
    assert len(skipped) == 5 and {r["action"] for r in skipped} == {"update"}
    assert result.summary()["failed"] == 0 and result.summary()["created"] == 2
    assert "already in Loops             1" in result.out and "skipped                      5" in result.out


def test_update_only_skips_contacts_new_to_the_state(cli: Any, emulator: LoopsEmulator) -> None:
    cli("sync", "contacts.csv")
    since = len(emulator.request_log())

    result = cli("sync", "contacts_changed.csv", "--mode", "update-only")

    assert result.status == 0
    assert len(writes(emulator, since)) == 5
    assert emulator.contact("jean.bartik@example.com") is None
    skipped = [(r["key"], r["action"], r["error"]) for r in result.report() if r["status"] == "skipped"]
    reason = "new to the state: --mode update-only only updates contacts bulksync synced before"
    assert skipped == [
        ("jean.bartik@example.com", "create", reason),
        ("betty.holberton@example.com", "create", reason),
        ("kathleen.booth@example.com", "create", reason),
    ]


def test_delete_missing_needs_upsert_mode(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts.csv", "--mode", "update-only", "--delete-missing")

    assert (result.status, result.err) == (
        2, "bulksync: error: --delete-missing works with --mode upsert only, not --mode update-only\n"
    )
    assert emulator.stats()["requests"] == 0


# -- trial runs ---------------------------------------------------------------------------------------


def test_limit_processes_the_first_valid_rows_and_the_rest_waits(cli: Any, emulator: LoopsEmulator) -> None:
    trial = cli("sync", "contacts.csv", "--limit", "10")

    assert trial.status == 0
    assert trial.summary()["created"] == 10 and len(emulator.contacts()) == 10
    waiting = [r for r in trial.report() if r["status"] == "skipped"]
    assert len(waiting) == 37
    assert {r["error"] for r in waiting} == {"not processed (--limit 10)"}
    assert waiting[0]["key"] == "radia.perlman@example.com"  # the 11th valid row (row 1 lost to a duplicate)

    rest = cli("sync", "contacts.csv")
    assert rest.summary()["created"] == 37 and rest.summary()["unchanged"] == 10
    assert len(emulator.contacts()) == 47

    refused = cli("sync", "contacts.csv", "--limit", "5", "--delete-missing")
    assert refused.status == 2 and "--limit is for trial runs" in refused.err


# -- logs -----------------------------------------------------------------------------------------------


def test_retries_and_failures_log_one_line_each_with_row_key_status_attempt(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    cli("sync", "contacts.csv")  # properties made, account remembered: the faults below hit writes only
    emulator.configure(faults=Faults(fail_rate=0.5))

    result = cli("sync", "contacts_changed.csv", "--max-retries", "1", "--log-file", "logs/run.log",
                 sleep=lambda s: None)

    lines = result.err.splitlines()
    retries = [line for line in lines if " WARNING retrying update of " in line]
    failures = [line for line in lines if " failed: HTTP 500" in line]
    assert retries and failures
    grace = [line for line in retries + failures if "grace.hopper@example.com" in line]
    for line in grace:
        assert line[:20].endswith("Z") and "row=2 key=grace.hopper@example.com http_status=500 attempt=" in line
    assert (workdir / "logs" / "run.log").read_text().splitlines() == lines
    assert (workdir / "logs" / "run.log").stat().st_mode & 0o777 == 0o600
    assert API_KEY not in result.err


def test_verbose_logs_each_request_and_json_format(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts_changed.csv", "-v", "--log-format", "json")

    entries = [json.loads(line) for line in result.err.splitlines()]
    requests = [e for e in entries if e["message"].startswith("PUT /v1/contacts/update -> 200 in ")]
    assert len(requests) == 50
    assert all(e["level"] == "INFO" and e["http_status"] == 200 and e["time"].endswith("Z") for e in requests)
    assert "Sync finished" in result.out  # the summary stays on stdout


# -- report history -------------------------------------------------------------------------------------


def test_report_dir_keeps_one_report_and_summary_per_run(cli: Any, workdir: Path) -> None:
    for _ in range(2):
        assert cli("sync", "contacts.csv", "--report-dir", "history", report=False).status == 0

    files = sorted(p.name for p in (workdir / "history").iterdir())
    reports = [name for name in files if name.endswith("-report.csv")]
    summaries = [name for name in files if name.endswith("-summary.json")]
    assert len(reports) == 2 and len(summaries) == 2
    assert [name[:-len("-report.csv")] for name in reports] == [name[:-len("-summary.json")] for name in summaries]
    first, second = (json.loads((workdir / "history" / name).read_text()) for name in summaries)
    assert (first["created"], second["unchanged"]) == (47, 47)
    assert len(rows_of(workdir / "history" / reports[0])) == 52


def test_jsonl_report(cli: Any, workdir: Path) -> None:
    cli("sync", "contacts.csv", "--report-format", "jsonl", "--report", "report.jsonl", report=False)

    lines = [json.loads(line) for line in (workdir / "report.jsonl").read_text().splitlines()]
    assert len(lines) == 52
    assert lines[0] == {"row": 1, "key": "ada.lovelace@example.com", "action": "reject", "status": "failed",
                        "http_status": None, "attempts": 0,
                        "error": "duplicate of row 2 (the last row for a contact wins)", "changes": None}


# -- progress -------------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_not_with_no_progress(
    workdir: Path, loops: Any, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", loops.url)
    common = ["sync", "contacts.csv", "--rate-limit", "1000", "--create-properties", "--report", "r.csv"]

    assert main([*common, "--state", "a.db"], out=io.StringIO(), err=_Terminal()) == 0
    bar = capsys.readouterr().err
    assert "47/47" in bar and "contact/s" in bar

    assert main([*common, "--state", "b.db", "--no-progress"], out=io.StringIO(), err=_Terminal()) == 0
    assert main([*common, "--state", "c.db"], out=io.StringIO(), err=io.StringIO()) == 0  # not a terminal
    assert "47/47" not in capsys.readouterr().err
