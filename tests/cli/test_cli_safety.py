"""Safety nets: what a rejected or unreadable row, a shared identifier, a plan's mode, a baseline's
types and an out-of-range number must never cause (lost contacts, merged contacts, overwritten
contacts, needless re-sends, a crashed run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bulksync.emulator import LoopsEmulator
from tests.helpers import writes


def test_a_rejected_row_is_never_deleted(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.csv").write_text("email,subscribed\na@x.io,true\nb@x.io,true\nc@x.io,true\n")
    (workdir / "v2.csv").write_text("email,subscribed\na@x.io,true\nb@x.io,maybe\nc@x.io,true\n")
    cli("sync", "v1.csv")
    since = len(emulator.request_log())

    result = cli("sync", "v2.csv", "--delete-missing")

    assert result.status == 0
    assert writes(emulator, since) == []
    assert emulator.contact("b@x.io") is not None


def test_unreadable_rows_stop_every_delete_of_the_run(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.jsonl").write_text('{"email": "a@x.io"}\n{"email": "b@x.io"}\n')
    (workdir / "v2.jsonl").write_text('{"email": "a@x.io"}\n{"email": "b@x.io", oops}\n')
    cli("sync", "v1.jsonl")

    result = cli("sync", "v2.jsonl", "--delete-missing")

    assert result.status == 0
    assert emulator.contact("b@x.io") is not None
    assert "Note: 1 row(s) could not be read (see the report), so their contacts are unknown: no contact is " \
           "deleted this run" in result.out


def test_two_contacts_may_not_share_a_user_id(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.csv").write_text("email,userId\na@x.io,u1\nb@x.io,u1\nc@x.io,u2\n")

    result = cli("sync", "v1.csv")

    assert sorted(c["email"] for c in emulator.contacts()) == ["b@x.io", "c@x.io"]
    assert [(r["row"], r["key"], r["error"]) for r in result.report() if r["action"] == "reject"] == [
        ("1", "a@x.io", "userId u1 is also on row 2 (one userId belongs to one contact)")
    ]


def test_apply_keeps_the_plans_create_only_mode(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.seed([{"email": "a@x.io", "firstName": "Orig"}])
    (workdir / "v1.csv").write_text("email,firstName\na@x.io,New\nb@x.io,Bo\n")
    cli("sync", "v1.csv", "--mode", "create-only", "--dry-run", "--plan", "p.plan")

    result = cli("apply", "p.plan", "--report", "report.csv")

    assert result.status == 0
    assert emulator.contact("a@x.io")["firstName"] == "Orig"  # type: ignore[index]
    assert emulator.contact("b@x.io")["firstName"] == "Bo"  # type: ignore[index]
    header = json.loads((workdir / "p.plan").read_text().splitlines()[0])
    assert (header["mode"], header["create_via"]) == ("create-only", "create")


def test_baseline_types_values_as_the_account_does(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.add_property("score", "number")
    emulator.add_property("joined", "date")
    (workdir / "v1.csv").write_text("email,score,joined\na@x.io,007,2024-01-06 10:00\n")

    cli("state", "baseline", "v1.csv")
    result = cli("sync", "v1.csv")

    assert result.summary()["unchanged"] == 1
    assert writes(emulator) == []


def test_an_out_of_range_number_rejects_its_line_only(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.jsonl").write_text('{"email": "a@x.io", "score": 1e400}\n{"email": "b@x.io", "score": 2}\n')

    result = cli("sync", "v1.jsonl")

    assert result.status == 0
    assert [(r["row"], r["error"]) for r in result.report() if r["action"] == "reject"] == [
        ("1", "score is not a finite number; Loops takes none like it")
    ]
    assert emulator.contact("b@x.io")["score"] == 2  # type: ignore[index]


def test_a_refused_run_creates_no_property(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.csv").write_text("email\n" + "".join(f"p{i}@x.io\n" for i in range(30)))
    (workdir / "v2.csv").write_text("email,plan\np0@x.io,pro\n")
    cli("sync", "v1.csv")
    since = len(emulator.request_log())

    refused = cli("sync", "v2.csv", "--delete-missing")  # 29 of 30 deletes: the guard says no

    assert refused.status == 3
    assert [r for r in emulator.request_log()[since:] if r["method"] != "GET"] == []


def test_apply_needs_the_plans_properties_to_exist(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "v1.csv").write_text("email,plan\na@x.io,pro\n")
    cli("sync", "v1.csv", "--dry-run", "--plan", "p.plan")

    refused = cli("apply", "p.plan", "--report", "report.csv")

    assert refused.status == 2
    assert "Loops has no custom property plan (string) yet; nothing was sent" in refused.err
    assert writes(emulator) == []
    assert cli("apply", "p.plan", "--report", "report.csv", "--create-properties").status == 0
    assert emulator.contact("a@x.io")["plan"] == "pro"  # type: ignore[index]
