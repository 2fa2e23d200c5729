"""Hostile runs (issue 16): what a hostile tester found, each kept fixed by a test.

The library runs in-process on the emulator's transport and a fake clock; a few cases need the CLI.
"""

from __future__ import annotations

from pathlib import Path

from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.sync import run_sync
from tests.helpers import report_rows, run_config, state_fields

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
