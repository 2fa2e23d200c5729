"""JSONL handed on a batch at a time under its first batch's header, started over when a later batch
changes it (``SourceStream.consume``): every command gives exactly what a read of the whole file as
one batch gives (plan, report, summary, errors, line numbers), sends nothing before the source is
known whole, and asks Loops nothing twice but the account's properties and lists."""

from __future__ import annotations

import difflib
import io
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bulksync.cli import main
from bulksync.columns import ROW
from bulksync.emulator import LoopsEmulator
from bulksync.errors import AuthError, InputError
from bulksync.source import jsonl_reader, records, spool
from bulksync.source.batch import SourceStream, same_types
from bulksync.source.read import open_source
from tests.helpers import API_KEY, IN_PROCESS_URL, WRITES, state_fields

ONE_LINE = 60  # BATCH_BYTES: about a line a batch
ACCOUNT_FETCHES = ("GET /v1/contacts/properties", "GET /v1/lists")


def line(record: dict[str, Any] | str) -> str:
    return (record if isinstance(record, str) else json.dumps(record)) + "\n"


def people(count: int, **late: dict[str, Any] | str) -> str:
    """``count`` contacts, one a line; ``late`` replaces (or, for a str, is) the line of that number."""
    lines = [line({"email": f"u{n}@x.io", "firstName": f"F{n}", "seats": n}) for n in range(1, count + 1)]
    for name, record in late.items():
        number = int(name.removeprefix("line"))
        lines[number - 1] = line(record)
    return "".join(lines)


@dataclass
class Outcome:
    status: int
    out: str
    err: str
    files: dict[str, Any]
    requests: list[tuple[str, str, Any]]
    contacts: dict[str, dict[str, Any]]

    def same_as(self, whole: Outcome) -> None:
        """What the run told and wrote is exactly what ``whole``'s did."""
        assert self.status == whole.status
        for name, mine, theirs in [("out", self.out, whole.out), ("err", self.err, whole.err),
                                   *((name, self.files.get(name), content) for name, content in whole.files.items())]:
            assert mine == theirs, f"{name}:\n" + "\n".join(difflib.unified_diff(
                str(theirs).splitlines(), str(mine).splitlines(), "read whole first", "streamed", lineterm=""))
        assert sorted(self.files) == sorted(whole.files)

    def requests_but_account(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if f"{r[0]} {r[1]}" not in ACCOUNT_FETCHES]


class Runs:
    """The same commands in two folders, each with its own emulated team, both reading JSONL in batches
    of ``ONE_LINE`` bytes (every later one through the spool's temporary file): streamed, or as every
    JSONL file was read before streaming, whole before anything is handed on (every file started over
    after its first batch: every batch then comes with the whole file's header)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.monkeypatch = root, monkeypatch
        self.teams: dict[str, LoopsEmulator] = {}
        monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
        monkeypatch.setenv("LOOPS_BASE_URL", IN_PROCESS_URL)
        monkeypatch.delenv("BULKSYNC_STATE", raising=False)
        monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
        monkeypatch.setattr(spool, "MEMORY_BYTES", 0)

    def folder(self, streamed: bool) -> Path:
        name = "streamed" if streamed else "whole"
        if name not in self.teams:
            self.teams[name] = LoopsEmulator(api_key=API_KEY, rate_limit=0, seed=1)
            (self.root / name).mkdir()
        return self.root / name

    def write(self, name: str, text: str) -> None:
        for streamed in (False, True):
            (self.folder(streamed) / name).write_text(text)

    def run(self, streamed: bool, *argv: str, stdin: bytes | None = None) -> Outcome:
        folder = self.folder(streamed)
        team = self.teams[folder.name]
        self.monkeypatch.chdir(folder)
        self.monkeypatch.setattr(jsonl_reader, "same_types", same_types if streamed else lambda *_: False)
        if stdin is not None:
            self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        since = len(team.request_log())
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), out=out, err=err, transport=team.transport())
        files = {path.relative_to(folder).as_posix(): _content(path, folder) for path in sorted(folder.rglob("*"))
                 if path.is_file() and not path.name.startswith(("state.db", "bulksync-report-"))}
        requests = [(r["method"], r["path"], r["json"]) for r in team.request_log()[since:]]
        contacts = {c["email"]: {k: v for k, v in c.items() if k != "id"} for c in team.contacts()}
        return Outcome(status, _untimed(out.getvalue()), _untimed(err.getvalue()), files, requests, contacts)

    def both(self, *argv: str, stdin: bytes | None = None) -> tuple[Outcome, Outcome]:
        """The command with the source read whole first, then streamed."""
        return self.run(False, *argv, stdin=stdin), self.run(True, *argv, stdin=stdin)


def _untimed(text: str) -> str:
    return re.sub(r" in [0-9.]+s\b", " in (time)", text)


def _content(path: Path, folder: Path) -> Any:
    text = path.read_text().replace(str(folder), "FOLDER")
    if path.name.startswith("summary"):
        return {k: v for k, v in json.loads(text).items() if k != "duration_s"}
    if path.suffix == ".jsonl" and path.name.startswith("plan"):  # its header's created_at is the run's time
        lines = [json.loads(row) for row in text.splitlines()]
        return [{k: v for k, v in row.items() if k != "created_at"} for row in lines]
    return text


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    return Runs(tmp_path, monkeypatch)


def first_batch_header(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The columns and kinds a stream of small batches hands on first: proof that it must start over."""
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
    header = open_source(path).header
    return {name: header.kinds.get(name, "") for name in header.columns}


