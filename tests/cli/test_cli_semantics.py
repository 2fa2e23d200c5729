"""Complete sync semantics through the CLI: deletes and their guard, field-level updates,
subscriptions, mailing lists, userId identity, plans and apply, baseline and state show."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bulksync.config import DEFAULT_STATE_PATH
from bulksync.emulator import LoopsEmulator
from bulksync.state import open_state
from tests.helpers import SAMPLE_DATA, writes


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, list(rows[0]) if rows else ["email"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def sample_rows() -> list[dict[str, str]]:
    with open(SAMPLE_DATA / "contacts_changed.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- deletes ---------------------------------------------------------------------------------------


def test_delete_missing_mirrors_the_source(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    rows = sample_rows()
    write_csv(workdir / "all.csv", rows)
    cli("sync", "all.csv")
    write_csv(workdir / "fewer.csv", rows[3:])
    since = len(emulator.request_log())

    result = cli("sync", "fewer.csv", "--delete-missing")

    assert result.status == 0
    gone = sorted(r["email"].strip().lower() for r in rows[:3])
    assert sorted(r["json"]["email"] for r in writes(emulator, since)) == gone
    assert {r["path"] for r in writes(emulator, since)} == {"/v1/contacts/delete"}
    assert {c["email"] for c in emulator.contacts()} == {r["email"].strip().lower() for r in rows[3:]}
    assert result.summary()["deleted"] == 3
    deleted = sorted((r["row"], r["key"], r["status"]) for r in result.report() if r["action"] == "delete")
    assert deleted == [("", key, "ok") for key in gone]
    in_state = {key for key, _ in open_state(workdir / "bulksync.state.db", readonly=True).contacts()}
    assert in_state == {r["email"].strip().lower() for r in rows[3:]}


def test_delete_of_a_contact_already_gone_from_loops_counts_as_done(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    rows = sample_rows()
    write_csv(workdir / "all.csv", rows)
    cli("sync", "all.csv")
    emulator.handle("POST", "/api/v1/contacts/delete", {"Authorization": "Bearer test-key"},
                    json.dumps({"email": rows[0]["email"]}).encode())
    write_csv(workdir / "fewer.csv", rows[1:])

    result = cli("sync", "fewer.csv", "--delete-missing")

    assert result.status == 0
    row = next(r for r in result.report() if r["action"] == "delete")
    assert (row["status"], row["http_status"], row["error"]) == ("ok", "404", "already gone from Loops")


def test_guard_refuses_a_truncated_source_and_sends_nothing(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    rows = sample_rows()
    write_csv(workdir / "all.csv", rows)
    cli("sync", "all.csv")
    write_csv(workdir / "truncated.csv", rows[:20])
    requests = emulator.stats()["requests"]

    refused = cli("sync", "truncated.csv", "--delete-missing")

    assert refused.status == 3
    assert emulator.stats()["requests"] == requests
    assert refused.err == (
        "bulksync: error: refusing to delete 30 of the 50 contacts in state (60%): more than the default limit "
        "(more than 10 contacts and more than 10% of the state). Nothing was sent. If the source is complete, "
        "pass --max-delete 30 (or a share such as --max-delete 50%)\n"
    )
    assert len(emulator.contacts()) == 50

    too_few = cli("sync", "truncated.csv", "--delete-missing", "--max-delete", "29")
    assert too_few.status == 3

    allowed = cli("sync", "truncated.csv", "--delete-missing", "--max-delete", "60%")
    assert allowed.status == 0
    assert allowed.summary()["deleted"] == 30
    assert len(emulator.contacts()) == 20


def test_guard_refuses_an_empty_source_whatever_the_flags(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    cli("sync", "contacts.csv")
    (workdir / "empty.csv").write_text("email,firstName\n")
    requests = emulator.stats()["requests"]

    for flags in ([], ["--max-delete", "100%"]):
        result = cli("sync", "empty.csv", "--delete-missing", *flags)
        assert result.status == 3
        assert "empty.csv has no valid rows: refusing to delete all 47 contacts in state" in result.err

    assert emulator.stats()["requests"] == requests
    assert len(emulator.contacts()) == 47


# -- field-level updates -----------------------------------------------------------------------------


def test_emptied_field_is_cleared_with_null_unless_keep_empty(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    write_csv(workdir / "v1.csv", [{"email": "a@example.com", "firstName": "Ann", "plan": "pro", "city": "Oslo"}])
    write_csv(workdir / "v2.csv", [{"email": "a@example.com", "firstName": "Ann", "plan": "", "city": "Oslo"}])
    write_csv(workdir / "v3.csv", [{"email": "a@example.com", "firstName": "", "plan": "team"}])
    cli("sync", "v1.csv", "--state", "cleared.db")
    cli("sync", "v1.csv", "--state", "kept.db")  # a second state over the same contact

    since = len(emulator.request_log())
    kept = cli("sync", "v2.csv", "--state", "kept.db", "--keep-empty")
    assert kept.status == 0
    assert writes(emulator, since) == []  # an empty cell changes nothing with --keep-empty
    assert emulator.contact("a@example.com")["plan"] == "pro"  # type: ignore[index]

    since = len(emulator.request_log())
    cli("sync", "v2.csv", "--state", "cleared.db")
    assert [r["json"] for r in writes(emulator, since)] == [{"email": "a@example.com", "plan": None}]
    assert "plan" not in emulator.contact("a@example.com")  # type: ignore[operator]

    since = len(emulator.request_log())
    cli("sync", "v3.csv", "--state", "cleared.db")
    assert [r["json"] for r in writes(emulator, since)] == [
        {"email": "a@example.com", "city": None, "firstName": None, "plan": "team"}
    ]


def test_fields_bulksync_never_set_are_never_touched(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.seed([{"email": "a@example.com", "firstName": "Ann", "company": "Acme"}])
    write_csv(workdir / "v1.csv", [{"email": "a@example.com", "firstName": "Anne"}])

    cli("sync", "v1.csv")
    write_csv(workdir / "v2.csv", [{"email": "a@example.com", "firstName": "Annie"}])
    since = len(emulator.request_log())
    cli("sync", "v2.csv")

    assert [r["json"] for r in writes(emulator, since)] == [{"email": "a@example.com", "firstName": "Annie"}]
    assert emulator.contact("a@example.com")["company"] == "Acme"  # type: ignore[index]


# -- subscriptions -----------------------------------------------------------------------------------


def test_subscribed_true_never_reaches_an_existing_contact_without_resubscribe(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    write_csv(workdir / "out.csv", [{"email": "a@example.com", "subscribed": "false"}])
    write_csv(workdir / "in.csv", [{"email": "a@example.com", "subscribed": "true"}])
    cli("sync", "out.csv")
    assert emulator.contact("a@example.com")["subscribed"] is False  # type: ignore[index]

    since = len(emulator.request_log())
    again = cli("sync", "in.csv")
    assert again.status == 0
    assert writes(emulator, since) == []
    assert again.summary()["unchanged"] == 1
    assert emulator.contact("a@example.com")["subscribed"] is False  # type: ignore[index]
    assert all(r["json"].get("subscribed") is not True for r in writes(emulator) if r["path"].endswith("update"))

    write_csv(workdir / "in-renamed.csv", [{"email": "a@example.com", "subscribed": "true", "firstName": "Al"}])
    since = len(emulator.request_log())
    cli("sync", "in-renamed.csv")
    assert [r["json"] for r in writes(emulator, since)] == [{"email": "a@example.com", "firstName": "Al"}]

    write_csv(workdir / "in-again.csv", [{"email": "a@example.com", "subscribed": "yes", "firstName": "Al"}])
    since = len(emulator.request_log())
    resubscribed = cli("sync", "in-again.csv", "--resubscribe")
    assert resubscribed.status == 0
    assert emulator.contact("a@example.com")["subscribed"] is True  # type: ignore[index]


def test_unsubscribe_always_propagates(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    write_csv(workdir / "v1.csv", [{"email": "a@example.com", "subscribed": "true"}])
    write_csv(workdir / "v2.csv", [{"email": "a@example.com", "subscribed": "no"}])
    cli("sync", "v1.csv")
    since = len(emulator.request_log())

    cli("sync", "v2.csv")

    assert [r["json"] for r in writes(emulator, since)] == [{"email": "a@example.com", "subscribed": False}]


# -- mailing lists -----------------------------------------------------------------------------------


def test_lists_are_added_and_removed_per_list(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.add_list("news", "News")
    emulator.add_list("beta", "Beta")
    emulator.add_list("other", "Other")
    emulator.seed([{"email": "a@example.com", "mailingLists": {"other": True}}])
    write_csv(workdir / "v1.csv", [{"email": "a@example.com", "mailingLists.news": "yes", "mailingLists.beta": ""}])
    write_csv(workdir / "v2.csv", [{"email": "a@example.com", "mailingLists.news": "no", "mailingLists.beta": "1"}])
    write_csv(workdir / "v3.csv", [{"email": "a@example.com", "mailingLists.news": "", "mailingLists.beta": "1"}])

    cli("sync", "v1.csv")
    assert emulator.contact("a@example.com")["mailingLists"] == {"news": True, "other": True}  # type: ignore[index]

    since = len(emulator.request_log())
    cli("sync", "v2.csv")
    assert [r["json"] for r in writes(emulator, since)] == [
        {"email": "a@example.com", "mailingLists": {"beta": True, "news": False}}
    ]
    assert emulator.contact("a@example.com")["mailingLists"] == {"beta": True, "other": True}  # type: ignore[index]

    since = len(emulator.request_log())
    cli("sync", "v3.csv")
    assert writes(emulator, since) == []  # an emptied list cell leaves the list alone


def test_mailing_lists_json_column(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.add_list("news", "News")
    write_csv(workdir / "v1.csv", [
        {"email": "a@example.com", "mailingLists": '{"news": true}'},
        {"email": "b@example.com", "mailingLists": "[1, 2]"},
    ])

    result = cli("sync", "v1.csv")

    assert emulator.contact("a@example.com")["mailingLists"] == {"news": True}  # type: ignore[index]
    rejects = [(r["row"], r["error"]) for r in result.report() if r["action"] == "reject"]
    assert rejects == [("2", 'mailingLists must be a JSON object such as {"listId": true}')]


# -- userId identity ---------------------------------------------------------------------------------


def test_email_change_under_userid_key(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    write_csv(workdir / "v1.csv", [{"userId": "u1", "email": "old@example.com", "firstName": "Ann"},
                                   {"userId": "", "email": "nouser@example.com", "firstName": "Bo"}])
    write_csv(workdir / "v2.csv", [{"userId": "u1", "email": "new@example.com", "firstName": "Ann"}])
    first = cli("sync", "v1.csv", "--key", "userId")
    assert [(r["row"], r["error"]) for r in first.report() if r["action"] == "reject"] == [
        ("2", "missing userId (required by --key userId)")
    ]
    since = len(emulator.request_log())

    result = cli("sync", "v2.csv", "--key", "userId")

    assert result.status == 0
    assert [r["json"] for r in writes(emulator, since)] == [{"userId": "u1", "email": "new@example.com"}]
    assert emulator.contact("old@example.com") is None
    assert emulator.contact("new@example.com")["userId"] == "u1"  # type: ignore[index]
    assert len(emulator.contacts()) == 1


def test_deletes_go_by_userid_and_state_remembers_its_key(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    write_csv(workdir / "v1.csv", [{"userId": "u1", "email": "a@example.com"}, {"userId": "u2", "email": "b@x.io"}])
    write_csv(workdir / "v2.csv", [{"userId": "u1", "email": "a@example.com"}])
    cli("sync", "v1.csv", "--key", "userId")
    since = len(emulator.request_log())

    cli("sync", "v2.csv", "--key", "userId", "--delete-missing")
    assert [r["json"] for r in writes(emulator, since)] == [{"userId": "u2"}]

    wrong = cli("sync", "v2.csv")
    assert wrong.status == 2
    assert wrong.err.endswith(
        "identifies contacts by userId, not email; pass --key userId or use another --state file\n"
    )


# -- plan and apply ----------------------------------------------------------------------------------


def test_plan_is_applied_exactly(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    cli("sync", "contacts.csv")
    requests = emulator.stats()["requests"]

    planned = cli("sync", "contacts_changed.csv", "--dry-run", "--plan", "changes.plan")
    assert planned.status == 0
    assert emulator.stats()["requests"] == requests
    assert "Plan: changes.plan (carry it out with: bulksync apply changes.plan)" in planned.out
    lines = [json.loads(line) for line in (workdir / "changes.plan").read_text().splitlines()]
    header, actions = lines[0], lines[1:]
    assert (header["format"], header["actions"], header["key"]) == ("bulksync-plan/1", 8, "email")
    assert [a["action"] for a in actions] == ["create"] * 3 + ["update"] * 5
    grace = next(a for a in actions if a["key"] == "grace.hopper@example.com")
    assert grace["request"] == {
        "endpoint": "PUT /v1/contacts/update",
        "body": {"email": "grace.hopper@example.com", "lastName": "Hopper-Murray"},
    }
    assert grace["changes"] == [["lastName", "Hopper", "Hopper-Murray"]]
    assert (workdir / "changes.plan").stat().st_mode & 0o777 == 0o600

    since = len(emulator.request_log())
    applied = cli("apply", "changes.plan", "--report", "report.csv", "--summary-json", "summary.json")
    assert applied.status == 0, applied.err
    sent = [r["json"] for r in writes(emulator, since)]
    assert sorted(sent, key=json.dumps) == sorted((a["request"]["body"] for a in actions), key=json.dumps)
    assert applied.summary()["created"] == 3 and applied.summary()["updated"] == 5

    since = len(emulator.request_log())
    assert cli("sync", "contacts_changed.csv").summary()["unchanged"] == 50
    assert writes(emulator, since) == []


def test_apply_refuses_after_the_state_moved_on(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    cli("sync", "contacts.csv")
    cli("sync", "contacts_changed.csv", "--dry-run", "--plan", "changes.plan")
    cli("sync", "contacts_changed.csv")  # the state moves on without the plan
    requests = emulator.stats()["requests"]

    refused = cli("apply", "changes.plan", "--report", "report.csv")

    assert refused.status == 2
    assert emulator.stats()["requests"] == requests
    # The generation counts state commits, which the pool's timing may split: whatever it is now.
    with open_state(workdir / DEFAULT_STATE_PATH, readonly=True) as state:
        now = state.generation()
    assert now > 1
    assert f"changed since the plan was made (generation 1 -> {now}; 8 planned contact(s) changed: " in refused.err
    assert "make a new plan with 'bulksync sync SOURCE --dry-run --plan PATH'" in refused.err


def test_plan_needs_dry_run(cli: Any) -> None:
    result = cli("sync", "contacts.csv", "--plan", "x.plan")
    assert (result.status, result.err) == (
        2, "bulksync: error: --plan writes a plan without sending anything: use it with --dry-run\n"
    )


def test_damaged_plan_is_a_one_line_error(cli: Any, workdir: Path) -> None:
    cli("sync", "contacts.csv", "--dry-run", "--plan", "p.plan")
    text = (workdir / "p.plan").read_text().splitlines()
    (workdir / "p.plan").write_text("\n".join([*text[:3], "{not json", *text[4:]]) + "\n")

    result = cli("apply", "p.plan")

    assert result.status == 2
    assert result.err.startswith("bulksync: error: p.plan:4: not a plan line (")


# -- baseline and state show ---------------------------------------------------------------------------


def test_baseline_then_unchanged_source_sends_nothing(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    for name in ("plan", "zip", "signupDate"):  # the audience is already in Loops, properties and all
        emulator.add_property(name, "string")
    baseline = cli("state", "baseline", "contacts.csv", "--state", "s.db")
    assert baseline.status == 0
    assert baseline.out == (
        "Recorded 47 contacts of contacts.csv as already synced in s.db (5 rows rejected); nothing was sent.\n"
    )
    # With a key, baseline reads the account's property types (no write), to type values as a sync will.
    assert [f"{r['method']} {r['path']}" for r in emulator.request_log()] == [
        "GET /v1/api-key", "GET /v1/contacts/properties", "GET /v1/lists"
    ]

    result = cli("sync", "contacts.csv", "--state", "s.db")

    assert result.summary()["unchanged"] == 47
    assert writes(emulator) == []
    assert result.summary()["requests"] == 1  # the key check
    since = len(emulator.request_log())
    changed = cli("sync", "contacts_changed.csv", "--state", "s.db")
    assert changed.summary()["updated"] == 5
    assert {"email": "grace.hopper@example.com", "lastName": "Hopper-Murray"} in [
        r["json"] for r in writes(emulator, since) if r["path"].endswith("update")
    ]


def test_state_show(cli: Any, workdir: Path) -> None:
    missing = cli("state", "show", "--state", "nothing.db")
    assert missing.status == 2 and "no such state file" in missing.err

    cli("sync", "contacts.csv", "--state", "s.db")
    result = cli("state", "show", "--state", "s.db")

    assert result.status == 0
    lines = dict(line.split(None, 1) if not line.startswith("last") else (line[:18].strip(), line[18:].strip())
                 for line in result.out.splitlines() if not line.startswith("state file"))
    assert lines["contacts"].strip() == "47"
    assert lines["key"].strip() == "email"
    assert lines["last run outcome"] == "ok"
    assert f"state file         {(workdir / 's.db').resolve()}" in result.out
