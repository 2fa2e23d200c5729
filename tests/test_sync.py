"""The library's front doors, in-process: run_sync, apply_plan, record_baseline and bulksync.sync().

Every run here goes through the emulator's in-process transport on a fake clock: Loops' real 10/s
limit is enforced, yet nothing sleeps.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

import bulksync
from bulksync.cli import build_parser
from bulksync.cli import sync_config as cli_config
from bulksync.config import Runtime, sync_config
from bulksync.emulator import Faults, LoopsEmulator
from bulksync.errors import ConfigError, DeleteGuardError, ExitStatus
from bulksync.source.mapping_file import mapping_spec
from bulksync.sync import apply_plan, record_baseline, run_sync
from tests.helpers import (
    API_KEY,
    IN_PROCESS_URL,
    SAMPLE_DATA,
    FakeClock,
    by_email,
    expected_contacts,
    report_rows,
    run_config,
    state_fields,
    writes,
)

FIRST_REJECTS = 5
VALID = 47


# -- run_sync --------------------------------------------------------------------------------------------


def test_first_sync_creates_every_valid_contact_under_the_rate_limit(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, clock: FakeClock
) -> None:
    team.configure(rate_algorithm="token-bucket")  # its burst absorbs the workers' jitter on the shared fake clock
    started = clock()

    result = run_sync(run_config(create_properties=True), runtime)

    summary = result.summary
    assert (summary.created, summary.updated, summary.deleted, summary.unchanged) == (VALID, 0, 0, 0)
    assert (summary.rejected, summary.failed, summary.requests) == (FIRST_REJECTS, 0, VALID + 6)
    assert team.stats()["rate_limited"] == 0  # paced under Loops' 10/s, never answered 429
    assert clock() - started >= (VALID + 6 - 10) / 10  # 53 requests at 10/s, after a burst of at most 10
    assert sorted(c["email"] for c in team.contacts()) == sorted(expected_contacts(SAMPLE_DATA / "contacts.csv"))
    stored = state_fields(workdir)
    assert len(stored) == VALID
    assert stored["grace.hopper@example.com"] == {
        "email": "grace.hopper@example.com", "firstName": "Grace", "lastName": "Hopper", "plan": "team",
        "signupDate": "2024-03-03", "userId": "u0002", "zip": "02102",
    }  # no "subscribed": a new contact is written by Loops' upsert, which never carries subscribed=true
    rows = report_rows(workdir)
    assert [row["action"] for row in rows].count("reject") == FIRST_REJECTS
    assert [row["status"] for row in rows if row["action"] == "create"] == ["ok"] * VALID


def test_a_rerun_sends_only_the_key_check_and_a_changed_file_only_its_changes(
    workdir: Path, team: LoopsEmulator, runtime: Runtime
) -> None:
    team.configure(rate_algorithm="token-bucket")  # the re-run's first request at once relies on the bucket's burst
    run_sync(run_config(create_properties=True), runtime)
    since = len(team.request_log())

    again = run_sync(run_config(), runtime)

    assert again.summary.requests == 1 and again.summary.unchanged == VALID
    assert [r["path"] for r in team.request_log()[since:]] == ["/v1/api-key"]

    since = len(team.request_log())
    changed = run_sync(run_config("contacts_changed.csv"), runtime)

    assert (changed.summary.created, changed.summary.updated, changed.summary.unchanged) == (3, 5, 42)
    sent = {r["json"]["email"]: r["json"] for r in writes(team, since)}
    assert sent["grace.hopper@example.com"] == {"email": "grace.hopper@example.com", "lastName": "Hopper-Murray"}
    assert sent["barbara.liskov@example.com"] == {"email": "barbara.liskov@example.com", "plan": "free"}
    assert state_fields(workdir)["grace.hopper@example.com"]["lastName"] == "Hopper-Murray"
    assert by_email(team)["hedy.lamarr@example.com"]["subscribed"] is False


def test_a_dry_run_writes_no_state_and_its_plan_is_applied_exactly(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, clock: FakeClock
) -> None:
    preview = run_sync(run_config(dry_run=True, plan="sync.plan"), runtime)

    assert not (workdir / "state.db").exists()
    assert team.contacts() == []
    assert preview.summary.dry_run and preview.summary.created == VALID and preview.summary.requests == 3
    assert preview.plan_path == Path("sync.plan")
    first = preview.preview[0]
    assert (first.kind, first.key, first.row) == ("create", "ada.lovelace@example.com", 2)

    applied = apply_plan(Path("sync.plan"), run_config(create_properties=True), runtime)

    assert (applied.summary.created, applied.summary.failed) == (VALID, 0)
    assert len(state_fields(workdir)) == VALID
    clock.sleep(1.0)  # the next run comes later; back to back, Loops' window would still hold the apply's requests
    assert run_sync(run_config(), runtime).summary.requests == 1  # applied exactly what a sync would have sent


def test_a_baseline_records_the_audience_and_the_next_sync_sends_nothing(
    workdir: Path, team: LoopsEmulator, runtime: Runtime
) -> None:
    summary = record_baseline(workdir / "contacts.csv", workdir / "state.db")

    assert (summary.unchanged, summary.rejected) == (VALID, FIRST_REJECTS)
    assert team.stats()["requests"] == 0
    result = run_sync(run_config(), runtime)
    # The key check, then the account's properties and lists (a baseline without a key did not read them).
    assert (result.summary.unchanged, result.summary.requests) == (VALID, 3)
    assert writes(team) == []


def test_a_stop_request_ends_the_run_with_state_matching_loops(
    workdir: Path, team: LoopsEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_after = 10
    stop = threading.Event()
    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep, stop=stop)
    original = team.handle

    def handle(*args: Any) -> Any:  # a signal arriving after the tenth contact
        answer = original(*args)
        if len(team.contacts()) >= stop_after:
            stop.set()
        return answer

    monkeypatch.setattr(team, "handle", handle)

    result = run_sync(run_config(create_properties=True, concurrency=1), runtime)

    assert result.interrupted
    assert stop_after <= result.summary.created < VALID
    assert set(state_fields(workdir)) == {c["email"] for c in team.contacts()}


def test_the_guard_refuses_a_truncated_source_and_sends_nothing(
    workdir: Path, team: LoopsEmulator, runtime: Runtime
) -> None:
    run_sync(run_config(create_properties=True), runtime)
    (workdir / "short.csv").write_text((workdir / "contacts.csv").read_text().splitlines()[0] + "\n"
                                       "ada.lovelace@example.com,Ada,Lovelace,u0001,true,,pro,02101,2024-02-02\n")
    since = len(team.request_log())

    with pytest.raises(DeleteGuardError) as refused:
        run_sync(run_config("short.csv", delete_missing=True), runtime)

    assert refused.value.exit_status == ExitStatus.DELETE_GUARD
    assert str(refused.value).startswith(f"refusing to delete {VALID - 1} of the {VALID} contacts in state")
    assert writes(team, since) == []
    assert len(state_fields(workdir)) == VALID


# -- bulksync.sync(): the documented Python API -------------------------------------------------------------


def test_bulksync_sync_takes_the_sync_commands_options(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)  # api_key and base_url default to the CLI's variables
    monkeypatch.setenv("LOOPS_BASE_URL", IN_PROCESS_URL)

    result = bulksync.sync("contacts.csv", "state.db", runtime=runtime, create_properties=True,
                           max_delete="5%", rate_limit=8, report="report.csv")

    assert isinstance(result, bulksync.SyncResult)
    assert (result.summary.created, result.summary.rejected, result.summary.failed) == (VALID, FIRST_REJECTS, 0)
    assert result.report_path == Path("report.csv") and (workdir / "report.csv").exists()
    assert len(state_fields(workdir)) == VALID


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["sync", "users.csv"], {}),
        (["sync", "users.csv", "--state", "s.db", "--delete-missing", "--max-delete", "5%", "--max-clear", "20",
          "--preset", "mailchimp", "--delimiter", "tab", "--rate-limit", "5", "--concurrency", "2", "--timeout",
          "10", "--key", "userId", "--mode", "upsert", "--report", "r.csv", "--summary-json", "s.json"],
         {"state": "s.db", "delete_missing": True, "max_delete": "5%", "max_clear": 20, "preset": "mailchimp",
          "delimiter": "tab", "rate_limit": 5, "concurrency": 2, "timeout": 10, "key": "userId", "mode": "upsert",
          "report": "r.csv", "summary_json": "s.json"}),
        (["sync", "users.csv", "--dry-run", "--plan", "p.jsonl", "--limit", "3", "--create-via", "create"],
         {"dry_run": True, "plan": "p.jsonl", "limit": 3, "create_via": "create"}),
    ],
)
def test_the_cli_and_bulksync_sync_make_the_same_config(argv: list[str], options: dict[str, Any]) -> None:
    args = build_parser().parse_args(argv)
    from_flags = cli_config(args, {"LOOPS_API_KEY": "k"}, io.StringIO())

    from_python = sync_config(argv[1], options.pop("state", "bulksync.state.db"), environ={"LOOPS_API_KEY": "k"},
                              **options)

    assert from_flags == from_python


def test_bulksync_sync_options_become_the_same_config_as_the_cli_flags() -> None:
    made = sync_config("users.csv", "s.db", api_key="k", environ={}, delete_missing=True, preset="mailchimp",
                       max_delete="5%", mode="upsert", rate_limit=5, concurrency=2, timeout=10, key="userId")

    assert (made.source, made.state_path, made.delete_missing, made.preset) == (
        Path("users.csv"), Path("s.db"), True, "mailchimp")
    assert made.max_delete.percent == 5 and made.key == "userId"
    assert (made.http.rate_limit, made.http.concurrency, made.http.read_timeout) == (5.0, 2, 10.0)
    assert made.http.base_url == "https://app.loops.so/api" and not made.progress


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delete_mising": True}, "unknown option 'delete_mising' (did you mean delete_missing?)"),
        ({"mode": "both"}, "option mode='both': expected one of upsert, create-only, update-only"),
        ({"max_delete": "lots"}, "option max_delete='lots'"),
        ({"concurrency": 0}, "option concurrency=0: must be a whole number, 1 or more, got 0"),
        ({"concurrency": 2.9}, "option concurrency=2.9: must be a whole number, 1 or more, got 2.9"),
        ({"limit": True}, "option limit=True: expected a number, got True"),
        ({"timeout": float("inf")}, "option timeout=inf: must be a finite number above 0, got inf"),
        ({"rate_limit": float("nan")}, "option rate_limit=nan: must be a finite number above 0, got nan"),
        ({"delimiter": ";;"}, "option delimiter=';;': expected one character such as ';' or 'tab', got ';;'"),
        ({"dry_run": "no"}, "option dry_run='no': expected True or False"),
        ({"delete_missing": "yes"}, "option delete_missing='yes': expected True or False"),
        ({"delete_missing": True, "limit": 5}, "--limit is for trial runs and cannot be combined"),
    ],
)
def test_bulksync_sync_refuses_bad_options_before_reading_anything(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        bulksync.sync("no-such-file.csv", api_key="k", **options)

    assert str(refused.value).startswith(message)
    assert refused.value.exit_status == ExitStatus.USAGE


def test_errors_are_the_documented_classes_with_their_exit_status(workdir: Path, runtime: Runtime) -> None:
    with pytest.raises(bulksync.ConfigError, match="no API key: set LOOPS_API_KEY"):
        bulksync.sync("contacts.csv", runtime=runtime, environ={})
    with pytest.raises(bulksync.InputError) as missing:
        bulksync.sync("nope.csv", api_key=API_KEY, base_url=IN_PROCESS_URL, runtime=runtime)
    assert missing.value.exit_status == ExitStatus.USAGE


def test_a_mapping_file_laid_over_a_preset_wins_entry_by_entry(workdir: Path) -> None:
    (workdir / "extra.toml").write_text('[columns."First Name"]\nto = "nickname"\n')

    spec = mapping_spec(workdir / "extra.toml", "mailchimp")

    assert spec is not None
    first, email = spec.rule("First Name"), spec.rule("Email Address")
    assert first is not None and first.target() == "nickname"  # the file's entry
    assert email is not None and email.target() == "email"  # the preset's, kept


def test_faults_do_not_lose_or_duplicate_a_contact(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    team.configure(faults=Faults(fail_rate=0.2, drop_rate=0.05, drop_after_write_share=0.5))

    result = run_sync(run_config(create_properties=True, max_retries=8), runtime)

    assert result.summary.failed == 0 and result.summary.created == VALID
    assert sorted(c["email"] for c in team.contacts()) == sorted(expected_contacts(SAMPLE_DATA / "contacts.csv"))
    assert set(state_fields(workdir)) == {c["email"] for c in team.contacts()}