# -- the sync plan ---------------------------------------------------------------------------------------


def test_a_kind_changed_in_a_late_batch_plans_as_one_batch_does(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    runs.write("before.jsonl", people(12))
    zips = {f"line{n}": {"email": f"u{n}@x.io", "firstName": f"F{n}", "seats": n, "zip": 2134 + n}
            for n in range(1, 13)}
    zips["line10"]["zip"] = "02144"
    zips["line3"]["firstName"] = "Changed"
    runs.write("after.jsonl", people(12, **zips))
    for mode in (False, True):
        assert runs.run(mode, "sync", "before.jsonl", "--state", "state.db", "--create-properties").status == 0
    assert first_batch_header(runs.root / "streamed" / "after.jsonl", monkeypatch)["zip"] == "number"

    whole, streamed = runs.both("sync", "after.jsonl", "--state", "state.db", "--dry-run", "--delete-missing",
                                "--plan", "plan.jsonl", "--report", "report.csv", "--summary-json", "summary.json")

    assert whole.status == 0, whole.err
    streamed.same_as(whole)
    plan = whole.files["plan.jsonl"]
    assert plan[0]["types"]["zip"] == "string"  # as the whole file has it: its zips are sent as text
    assert [action["send"]["zip"] for action in plan[1:4]] == ["2135", "2136", "2137"]


def test_a_column_first_seen_in_a_late_batch_syncs_as_one_batch_does(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.write("in.jsonl", people(12, line11={"email": "u11@x.io", "firstName": "F11", "seats": 11, "vip": True}))
    assert "vip" not in first_batch_header(runs.root / "streamed" / "in.jsonl", monkeypatch)

    whole, streamed = runs.both("sync", "in.jsonl", "--state", "state.db", "--create-properties", "--concurrency",
                                "1", "--report", "report.csv", "--summary-json", "summary.json")

    assert whole.status == 0, whole.err
    streamed.same_as(whole)
    assert streamed.contacts == whole.contacts
    assert streamed.contacts["u11@x.io"]["vip"] is True
    assert state_fields(runs.root / "streamed") == state_fields(runs.root / "whole")
    # Started over: the account may be asked again, nothing else is; every write comes after the scan.
    assert streamed.requests_but_account() == whole.requests_but_account()
    assert sum(f"{m} {p}" in WRITES for m, p, _ in streamed.requests) == 12
    assert [m for m, _, _ in streamed.requests][:4] == ["GET", "GET", "GET", "POST"]  # the key, the account


def test_malformed_lines_keep_their_numbers_across_a_restart(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    runs.write("in.jsonl", "\n\n" + people(
        12, line2='{"email": "bad@x.io" "seats": 1}', line5="[1]", line9={"email": "u9@x.io", "seats": "nine"},
        line11="{", line12={"email": "u12@x.io", "__row": 1}))
    assert first_batch_header(runs.root / "streamed" / "in.jsonl", monkeypatch)["seats"] == "number"

    whole, streamed = runs.both("sync", "in.jsonl", "--state", "state.db", "--dry-run", "--plan", "plan.jsonl",
                                "--report", "report.csv", "--summary-json", "summary.json")

    assert whole.status == 0, whole.err
    streamed.same_as(whole)
    rejected = [row.split(",")[0] for row in whole.files["report.csv"].splitlines() if ",reject," in row]
    assert rejected == ["4", "7", "13", "14"]  # the file's line numbers (two blank lines first)


def test_an_error_only_the_first_batch_would_make_is_not_raised(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    runs.write("in.jsonl", line({"userId": "a", "seats": 1}) + people(6))
    assert "email" not in first_batch_header(runs.root / "streamed" / "in.jsonl", monkeypatch)

    whole, streamed = runs.both("sync", "in.jsonl", "--state", "state.db", "--dry-run", "--report", "report.csv",
                             "--summary-json", "summary.json")

    assert whole.files["summary.json"]["rejected"] == 1
    streamed.same_as(whole)


def test_an_error_of_the_source_comes_before_one_of_its_first_batch(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 200)
    monkeypatch.setattr(jsonl_reader, "MAX_RECORD_BYTES", 200)
    runs.write("in.jsonl", line({"userId": "a"}) + people(6, line4={"email": "u4@x.io", "bio": "x" * 300}))

    whole, streamed = runs.both("sync", "in.jsonl", "--state", "state.db", "--dry-run")

    assert (whole.status, whole.err) == (2, "bulksync: error: in.jsonl:5: the line starting on this line is longer "
                                            "than 200 bytes, the limit for one record; check it for an unclosed "
                                            "quote, or shorten its values\n")
    assert (streamed.status, streamed.err, streamed.requests) == (whole.status, whole.err, whole.requests)


def test_a_cut_short_stdin_that_changed_its_kinds_sends_nothing(runs: Runs) -> None:
    full = people(12, line8={"email": "u8@x.io", "firstName": "F8", "seats": "eight"}).encode()
    for mode in (False, True):
        assert runs.run(mode, "sync", "-", "--format", "jsonl", "--state", "state.db", "--create-properties",
                        stdin=full).status == 0

    whole, streamed = runs.both("sync", "-", "--format", "jsonl", "--state", "state.db", "--delete-missing",
                             "--max-delete", "100%", stdin=full[:-9].replace(b'"F3"', b'"Three"'))

    assert whole.status == 2
    assert whole.err.startswith("bulksync: error: <stdin>: line 12: malformed JSON at column ")
    assert whole.err.endswith("the input stopped short (did the command writing it fail?); nothing was sent\n")
    assert (streamed.status, streamed.err) == (whole.status, whole.err)
    assert [r for r in streamed.requests if f"{r[0]} {r[1]}" in WRITES] == []
    assert streamed.contacts == whole.contacts and len(streamed.contacts) == 12


# -- state baseline, check and export ---------------------------------------------------------------------


LATE = people(12, line7={"email": "u7@x.io", "firstName": "F7", "seats": "seven", "plan": "pro"})


def test_a_baseline_started_over_records_what_one_batch_does(runs: Runs) -> None:
    runs.write("in.jsonl", LATE)

    whole, streamed = runs.both("state", "baseline", "in.jsonl", "--state", "state.db")

    assert whole.status == 0, whole.err
    assert (streamed.status, streamed.out, streamed.err) == (whole.status, whole.out, whole.err)
    assert streamed.requests_but_account() == whole.requests_but_account() == [("GET", "/v1/api-key", None)]
    recorded = state_fields(runs.root / "streamed")
    assert recorded == state_fields(runs.root / "whole")
    assert recorded["u7@x.io"]["plan"] == "pro"


def test_a_check_started_over_asks_loops_once(runs: Runs) -> None:
    runs.write("in.jsonl", LATE)

    whole, streamed = runs.both("check", "in.jsonl")

    assert (streamed.status, streamed.out, streamed.err) == (whole.status, whole.out, whole.err)
    assert "plan" in whole.out and "Source: in.jsonl (12 rows)" in whole.out
    assert sorted(f"{m} {p}" for m, p, _ in streamed.requests) == [
        "GET /v1/api-key", "GET /v1/contacts/properties", "GET /v1/lists"]


def test_an_export_started_over_writes_what_one_batch_does(runs: Runs) -> None:
    runs.write("in.jsonl", LATE)

    whole, streamed = runs.both("export", "in.jsonl", "--to", "out")

    assert whole.status == 0, whole.err
    streamed.same_as(whole)
    assert streamed.requests == whole.requests
    assert "plan" in next(text for name, text in whole.files.items() if name.endswith(".csv")).splitlines()[0]


# -- who starts over -------------------------------------------------------------------------------------


def consumed(stream: SourceStream) -> tuple[int, list[tuple[Any, ...]], dict[str, str]]:
    """How many times a consumer ran, the rows it read the last time, and the header it had."""
    calls = []

    def use(whole: SourceStream) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
        calls.append(1)
        return [row for batch in whole.batches for row in batch.frame.rows()], dict(whole.header.kinds)

    rows, kinds = stream.consume(use)
    return len(calls), rows, kinds


def test_a_csv_of_many_batches_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bulksync.source import csv_reader  # noqa: PLC0415

    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 20)
    path = tmp_path / "in.csv"
    path.write_text("email,seats\n" + "".join(f"u{n}@x.io,{n}\n" for n in range(10)))

    stream = open_source(path)
    calls, rows, _ = consumed(stream)

    assert stream.settle is None
    assert (calls, len(rows)) == (1, 10)


@pytest.mark.parametrize(("later", "restarts"), [
    ({"seats": "two"}, True),  # number, then text
    ({"vip": True}, True),  # a new column
    ({"note": 5}, True),  # a column of nulls so far (text), now a number
    ({"name": 7}, False),  # text, then a number: still text
    ({"note": "x"}, False),  # nulls, then text
    ({"tags": "a"}, False),  # JSON, then text: both text
])
def test_only_a_change_of_columns_or_types_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: dict[str, Any], restarts: bool
) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 100)
    first = {"email": "a@x.io", "seats": 1, "name": "Ada", "note": None, "tags": ["x"]}
    path = tmp_path / "in.jsonl"
    path.write_text(line(first) + line({"email": "b@x.io"}) + line({"email": "c@x.io", **later}))

    calls, rows, kinds = consumed(open_source(path))

    assert calls == (2 if restarts else 1)
    assert len(rows) == 3 and rows[2][0] == 3
    assert kinds["seats"] == ("string" if "seats" in later else "number")


@pytest.mark.parametrize("late_column", [False, True])
def test_a_consumer_failing_before_the_end_fails_only_if_the_header_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late_column: bool
) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)
    path = tmp_path / "in.jsonl"
    path.write_text(people(8, line8={"email": "u8@x.io", "vip": True}) if late_column else people(8))
    seen: list[list[str]] = []

    def use(stream: SourceStream) -> list[int]:
        seen.append(stream.header.columns)
        rows = []
        for batch in stream.batches:
            if batch.frame[0, ROW] == 2 and len(seen) == 1:
                raise InputError("not with this header")  # as a check of the first batch's header would
            rows += batch.frame[ROW].to_list()
        return rows

    if not late_column:
        with pytest.raises(InputError, match="not with this header"):
            open_source(path).consume(use)
        assert seen == [["email", "firstName", "seats"]]
        return
    assert open_source(path).consume(use) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert seen == [["email", "firstName", "seats"], ["email", "firstName", "seats", "vip"]]


