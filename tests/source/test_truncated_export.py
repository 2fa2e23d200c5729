"""An export read while it was still being written, through the CLI: its last record, cut short, is
rejected as such (never created), and like any unreadable line it stops every deletion of the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bulksync.emulator import LoopsEmulator
from tests.helpers import SAMPLE_DATA, writes

PEOPLE = [
    ("user58@example.com", "Ada", "Lovelace"), ("user59@example.com", "Grace", "Hopper"),
    ("user60@example.com", "Alan", "Turing"), ("user61@example.com", "Edsger", "Dijkstra"),
    ("user62@example.com", "Barbara", "Liskov"),
]
CUT_SHORT = "the file looks cut short (was it still being written?); export it again"


def full_export(workdir: Path, suffix: str) -> str:
    """Yesterday's complete export, in the corpus file's columns: five people, where the truncated
    file stops in the fourth."""
    path = workdir / f"full{suffix}"
    if suffix == ".csv":
        path.write_text("email,firstName,lastName\n" + "".join(f"{','.join(person)}\n" for person in PEOPLE))
    else:
        path.write_text("".join(json.dumps({"email": email, "firstName": name}) + "\n" for email, name, _ in PEOPLE))
    return path.name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated_last_record.csv", f"line 5: the last record has 1 of 3 fields and no line end; {CUT_SHORT}"),
        ("truncated_last_line.jsonl", "malformed JSON at column 11: Unterminated string starting at"),
    ],
)
def test_a_cut_short_last_record_is_rejected_and_nothing_is_deleted(
    cli: Any, emulator: LoopsEmulator, workdir: Path, name: str, reason: str
) -> None:
    suffix = Path(name).suffix
    assert cli("sync", full_export(workdir, suffix), "--state", "state.db").status == 0
    since = len(emulator.request_log())
    shutil.copy(SAMPLE_DATA / "hostile" / name, workdir / f"export{suffix}")

    result = cli("sync", f"export{suffix}", "--state", "state.db", "--delete-missing")

    assert result.status == 0
    assert [(r["row"], r["key"], r["action"], r["error"]) for r in result.report() if r["action"] == "reject"] == [
        ("4", "", "reject", reason)
    ]
    assert "Note: 1 row(s) could not be read (see the report), so their contacts are unknown: no contact is " \
           "deleted this run" in result.out
    assert writes(emulator, since) == []  # user61 and user62 were missing from the export: not deleted
    assert sorted(c["email"] for c in emulator.contacts()) == [email for email, *_ in PEOPLE]  # no user61@example.co
