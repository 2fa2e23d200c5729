"""The core sync, end to end: the CLI in-process against the emulator on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulksync.emulator import Faults, LoopsEmulator
from bulksync.state import open_state
from tests.helpers import SAMPLE_DATA, by_email, expected_contacts, writes


def assert_matches_source(emulator: LoopsEmulator, source: Path) -> None:
    """Loops holds exactly the valid contacts of ``source``, each field as in the file."""
    held = by_email(emulator)
    expected = expected_contacts(source)
    assert sorted(held) == sorted(expected)
    for email, row in expected.items():
        contact = held[email]
        assert contact["firstName"] == row["firstName"]
        assert contact["lastName"] == row["lastName"]
        assert contact["userId"] == row["userId"]
        assert contact["subscribed"] is (row["subscribed"] in ("true", "yes", "1"))
        assert contact.get("userGroup") == (row["userGroup"] or None)
        assert contact["plan"] == row["plan"]
        assert contact["zip"] == row["zip"]  # text stays text: the leading zero survives
        assert contact["signupDate"] == row["signupDate"]


def test_first_sync_creates_every_valid_contact_as_in_the_file(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts.csv")

    assert result.status == 0, result.err
    assert_matches_source(emulator, SAMPLE_DATA / "contacts.csv")
    assert result.summary() == {
        "created": 47, "updated": 0, "recreated": 0, "deleted": 0, "unchanged": 0, "rejected": 5, "failed": 0,
        "not_recorded": 0, "requests": 53, "dry_run": False, "duration_s": result.summary()["duration_s"],
    }
    assert emulator.stats()["by_endpoint"] == {
        "GET /v1/api-key": 1,
        "GET /v1/contacts/properties": 1,  # the account is read once, then remembered in the state
        "GET /v1/lists": 1,
        "POST /v1/contacts/properties": 3,  # plan, zip, signupDate, with --create-properties
        "PUT /v1/contacts/update": 47,  # Loops' upsert: one request per contact, even if it exists
    }
    assert all("subscribed" not in r["json"] or r["json"]["subscribed"] is False for r in writes(emulator))
    assert "Sync finished" in result.out and "report.csv" in result.out
    assert result.err == ""  # no progress bar off a terminal, no warnings


def test_rerun_sends_no_write_and_changed_file_sends_only_changes(cli: Any, emulator: LoopsEmulator) -> None:
    cli("sync", "contacts.csv")
    first_run = emulator.stats()["requests"]

    again = cli("sync", "contacts.csv")
    assert again.status == 0
    assert emulator.stats()["requests"] - first_run == 1  # the key check, nothing else
    assert again.summary()["unchanged"] == 47 and again.summary()["created"] == 0
    assert [r["action"] for r in again.report()] == ["reject"] * 5

    since = len(emulator.request_log())
    changed = cli("sync", "contacts_changed.csv")
    assert changed.status == 0
    sent = writes(emulator, since)
    assert {r["path"] for r in sent} == {"/v1/contacts/update"}
    new = ("betty.holberton@example.com", "jean.bartik@example.com", "kathleen.booth@example.com")
    updates = {r["json"]["email"]: r["json"] for r in sent if r["json"]["email"] not in new}
    creates = sorted(r["json"]["email"] for r in sent if r["json"]["email"] in new)
    assert updates == {
        "grace.hopper@example.com": {"email": "grace.hopper@example.com", "lastName": "Hopper-Murray"},
        "barbara.liskov@example.com": {"email": "barbara.liskov@example.com", "plan": "free"},
        "margaret.hamilton@example.com": {"email": "margaret.hamilton@example.com", "userGroup": "beta"},
        "radia.perlman@example.com": {"email": "radia.perlman@example.com", "firstName": "Radia J."},
        "hedy.lamarr@example.com": {"email": "hedy.lamarr@example.com", "subscribed": False},
    }
    assert creates == ["betty.holberton@example.com", "jean.bartik@example.com", "kathleen.booth@example.com"]
    assert changed.summary()["updated"] == 5 and changed.summary()["created"] == 3
    assert changed.summary()["unchanged"] == 42
    emulator_contacts = by_email(emulator)
    assert emulator_contacts["hedy.lamarr@example.com"]["subscribed"] is False
    assert_matches_source(emulator, SAMPLE_DATA / "contacts_changed.csv")


def test_409_on_create_falls_back_to_update_without_resubscribing(cli: Any, emulator: LoopsEmulator) -> None:
    emulator.seed([{"email": "ada.lovelace@example.com", "firstName": "Old", "subscribed": False}])

    result = cli("sync", "contacts.csv", "--create-via", "create")

    assert result.status == 0
    ada = [r for r in writes(emulator) if r["json"]["email"] == "ada.lovelace@example.com"]
    assert [(r["path"], r["status"]) for r in ada] == [("/v1/contacts/create", 409), ("/v1/contacts/update", 200)]
    assert "subscribed" not in ada[1]["json"]
    assert emulator.contact("ada.lovelace@example.com")["subscribed"] is False  # type: ignore[index]
    assert emulator.contact("ada.lovelace@example.com")["firstName"] == "Ada"  # type: ignore[index]
    row = next(r for r in result.report() if r["key"] == "ada.lovelace@example.com" and r["action"] == "create")
    assert (row["status"], row["http_status"], row["attempts"]) == ("ok", "200", "2")
    assert "409" in row["error"]


@pytest.mark.parametrize(
    "faults",
    [
        Faults(fail_rate=0.15),
        Faults(drop_rate=0.15, drop_after_write_share=0.5),
        Faults(html_502_rate=0.1, fail_rate=0.05, drop_rate=0.05),
    ],
    ids=["500s", "dropped-connections", "mixed"],
)
def test_faults_converge_with_no_duplicate_and_no_lost_contact(
    cli: Any, emulator: LoopsEmulator, faults: Faults
) -> None:
    emulator.configure(faults=faults)
    waits: list[float] = []

    result = cli("sync", "contacts.csv", sleep=waits.append)

    assert result.status == 0, result.report()
    assert_matches_source(emulator, SAMPLE_DATA / "contacts.csv")
    assert len(emulator.contacts()) == 47
    assert waits, "faults were injected, so some request must have been retried"
    assert result.summary()["requests"] == emulator.stats()["requests"]
    emulator.configure(faults=Faults())
    before_rerun = emulator.stats()["requests"]
    assert cli("sync", "contacts.csv").summary()["unchanged"] == 47
    assert emulator.stats()["requests"] - before_rerun == 1


def test_a_team_busy_with_other_clients_gets_every_row_and_few_429s(cli: Any, emulator: LoopsEmulator) -> None:
    # The team's other clients take 80 of a 100/s limit: bulksync sees them in the headers and yields.
    emulator.configure(rate_limit=100, background_rps=80, rate_algorithm="sliding-log")

    result = cli("sync", "contacts.csv", "--rate-limit", "200", "--concurrency", "8")

    assert result.status == 0
    assert_matches_source(emulator, SAMPLE_DATA / "contacts.csv")
    assert emulator.stats()["rate_limited"] <= 3  # any 429 on the way was retried
    assert result.summary()["requests"] == emulator.stats()["requests"]


def test_bad_key_exits_4_after_one_request(cli: Any, emulator: LoopsEmulator, monkeypatch: Any) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", "wrong-key")

    result = cli("sync", "contacts.csv")

    assert result.status == 4
    assert emulator.stats()["requests"] == 1
    assert result.err.strip() == (
        "bulksync: error: Loops refused the API key (HTTP 401: Invalid API key); check LOOPS_API_KEY"
    )
    assert "wrong-key" not in result.out + result.err


def test_missing_key_exits_2_before_reading(cli: Any, emulator: LoopsEmulator, monkeypatch: Any) -> None:
    monkeypatch.delenv("LOOPS_API_KEY")

    result = cli("sync", "does-not-exist.csv")

    assert result.status == 2
    assert "LOOPS_API_KEY" in result.err
    assert emulator.stats()["requests"] == 0


def test_dry_run_sends_nothing_and_leaves_state_byte_for_byte(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    cli("sync", "contacts.csv", "--state", "state.db")
    before = (workdir / "state.db").read_bytes()
    requests = emulator.stats()["requests"]

    result = cli("sync", "contacts_changed.csv", "--state", "state.db", "--dry-run")

    assert result.status == 0
    assert emulator.stats()["requests"] == requests
    assert (workdir / "state.db").read_bytes() == before
    summary = result.summary()
    assert (summary["created"], summary["updated"], summary["dry_run"]) == (3, 5, True)
    assert {r["status"] for r in result.report() if r["action"] != "reject"} == {"planned"}
    assert 'lastName: "Hopper" -> "Hopper-Murray"' in result.out


def test_dry_run_without_state_file_creates_none(cli: Any, workdir: Path) -> None:
    result = cli("sync", "contacts.csv", "--state", "fresh.db", "--dry-run")

    assert result.status == 0
    assert not (workdir / "fresh.db").exists()
    assert result.summary()["created"] == 47


def test_each_rejection_reason_is_reported_with_its_row(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts.csv")

    rejects = [(r["row"], r["key"], r["status"], r["error"]) for r in result.report() if r["action"] == "reject"]
    assert rejects == [
        ("1", "ada.lovelace@example.com", "failed", "duplicate of row 2 (the last row for a contact wins)"),
        ("22", "", "failed", "missing email"),
        ("23", "not-an-email", "failed", "invalid email syntax: not-an-email"),
        ("44", "long.bio@example.com", "failed", "firstName is 499 characters long; Loops accepts at most 498"),
        ("45", "maybe@example.com", "failed", "subscribed value 'maybe' is not a boolean (use true/false/yes/no/1/0)"),
    ]
    assert emulator.contact("ada.lovelace@example.com")["firstName"] == "Ada"  # type: ignore[index]


def test_malformed_jsonl_line_is_rejected_and_the_rest_synced(cli: Any, emulator: LoopsEmulator) -> None:
    emulator.add_list("cm_news", "Newsletter")

    result = cli("sync", "contacts.jsonl")

    assert result.status == 0
    rejects = [(r["row"], r["error"]) for r in result.report() if r["action"] == "reject"]
    assert rejects == [("12", "malformed JSON at column 54: Expecting ',' delimiter")]
    assert len(emulator.contacts()) == 20
    edsger = emulator.contact("edsger.dijkstra@example.com")
    assert edsger is not None
    assert edsger["seats"] == 4 and edsger["mailingLists"] == {"cm_news": True}


def test_missing_email_column_is_a_one_line_error(cli: Any, workdir: Path, emulator: LoopsEmulator) -> None:
    (workdir / "people.csv").write_text("name,plan\nAda,pro\n")

    result = cli("sync", "people.csv")

    assert result.status == 2
    assert result.err == (
        "bulksync: error: people.csv:1: no email column (found: name, plan); "
        "add an 'email' column or map one with --mapping or --preset\n"
    )
    assert emulator.stats()["requests"] == 0


def test_state_records_only_confirmed_writes(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "first.csv").write_text("\n".join((workdir / "contacts.csv").read_text().splitlines()[:2]) + "\n")
    assert cli("sync", "first.csv", "--state", "state.db").status == 0  # properties made, account remembered
    emulator.configure(faults=Faults(fail_rate=0.4))

    result = cli("sync", "contacts.csv", "--state", "state.db", "--max-retries", "1", sleep=lambda s: None)

    assert result.status == 1
    failed = [r for r in result.report() if r["action"] in ("create", "update") and r["status"] == "failed"]
    assert failed and len(failed) == result.summary()["failed"]
    assert {(r["http_status"], r["attempts"], r["error"]) for r in failed} == {
        ("500", "2", "HTTP 500: Internal server error")
    }
    in_state = {key for key, _ in open_state(workdir / "state.db", readonly=True).contacts()}
    assert in_state == set(by_email(emulator))
    emulator.configure(faults=Faults())
    retry = cli("sync", "contacts.csv", "--state", "state.db")
    assert retry.status == 0
    assert retry.summary()["created"] + retry.summary()["updated"] == len(failed)
    assert_matches_source(emulator, SAMPLE_DATA / "contacts.csv")


def test_key_check_that_never_gets_through_stops_the_run(cli: Any, emulator: LoopsEmulator) -> None:
    emulator.configure(faults=Faults(fail_rate=1.0))

    result = cli("sync", "contacts.csv", "--max-retries", "2", sleep=lambda s: None)

    assert result.status == 1
    last_line = result.err.splitlines()[-1]
    assert last_line == "bulksync: error: could not check the API key: HTTP 500: Internal server error"
    assert "retrying the API key check after attempt 2" in result.err
    assert emulator.stats()["requests"] == 3


def test_first_sync_into_a_populated_audience_sends_one_write_per_contact(
    cli: Any, emulator: LoopsEmulator
) -> None:
    """A lost state file or a migration re-run: 80% already in Loops, some of them unsubscribed."""
    expected = expected_contacts(SAMPLE_DATA / "contacts.csv")
    present = sorted(expected)[: int(len(expected) * 0.8)]
    emulator.seed([{"email": email, "subscribed": i % 3 != 0} for i, email in enumerate(present)])
    for name in ("plan", "zip", "signupDate"):
        emulator.add_property(name, "string")

    result = cli("sync", "contacts.csv")

    assert result.status == 0
    assert len(writes(emulator)) == len(expected) == 47  # exactly one write per contact, no 409 round trips
    assert result.summary()["requests"] == 47 + 3  # plus the key check and the account's properties and lists
    for i, email in enumerate(present):
        held = emulator.contact(email)
        assert held is not None
        assert held["subscribed"] is (i % 3 != 0 and expected[email]["subscribed"] in ("true", "yes", "1"))