def test_a_failure_that_is_not_the_sources_is_raised_without_reading_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad key or a lost state says so at once: a 10 GB file is not read to the end first."""
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
    path = tmp_path / "in.jsonl"
    path.write_text(people(8, line8={"email": "u8@x.io", "vip": True}))
    stream = open_source(path)
    read: list[int] = []

    def use(whole: SourceStream) -> None:
        read.extend(next(whole.batches).frame[ROW].to_list())
        raise AuthError("Loops refused the API key")

    with pytest.raises(AuthError):
        stream.consume(use)
    assert read == [1]


def test_a_local_file_starts_over_from_the_file_and_stdin_from_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file on disk can be read twice, so its lines are never copied to a temporary file on the way;
    a pipe reads once, so they are."""
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)
    spilled: list[str] = []
    temporary_file = tempfile.TemporaryFile

    def spilling(*args: Any, **kwargs: Any) -> Any:
        spilled.append(kwargs.get("prefix", ""))
        return temporary_file(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spilling)
    text = people(6, line5={"email": "u5@x.io", "seats": "five"})
    (tmp_path / "in.jsonl").write_text(text)

    from_file = consumed(open_source(tmp_path / "in.jsonl"))
    assert "bulksync-spool-" not in spilled
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    from_stdin = consumed(open_source("-", fmt="jsonl"))

    assert "bulksync-spool-" in spilled
    assert from_file == from_stdin
    assert from_file[0] == 2 and from_file[2]["seats"] == "string"


def test_a_file_that_changed_while_it_was_read_is_refused_at_the_start_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", ONE_LINE)
    path = tmp_path / "in.jsonl"
    path.write_text(people(6, line5={"email": "u5@x.io", "seats": "five"}))

    def use(stream: SourceStream) -> int:
        with path.open("a") as still_written:  # the export is still being written after its first batch
            still_written.write(line({"email": "u7@x.io"}))
        return sum(batch.frame.height for batch in stream.batches)

    with pytest.raises(InputError, match=r"in\.jsonl: changed while it was read; run again once the export is"):
        open_source(path).consume(use)
