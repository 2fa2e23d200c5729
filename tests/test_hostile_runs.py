"""Hostile runs (issue 16): what a hostile tester found, each kept fixed by a test.

The library runs in-process on the emulator's transport and a fake clock; a few cases need the CLI.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.errors import ClearGuardError, ConfigError, ExitStatus
from bulksync.sync import run_sync
from tests.helpers import API_KEY, IN_PROCESS_URL, ROOT, SAMPLE_DATA, report_rows, run_config, state_fields, writes

HEADER = "email,firstName,subscribed\n"
# 64 + 1 + 185 = 250 characters: a legal address (up to 254), longer than the 200 a report shows.
LONG_EMAIL = "l" * 64 + "@" + "d" * 180 + ".test"


def test_a_rejected_row_with_a_long_key_keeps_its_contact(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    (workdir / "good.csv").write_text(HEADER + f"{LONG_EMAIL},Long,true\nshort@example.com,Short,true\n")
    assert run_sync(run_config("good.csv"), runtime).summary.created == 2
    (workdir / "bad.csv").write_text(HEADER + f"{LONG_EMAIL},Long,maybe\nshort@example.com,Short,true\n")

    result = run_sync(run_config("bad.csv", delete_missing=True), runtime)

    assert (result.summary.rejected, result.summary.deleted) == (1, 0)
    assert LONG_EMAIL in state_fields(workdir)
    assert {c["email"] for c in team.contacts()} == {LONG_EMAIL, "short@example.com"}
    [reject] = [row for row in report_rows(workdir) if row["action"] == "reject"]
    assert reject["key"] == LONG_EMAIL[:200] + "... (250 characters)"  # shortened for people only


# -- no output may destroy an input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--report", "contacts.csv"], "--report contacts.csv is SOURCE (contacts.csv)"),
        (["--report", "./link-to-source.csv"], "--report link-to-source.csv is SOURCE (contacts.csv)"),
        (["--summary-json", "state.db"], "--summary-json state.db is --state (state.db)"),
        (["--log-file", "contacts.csv"], "--log-file contacts.csv is SOURCE (contacts.csv)"),
        (["--log-file", "state.db"], "--log-file state.db is --state (state.db)"),
        (["--plan", "state.db.lock"], "--plan state.db.lock is a file bulksync keeps beside the state (state.db)"),
        (["--summary-json", "state.db.hashes-3.arrow"], "--summary-json state.db.hashes-3.arrow is a file bulksync"),
        (["--report", "out.csv", "--summary-json", "out.csv"],
         "--summary-json out.csv and --report out.csv are the same file"),
    ],
)
def test_an_output_on_an_input_or_another_output_is_refused_before_anything_is_read(
    cli: Any, emulator: LoopsEmulator, workdir: Path, flags: list[str], named: str
) -> None:
    assert cli("sync", "contacts.csv", "--state", "state.db").status == 0
    (workdir / "link-to-source.csv").symlink_to(workdir / "contacts.csv")
    before = {name: (workdir / name).read_bytes() for name in ("contacts.csv", "state.db")}
    requests = emulator.stats()["requests"]
    dry = ["--dry-run"] if "--plan" in flags else []

    result = cli("sync", "contacts.csv", "--state", "state.db", *dry, *flags, report=False)

    assert result.status == 2, result.err
    assert result.err.startswith(f"bulksync: error: {named}")
    assert result.err.count("\n") == 1 and "nothing was read or sent" in result.err
    assert {name: (workdir / name).read_bytes() for name in before} == before
    assert emulator.stats()["requests"] == requests


def test_the_python_api_refuses_an_output_on_its_source(workdir: Path, runtime: Runtime) -> None:
    with pytest.raises(ConfigError, match=r"^--report contacts.csv is SOURCE"):
        run_sync(run_config(report="contacts.csv", summary_json=None), runtime)
    assert (workdir / "contacts.csv").read_bytes() == (SAMPLE_DATA / "contacts.csv").read_bytes()


def test_reports_to_dev_null_work_and_leave_its_mode_alone(cli: Any, workdir: Path) -> None:
    mode = os.stat("/dev/null").st_mode

    result = cli("sync", "contacts.csv", "--report", "/dev/null", "--summary-json", "/dev/null", report=False)

    assert result.status == 0, result.err
    assert os.stat("/dev/null").st_mode == mode  # bulksync never chmods what it did not create


def test_an_existing_report_keeps_its_mode_and_a_new_one_is_private(cli: Any, workdir: Path) -> None:
    (workdir / "shared.csv").write_text("old\n")
    (workdir / "shared.csv").chmod(0o644)

    assert cli("sync", "contacts.csv", "--report", "shared.csv", "--summary-json", "new.json", report=False).status == 0

    assert (workdir / "shared.csv").stat().st_mode & 0o777 == 0o644
    assert (workdir / "new.json").stat().st_mode & 0o777 == 0o600
    assert (workdir / "shared.csv").read_text().startswith("row,key,action")


# -- the key is never printed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-first-line-1234\nsk-second-line-5678", "sk-accénted-1234", "sk-spaced 5678-9"])
def test_a_key_that_cannot_be_sent_is_refused_without_echoing_it(
    cli: Any, emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", key)

    result = cli("sync", "contacts.csv", "--log-file", "run.log")

    assert result.status == 2
    assert result.err == (
        "bulksync: error: the API key (LOOPS_API_KEY) holds a line break, a space or a character that is not "
        "printable ASCII, so it cannot be sent (it is not shown here); set it to the key alone, on one line\n"
    )
    log = workdir / "run.log"  # the error comes before the log file is opened, or it holds no key
    for part in key.split():
        assert part not in result.err and (not log.exists() or part not in log.read_text())
    assert emulator.stats()["requests"] == 0


def test_a_key_files_line_end_is_harmless(cli: Any, emulator: LoopsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY + "\n")  # LOOPS_API_KEY="$(cat key)" keeps no newline; < key does

    assert cli("sync", "contacts.csv").status == 0
    assert len(emulator.contacts()) == 47


# -- an export that lost a column ------------------------------------------------------------------------------


def without_column(workdir: Path, column: str, name: str = "lost.csv") -> str:
    """contacts.csv as an export that lost ``column``."""
    with open(workdir / "contacts.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(workdir / name, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [c for c in rows[0] if c != column])
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k != column} for row in rows)
    return name


def test_an_export_that_lost_a_column_clears_nothing_and_exits_3(
    workdir: Path, team: LoopsEmulator, runtime: Runtime
) -> None:
    run_sync(run_config(create_properties=True), runtime)
    before, since = state_fields(workdir), len(team.request_log())

    with pytest.raises(ClearGuardError) as refused:
        run_sync(run_config(without_column(workdir, "plan")), runtime)

    assert refused.value.exit_status == ExitStatus.DELETE_GUARD
    assert str(refused.value) == (
        "refusing to clear plan for 47 (100%) of the 47 contacts in state: more than the default limit (more "
        "than 10 contacts and more than 10% of the state). Nothing was sent. If the source really empties these "
        "fields, pass --max-clear 47 (or a share such as --max-clear 50%); to leave empty cells alone in Loops, "
        "pass --keep-empty"
    )
    assert writes(team, since) == [] and state_fields(workdir) == before
    assert all(c["plan"] for c in team.contacts())


def test_max_clear_allows_the_clears(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    run_sync(run_config(create_properties=True), runtime)

    cleared = run_sync(run_config(without_column(workdir, "plan"), max_clear="100%"), runtime)

    assert cleared.summary.updated == 47 and not any(c.get("plan") for c in team.contacts())
    assert not any("plan" in fields for fields in state_fields(workdir).values())


def test_keep_empty_clears_nothing_so_needs_no_flag(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    run_sync(run_config(create_properties=True), runtime)
    since = len(team.request_log())

    kept = run_sync(run_config(without_column(workdir, "plan"), keep_empty=True), runtime)

    assert (kept.summary.updated, kept.summary.failed) == (0, 0) and writes(team, since) == []
    assert all(c["plan"] for c in team.contacts())


def test_a_few_cleared_cells_need_no_flag(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    run_sync(run_config(create_properties=True), runtime)
    text = (workdir / "contacts.csv").read_text().replace(",pro,", ",,", 4)  # ada (two rows), edsger, frances
    (workdir / "few.csv").write_text(text)

    result = run_sync(run_config("few.csv"), runtime)

    assert result.summary.updated == 3


# -- odd paths get one line and exit 2, never an internal error ------------------------------------------------


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (lambda d: (d / "adir").mkdir(), ["--dry-run", "--report", "adir"],
         "--report adir: it is a directory; give a file's path; nothing was read or sent"),
        (lambda d: (d / "rd").symlink_to(d / "nowhere" / "x"), ["--dry-run", "--report-dir", "rd"],
         "--report-dir rd: rd is a symbolic link to nothing ("),
        (lambda d: None, ["--dry-run", "--report-dir", "contacts.csv"],
         "--report-dir contacts.csv: it is a file, not a directory; nothing was read or sent"),
        (lambda d: (d / "state.db.lock").mkdir(), [],
         "cannot take the run lock state.db.lock: it is a directory; give a file's path."),
        (lambda d: os.mkfifo(d / "state.db.lock"), [],
         "the run lock state.db.lock is not a regular file; remove it (bulksync makes a new one)"),
        (lambda d: (d / "state.db.lock").symlink_to(d / "gone" / "lock"), [],
         "cannot take the run lock state.db.lock: state.db.lock is a symbolic link to nothing ("),
        (lambda d: (d / "logs").write_text("a file"), ["--dry-run", "--log-file", "logs/run.log"],
         "cannot write logs/run.log: a part of the path (logs) is a file, not a directory"),
    ],
)
def test_an_odd_path_is_one_clear_line(
    cli: Any, emulator: LoopsEmulator, workdir: Path, make: Any, flags: list[str], message: str
) -> None:
    make(workdir)

    result = cli("sync", "contacts.csv", "--state", "state.db", *flags, report=False)

    assert result.status == 2, result.err
    assert result.err.startswith(f"bulksync: error: {message}") and result.err.count("\n") == 1
    assert emulator.stats()["requests"] == 0


def test_a_state_with_odd_characters_in_its_name_is_that_file(cli: Any, workdir: Path) -> None:
    name = "we?ird#name%20.db"

    assert cli("sync", "contacts.csv", "--state", name).status == 0

    assert sorted(p.name for p in workdir.glob("we*")) == [name, *sorted(p.name for p in workdir.glob(f"{name}.*"))]
    assert not (workdir / "we").exists()


READ_ONLY = """
set -e
mount -t tmpfs bulksync-test "$RO"
cp "$WORK"/state.db* "$WORK"/contacts_changed.csv "$RO"/
mount -o remount,ro "$RO"
cd "$RO"
{python} -m bulksync state show --state state.db > "$WORK/show.out" 2>&1 || echo "show: $?" >> "$WORK/show.out"
{python} -m bulksync sync contacts_changed.csv --state state.db --dry-run --report "$WORK/r.csv" \\
  > "$WORK/dry.out" 2>&1 || echo "dry: $?" >> "$WORK/dry.out"
{python} -m bulksync sync contacts_changed.csv --state state.db --report "$WORK/r2.csv" \\
  > "$WORK/real.out" 2>&1 || echo "real: $?" >> "$WORK/real.out"
