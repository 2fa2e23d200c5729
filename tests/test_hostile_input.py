"""Hostile and broken source files, each through the CLI against the emulator.

Every file of ``sample_data/hostile/`` (see its README) gets an exact outcome: the exit status, and
either the exact one-line error (with the state file byte for byte as before and nothing sent) or
the exact report rows and the contacts Loops then holds. The 10 MB cases are generated here.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from bulksync.cli import build_parser
from bulksync.emulator import EmulatorServer, LoopsEmulator
from bulksync.state import open_state
from tests.helpers import API_KEY, SAMPLE_DATA, CliResult

HOSTILE = SAMPLE_DATA / "hostile"
WRITES = ("POST /v1/contacts/create", "PUT /v1/contacts/update", "POST /v1/contacts/delete")
TEN_MB = 10 * 1024 * 1024


def corpus(workdir: Path, name: str) -> str:
    """Copy one corpus file into the run's directory; the CLI is given its bare name."""
    shutil.copy(HOSTILE / name, workdir / name)
    return name


def held(emulator: LoopsEmulator, *fields: str) -> dict[str, dict[str, Any]]:
    """What Loops holds: email -> the named fields (absent ones as None)."""
    return {c["email"]: {name: c.get(name) for name in fields} for c in emulator.contacts()}


def report_rows(result: CliResult) -> list[tuple[str, str, str, str, str]]:
    return [(r["row"], r["key"], r["action"], r["status"], r["error"]) for r in result.report()]


def state_keys(workdir: Path) -> set[str]:
    with open_state(workdir / "state.db", readonly=True) as state:
        return {key for key, _ in state.contacts()}


def writes(emulator: LoopsEmulator) -> list[dict[str, Any]]:
    return [r for r in emulator.request_log() if f"{r['method']} {r['path']}" in WRITES]


def created(*rows: tuple[str, str]) -> list[tuple[str, str, str, str, str]]:
    return [(row, key, "create", "ok", "") for row, key in rows]


THREE_CREATED = created(("1", "ada@example.com"), ("2", "grace@example.com"), ("3", "alan@example.com"))


def sync_flags() -> set[str]:
    """Every option ``bulksync sync`` accepts, so a suggested fix can be checked to exist."""
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    sync = commands.choices["sync"]  # type: ignore[index]
    return {flag for action in sync._actions for flag in action.option_strings}


def assert_one_clear_line(result: CliResult, file_and_line: str) -> str:
    """Status 2, one line on stderr naming the file (and line), suggesting only flags that exist."""
    assert result.status == 2, (result.status, result.err)
    assert result.err.endswith("\n") and len(result.err.splitlines()) == 1, repr(result.err)
    line = result.err.rstrip("\n")
    assert line.startswith(f"bulksync: error: {file_and_line}"), line
    assert "internal error" not in line
    unknown = set(re.findall(r"--[a-z][a-z-]*", line)) - sync_flags()
    assert not unknown, f"the fix suggests flags bulksync does not have: {sorted(unknown)}"
    return line


@pytest.fixture
def seeded(cli: Any, workdir: Path, emulator: LoopsEmulator) -> bytes:
    """A state file from an earlier good run (two contacts); returns its bytes."""
    (workdir / "good.csv").write_text("email,firstName\nkeep@example.com,Keep\nstay@example.com,Stay\n")
    assert cli("sync", "good.csv", "--state", "state.db").status == 0
    return (workdir / "state.db").read_bytes()


# -- files bulksync must read: exact report, exact contacts -------------------------------------------