"""


def test_a_good_state_on_a_read_only_file_system_is_read_not_called_damaged(cli: Any, workdir: Path) -> None:
    """Through a real read-only mount (a tmpfs in a mount namespace of its own: the suite runs as root)."""
    assert cli("sync", "contacts.csv", "--state", "state.db").status == 0
    mount = workdir / "ro"
    mount.mkdir()
    script = READ_ONLY.format(python=sys.executable)
    env = {**os.environ, "RO": str(mount), "WORK": str(workdir), "PYTHONPATH": str(ROOT), "LOOPS_API_KEY": API_KEY,
           "LOOPS_BASE_URL": IN_PROCESS_URL}

    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode == 0, f"could not make a read-only mount to test with: {done.stderr}"
    show = (workdir / "show.out").read_text()
    assert "contacts           47" in show and "show:" not in show
    dry = (workdir / "dry.out").read_text()
    assert "Dry run: nothing was sent" in dry and re.search(r"would be updated +5\n", dry) and "dry:" not in dry
    assert (workdir / "real.out").read_text() == (
        "bulksync: error: cannot take the run lock state.db.lock: the file system is read-only. A run writes the "
        "state: put --state on a writable disk (a dry run and 'bulksync state show' work read-only)\nreal: 2\n"
    )


def test_an_email_with_invisible_characters_is_rejected_not_a_second_contact(
    workdir: Path, team: LoopsEmulator, runtime: Runtime
) -> None:
    shutil.copy(SAMPLE_DATA / "hostile" / "invisible_email_chars.csv", workdir / "invisible.csv")

    result = run_sync(run_config("invisible.csv"), runtime)

    assert (result.summary.created, result.summary.rejected) == (1, 2)
    assert [c["email"] for c in team.contacts()] == ["ada@example.com"]
    reasons = [row["error"] for row in report_rows(workdir) if row["action"] == "reject"]
    assert len(reasons) == 2 and all(reason.startswith("invalid email syntax: ") for reason in reasons)


def test_the_dry_run_shows_what_a_create_sends(cli: Any, workdir: Path) -> None:
    (workdir / "one.csv").write_text("email,firstName,subscribed\nada@example.com,Ada,true\n")

    preview = cli("sync", "one.csv", "--dry-run", "--plan", "one.plan")

    assert '      email="ada@example.com", firstName="Ada"\n' in preview.out  # subscribed=true is not sent
    assert "subscribed" not in preview.report()[0]["changes"]
    plan_line = json.loads((workdir / "one.plan").read_text().splitlines()[1])
    assert plan_line["request"]["body"] == {"email": "ada@example.com", "firstName": "Ada"}
    assert plan_line["send"] == {"email": "ada@example.com", "firstName": "Ada"} and plan_line["withheld"] is True


def test_a_jsonl_line_nested_100_000_deep_rejects_that_row_only(workdir: Path, team: LoopsEmulator,
                                                               runtime: Runtime) -> None:
    deep = '{"email": "deep@example.com", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (workdir / "deep.jsonl").write_text('{"email": "ok@example.com"}\n' + deep + "\n")

    result = run_sync(run_config("deep.jsonl"), runtime)

    assert (result.summary.created, result.summary.rejected) == (1, 1)
    [reject] = [row for row in report_rows(workdir) if row["action"] == "reject"]
    assert (reject["row"], reject["error"]) == ("2", "nested too deeply to read; a contact's values are flat")