def test_utf8_bom_is_dropped_and_accents_survive(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    result = cli("sync", corpus(workdir, "bom.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == created(("1", "ada@example.com"), ("2", "grace@example.com"))
    assert held(emulator, "firstName", "lastName") == {
        "ada@example.com": {"firstName": "Zoë", "lastName": "Lovelace"},
        "grace@example.com": {"firstName": "Grace", "lastName": "Hopper"},
    }
    assert state_keys(workdir) == {"ada@example.com", "grace@example.com"}


@pytest.mark.parametrize("name", ["crlf.csv", "mac_cr.csv", "mixed_line_ends.csv"])
def test_any_line_ends_give_the_same_contacts_with_no_stray_carriage_return(
    cli: Any, emulator: LoopsEmulator, workdir: Path, name: str
) -> None:
    result = cli("sync", corpus(workdir, name), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == THREE_CREATED
    assert held(emulator, "firstName", "lastName") == {
        "ada@example.com": {"firstName": "Ada", "lastName": "Lovelace"},
        "grace@example.com": {"firstName": "Grace", "lastName": "Hopper"},
        "alan@example.com": {"firstName": "Alan", "lastName": "Turing"},
    }


def test_quoted_commas_quotes_and_newlines_stay_inside_their_value(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "quoted_commas_newlines.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == [
        ("4", "not-an-email", "reject", "failed", "invalid email syntax: not-an-email"),
        *created(("1", "ada@example.com"), ("2", "grace@example.com"), ("3", "alan@example.com")),
    ]
    assert held(emulator, "firstName", "lastName", "address") == {
        "ada@example.com": {"firstName": "Ada", "lastName": "Lovelace, Countess",
                            "address": "12 St James's Square\nLondon"},
        "grace@example.com": {"firstName": 'Grace "Amazing"', "lastName": "Hopper", "address": "Arlington, VA"},
        "alan@example.com": {"firstName": "Alan", "lastName": "Turing", "address": None},
    }


def test_a_row_with_fewer_fields_than_the_header_has_its_missing_values_empty(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "ragged_short.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == THREE_CREATED
    assert held(emulator, "firstName", "lastName") == {
        "ada@example.com": {"firstName": "Ada", "lastName": None},
        "grace@example.com": {"firstName": "Grace", "lastName": "Hopper"},
        "alan@example.com": {"firstName": None, "lastName": None},
    }


def test_a_row_with_more_fields_than_the_header_is_rejected_naming_its_line(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    # Like a malformed JSONL line: one broken record is that record's problem, not the file's. The
    # reason must name the file line (3: the header is line 1) so the user can find and fix it.
    result = cli("sync", corpus(workdir, "ragged_long.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    rows = report_rows(result)
    assert [(row, action, status) for row, _, action, status, _ in rows] == [
        ("2", "reject", "failed"), ("1", "create", "ok"), ("3", "create", "ok"),
    ]
    assert re.search(r"\bline 3\b", rows[0][4]) and "field" in rows[0][4], rows[0][4]
    assert held(emulator, "firstName", "lastName") == {
        "ada@example.com": {"firstName": "Ada", "lastName": "Lovelace"},
        "alan@example.com": {"firstName": "Alan", "lastName": "Turing"},
    }
    assert state_keys(workdir) == {"ada@example.com", "alan@example.com"}


def test_header_only_syncs_nothing_and_exits_0(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    result = cli("sync", corpus(workdir, "header_only.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == []
    summary = result.summary()
    assert {k: v for k, v in summary.items() if k != "duration_s"} == {
        "created": 0, "updated": 0, "recreated": 0, "deleted": 0, "unchanged": 0, "rejected": 0, "failed": 0,
        "not_recorded": 0, "requests": 1, "dry_run": False,
    }
    assert writes(emulator) == [] and emulator.contacts() == []
    assert state_keys(workdir) == set()


def test_header_only_never_deletes_what_was_synced_before(
    cli: Any, emulator: LoopsEmulator, workdir: Path, seeded: bytes
) -> None:
    before = len(emulator.request_log())

    result = cli("sync", corpus(workdir, "header_only.csv"), "--state", "state.db", "--delete-missing",
                 "--max-delete", "100%")

    assert result.status == 3
    assert result.err == (
        "bulksync: error: header_only.csv has no valid rows: refusing to delete all 2 contacts in state, "
        "whatever --max-delete says. Nothing was sent. Check the export\n"
    )
    assert len(emulator.request_log()) == before
    assert sorted(held(emulator)) == ["keep@example.com", "stay@example.com"]
    assert (workdir / "state.db").read_bytes() == seeded


def test_non_utf8_file_reads_with_the_encoding_the_error_suggested(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "latin1.csv"), "--state", "state.db", "--encoding", "latin-1")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == created(("1", "ada@example.com"), ("2", "jose@example.com"))
    assert held(emulator, "firstName", "lastName") == {
        "ada@example.com": {"firstName": "Ada", "lastName": "Lovelace"},
        "jose@example.com": {"firstName": "José", "lastName": "Martínez"},
    }


def test_malformed_jsonl_lines_are_rejected_with_their_line_and_the_rest_synced(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "malformed_line.jsonl"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == [
        ("2", "", "reject", "failed", "malformed JSON at column 52: Expecting ',' delimiter"),
        ("5", "", "reject", "failed", "line is JSON list, not an object"),
        *created(("1", "ada@example.com"), ("4", "alan@example.com")),
    ]
    assert held(emulator, "firstName", "seats") == {
        "ada@example.com": {"firstName": "Ada", "seats": 4},
        "alan@example.com": {"firstName": "Alan", "seats": 2},
    }
    assert state_keys(workdir) == {"ada@example.com", "alan@example.com"}


def test_a_jsonl_line_with_a_key_twice_is_rejected_not_silently_resolved(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    # Line 2 says "email" twice with different addresses: which one is meant is unknowable, so the
    # line is rejected naming the key; json.loads silently keeping the last one syncs a guess.
    result = cli("sync", corpus(workdir, "duplicate_key.jsonl"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    rows = report_rows(result)
    assert [(row, action, status) for row, _, action, status, _ in rows] == [("2", "reject", "failed"),
                                                                             ("1", "create", "ok")]
    assert "'email'" in rows[0][4], rows[0][4]
    assert sorted(held(emulator)) == ["ada@example.com"]


def test_tab_and_other_controls_are_kept_nul_rejects_the_row(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "control_chars.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    rows = report_rows(result)
    assert rows[0] == ("2", "grace@example.com", "reject", "failed",
                       "firstName contains a NUL character; remove it from the source")
    assert rows[1][0] == "4" and rows[1][2:4] == ("reject", "failed")
    assert rows[1][4].startswith("invalid email syntax: "), rows[1]
    assert rows[2:] == created(("1", "ada@example.com"), ("3", "alan@example.com"))
    assert held(emulator, "firstName", "comment") == {
        "ada@example.com": {"firstName": "Ada", "comment": "col1\tcol2"},
        "alan@example.com": {"firstName": "Alan", "comment": "bell\x07 and escape\x1b[31m"},
    }
    assert state_keys(workdir) == {"ada@example.com", "alan@example.com"}


def test_the_dry_run_preview_never_writes_raw_control_characters_to_the_terminal(cli: Any, workdir: Path) -> None:
    # Row 4's email holds ESC [2J ("clear screen"): shown raw in the preview of rejected rows, it
    # would act on the user's terminal instead of being read. Created rows are already escaped.
    result = cli("sync", corpus(workdir, "control_chars.csv"), "--dry-run")

    assert result.status == 0
    raw = sorted({f"U+{ord(c):04X}" for c in result.out + result.err
                  if unicodedata.category(c) == "Cc" and c != "\n"})
    assert raw == [], f"raw control characters printed: {raw}"


def test_emails_are_trimmed_and_lowercased_and_case_variants_are_one_contact(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    result = cli("sync", corpus(workdir, "messy_emails.csv"), "--state", "state.db")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == [
        ("1", "ada@example.com", "reject", "failed", "duplicate of row 5 (the last row for a contact wins)"),
        ("3", "alan @example.com", "reject", "failed", "invalid email syntax: alan @example.com"),
        *created(("2", "grace@example.com"), ("4", "edsger@example.com"), ("5", "ada@example.com")),
    ]
    assert held(emulator, "firstName") == {
        "grace@example.com": {"firstName": "Grace"},
        "edsger@example.com": {"firstName": "Edsger"},
        "ada@example.com": {"firstName": "Augusta Ada"},
    }
    assert state_keys(workdir) == {"grace@example.com", "edsger@example.com", "ada@example.com"}


def test_braces_in_a_column_name_are_not_an_internal_error(cli: Any, workdir: Path) -> None:
    # "score {2024}" is an odd property name, but only a name: either it is planned like any other
    # column, or the file is refused naming the column. Never a crash.
    result = cli("sync", corpus(workdir, "braces_in_header.csv"), "--dry-run")

    assert "internal error" not in result.err, result.err
    if result.status == 0:
        assert 'score {2024}="7"' in result.out
    else:
        assert "score {2024}" in assert_one_clear_line(result, "braces_in_header.csv:1: ")


# -- files bulksync must refuse: one line naming file, line and fix; nothing sent; state as it was ----


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("duplicate_header.csv",
         "duplicate_header.csv:1: column 'firstName' appears twice in the header; rename or drop one"),
        ("empty.csv", "empty.csv: the file is empty; expected a header line such as 'email,firstName'"),
        ("latin1.csv", "latin1.csv:3: byte 0xe9 is not valid utf-8; pass the file's encoding, "
                       "e.g. --encoding latin-1 or --encoding cp1252"),
    ],
)
def test_a_file_that_cannot_be_synced_is_one_exact_line_and_leaves_state_alone(
    cli: Any, emulator: LoopsEmulator, workdir: Path, *, seeded: bytes, name: str, message: str
) -> None:
    before = len(emulator.request_log())

    result = cli("sync", corpus(workdir, name), "--state", "state.db")

    assert result.status == 2
    assert result.err == f"bulksync: error: {message}\n"
    assert_one_clear_line(result, name)
    assert result.out == ""
    assert len(emulator.request_log()) == before, "a request was sent for a file that was refused"
    assert (workdir / "state.db").read_bytes() == seeded
    assert sorted(held(emulator)) == ["keep@example.com", "stay@example.com"]


@pytest.mark.parametrize(
    ("name", "starts"),
    [
        ("empty.jsonl", "empty.jsonl"),
        ("no_email_column.csv", "no_email_column.csv:1: no email column (found: name, plan); "),
        ("nul_in_header.csv", "nul_in_header.csv:1: "),
        ("mailing_list_twice.csv", "mailing_list_twice.csv:2: "),
    ],
)
def test_refused_files_name_the_problem_and_only_fixes_that_exist(
    cli: Any, emulator: LoopsEmulator, workdir: Path, *, seeded: bytes, name: str, starts: str
) -> None:
    before = len(emulator.request_log())

    result = cli("sync", corpus(workdir, name), "--state", "state.db")

    line = assert_one_clear_line(result, starts)
    if name == "empty.jsonl":
        assert "empty" in line, line  # the file is empty: say so, not "no email column (found: none)"
    assert len(emulator.request_log()) == before
    assert (workdir / "state.db").read_bytes() == seeded


def test_non_utf8_byte_in_a_file_with_old_mac_line_ends_names_the_right_line(
    cli: Any, workdir: Path, seeded: bytes
) -> None:
    data = (HOSTILE / "latin1.csv").read_bytes().replace(b"\n", b"\r")
    (workdir / "latin1_mac.csv").write_bytes(data)

    result = cli("sync", "latin1_mac.csv", "--state", "state.db")

    assert result.err == (
        "bulksync: error: latin1_mac.csv:3: byte 0xe9 is not valid utf-8; pass the file's encoding, "
        "e.g. --encoding latin-1 or --encoding cp1252\n"
    )
    assert (workdir / "state.db").read_bytes() == seeded


def test_refused_file_without_a_state_file_creates_none(cli: Any, workdir: Path) -> None:
    result = cli("sync", corpus(workdir, "duplicate_header.csv"), "--state", "fresh.db")

    assert result.status == 2
    assert not (workdir / "fresh.db").exists()


# -- a 10 MB field ------------------------------------------------------------------------------------


def run_process(loops: EmulatorServer, workdir: Path, *args: str) -> tuple[CliResult, float]:
    """``python -m bulksync`` as its own process, and that process's own peak memory in MiB (the
    worker's RUSAGE_CHILDREN would be the largest of every child it ever ran)."""
    env = {**os.environ, "LOOPS_API_KEY": API_KEY, "LOOPS_BASE_URL": loops.url}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bulksync", *args, "--report", "report.csv", "--summary-json", "summary.json",
             "--rate-limit", "1000"],
            cwd=workdir, env=env, stdout=out, stderr=err, text=True,
        )
        killer = threading.Timer(120, process.kill)  # a hung run fails the test instead of hanging it
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return CliResult(process.returncode, out.read(), err.read(), workdir), usage.ru_maxrss / 1024


def test_a_10_mb_field_rejects_its_row_and_the_rest_syncs_in_bounded_memory(
    loops: EmulatorServer, workdir: Path
) -> None:
    (workdir / "big.csv").write_text(
        f"email,firstName,bio\nada@example.com,Ada,short\ngrace@example.com,Grace,{'x' * TEN_MB}\n"
        "alan@example.com,Alan,\n"
    )

    result, peak_mib = run_process(loops, workdir, "sync", "big.csv", "--state", "state.db", "--create-properties")

    assert (result.status, result.err) == (0, "")
    assert report_rows(result) == [
        ("2", "grace@example.com", "reject", "failed", f"bio is {TEN_MB} characters long; Loops accepts at most 498"),
        *created(("1", "ada@example.com"), ("3", "alan@example.com")),
    ]
    assert held(loops.emulator, "firstName", "bio") == {
        "ada@example.com": {"firstName": "Ada", "bio": "short"},
        "alan@example.com": {"firstName": "Alan", "bio": None},
    }
    assert state_keys(workdir) == {"ada@example.com", "alan@example.com"}
    assert peak_mib < 400, f"peak memory {peak_mib:.0f} MiB for a 10 MB field"


def test_a_10_mb_email_is_rejected_without_echoing_10_mb(cli: Any, workdir: Path) -> None:
    # A rejection reason or a preview line quoting the whole value floods the terminal and the report:
    # both must stay readable, whatever the value.
    (workdir / "big_email.csv").write_text(
        f"email,firstName\nada@example.com,Ada\n{'x' * TEN_MB}@example.com,Huge\n{'y' * TEN_MB},Junk\n"
    )

    result = cli("sync", "big_email.csv", "--dry-run")

    assert result.status == 0
    assert max(len(line) for line in result.out.splitlines()) < 1000
    limit = csv.field_size_limit(4 * TEN_MB)  # to read today's report at all
    try:
        rows = report_rows(result)
    finally:
        csv.field_size_limit(limit)
    assert [(row, action) for row, _, action, _, _ in rows] == [("2", "reject"), ("3", "reject"), ("1", "create")]
    assert all(len(error) < 1000 for *_, error in rows), [len(error) for *_, error in rows]
