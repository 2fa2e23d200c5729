"""Unsubscribes survive deletes, and contacts deleted in Loops are never half re-created (issue 14).

Through the emulator in-process, on a fake clock: what a person or a teammate does in Loops is done
through the emulator's own API, as Loops' UI or a campaign's unsubscribe link would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulksync.config import Runtime
from bulksync.emulator import Faults, LoopsEmulator
from bulksync.state import open_state
from bulksync.sync import run_sync
from tests.helpers import API_KEY, report_rows, run_config, state_fields, writes

HEADER = "email,firstName,lastName,plan,subscribed,mailingLists.news\n"
ADA = "ada@example.com,Ada,Lovelace,pro,true,true\n"
GRACE = "grace@example.com,Grace,Hopper,team,true,true\n"


def in_loops(team: LoopsEmulator, method: str, path: str, body: dict[str, Any]) -> Any:
    """A change made in Loops itself (its UI, an unsubscribe link), not by bulksync."""
    answer = team.handle(method, f"/api/v1/{path}", {"authorization": f"Bearer {API_KEY}"}, json.dumps(body).encode())
    assert answer.status == 200, answer.body
    return answer.json()


def write(workdir: Path, name: str, *rows: str) -> str:
    (workdir / name).write_text(HEADER + "".join(rows))
    return name


@pytest.fixture
def synced(workdir: Path, team: LoopsEmulator, runtime: Runtime) -> None:
    """Ada and Grace synced, on the news list."""
    team.add_list("news", "Newsletter")
    result = run_sync(run_config(write(workdir, "both.csv", ADA, GRACE), create_properties=True), runtime)
    assert result.summary.created == 2


def test_an_unsubscribe_survives_delete_and_re_add(workdir: Path, team: LoopsEmulator, runtime: Runtime,
                                                    synced: None) -> None:
    in_loops(team, "PUT", "contacts/update", {"email": "ada@example.com", "subscribed": False,
                                              "mailingLists": {"news": False}})  # the link in a campaign
    since = len(team.request_log())

    gone = run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True), runtime)

    assert gone.summary.deleted == 1 and team.contact("ada@example.com") is None
    deletes = [f"{r['method']} {r['path']}" for r in team.request_log()[since:] if "ada" in json.dumps(r)]
    assert deletes == ["GET /v1/contacts/find", "POST /v1/contacts/delete"]  # a delete costs two requests
    with open_state(workdir / "state.db", readonly=True) as state:
        [tombstone] = state.tombstones_for(["ada@example.com"]).values()
        assert (tombstone.unsubscribed, tombstone.left_lists) == (True, ("news",))

    back = run_sync(run_config(write(workdir, "both.csv", ADA, GRACE)), runtime)

    ada = team.contact("ada@example.com")
    assert back.summary.created == 1 and ada is not None
    assert ada["subscribed"] is False and not ada["mailingLists"].get("news")
    assert (ada["firstName"], ada["plan"]) == ("Ada", "pro")
    [line] = [row for row in report_rows(workdir) if row["key"] == "ada@example.com"]
    assert line["status"] == "ok" and line["error"].startswith("kept unsubscribed: unsubscribed in Loops when")


def test_the_dry_run_and_the_plan_say_it_is_kept_unsubscribed(workdir: Path, team: LoopsEmulator,
                                                              runtime: Runtime, synced: None) -> None:
    in_loops(team, "PUT", "contacts/update", {"email": "ada@example.com", "subscribed": False})
    run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True), runtime)

    preview = run_sync(run_config(write(workdir, "both.csv", ADA, GRACE), dry_run=True, plan="p.jsonl"), runtime)

    [action] = preview.preview
    assert action.send["subscribed"] == "false" and (action.note or "").startswith("kept unsubscribed")
    line = json.loads((workdir / "p.jsonl").read_text().splitlines()[1])
    assert line["request"]["body"]["subscribed"] is False and line["note"].startswith("kept unsubscribed")


def test_resubscribe_does_re_subscribe(workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None) -> None:
    in_loops(team, "PUT", "contacts/update", {"email": "ada@example.com", "subscribed": False})
    run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True), runtime)

    run_sync(run_config(write(workdir, "both.csv", ADA, GRACE), resubscribe=True), runtime)

    ada = team.contact("ada@example.com")
    assert ada is not None and ada["subscribed"] is True


def test_a_tombstone_survives_a_baseline(workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None) -> None:
    in_loops(team, "PUT", "contacts/update", {"email": "ada@example.com", "subscribed": False})
    run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True), runtime)
    from bulksync.sync import record_baseline  # noqa: PLC0415

    record_baseline(workdir / "grace.csv", workdir / "state.db")

    with open_state(workdir / "state.db", readonly=True) as state:
        assert state.tombstone_count() == 1


def test_a_contact_deleted_in_loops_comes_back_whole_when_its_row_changes(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None
) -> None:
    in_loops(team, "POST", "contacts/delete", {"email": "grace@example.com"})  # someone deleted her in the UI
    changed = GRACE.replace(",team,", ",enterprise,")
    since = len(team.request_log())

    result = run_sync(run_config(write(workdir, "both.csv", ADA, changed)), runtime)

    grace = team.contact("grace@example.com")
    assert grace is not None
    assert (grace["firstName"], grace["lastName"], grace["plan"]) == ("Grace", "Hopper", "enterprise")
    assert grace["mailingLists"].get("news") is True
    assert (result.summary.recreated, result.summary.updated) == (1, 0)
    first, whole = (r["json"] for r in writes(team, since))  # the changed field, then the rest of the row
    assert first == {"email": "grace@example.com", "plan": "enterprise"}
    assert whole == {"email": "grace@example.com", "firstName": "Grace", "lastName": "Hopper", "plan": "enterprise",
                     "mailingLists": {"news": True}}
    [line] = [row for row in report_rows(workdir) if row["key"] == "grace@example.com"]
    assert line["status"] == "recreated" and "re-created and sent whole" in line["error"]
    assert json.loads((workdir / "summary.json").read_text())["recreated"] == 1
    # The next run knows the new contact: an ordinary change is an ordinary update again.
    again = run_sync(run_config(write(workdir, "both.csv", ADA, changed.replace("Grace,", "Grace B.,"))), runtime)
    assert (again.summary.updated, again.summary.recreated) == (1, 0)


def test_a_re_created_contact_that_was_unsubscribed_stays_unsubscribed(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None
) -> None:
    run_sync(run_config(write(workdir, "unsub.csv", ADA, GRACE.replace(",true,true", ",false,true"))), runtime)
    in_loops(team, "POST", "contacts/delete", {"email": "grace@example.com"})

    run_sync(run_config(write(workdir, "both.csv", ADA, GRACE.replace(",team,true,true", ",pro,true,true"))), runtime)

    grace = team.contact("grace@example.com")
    assert grace is not None and grace["subscribed"] is False and grace["plan"] == "pro"


@pytest.mark.parametrize("lookup", ["500 then ok", "dropped then ok"])
def test_a_delete_whose_lookup_fails_at_first_still_deletes_and_remembers(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None, lookup: str
) -> None:
    in_loops(team, "PUT", "contacts/update", {"email": "ada@example.com", "subscribed": False})
    team.configure(faults=Faults(fail_rate=0.5) if lookup.startswith("500") else Faults(drop_rate=0.5))

    result = run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True, max_retries=10), runtime)

    assert result.summary.deleted == 1 and team.contact("ada@example.com") is None
    with open_state(workdir / "state.db", readonly=True) as state:
        assert state.tombstones_for(["ada@example.com"])["ada@example.com"].unsubscribed


def test_a_crash_between_the_lookup_and_the_delete_leaves_a_consistent_state(
    workdir: Path, team: LoopsEmulator, clock: Any, synced: None
) -> None:
    inner = team.transport(sleep=clock.sleep)

    def dies_at_the_delete(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/contacts/delete"):
            raise KeyboardInterrupt  # as if killed right after the lookup
        return inner.handle_request(request)

    crashing = Runtime(transport=httpx.MockTransport(dies_at_the_delete), clock=clock, sleep=clock.sleep)
    with pytest.raises(KeyboardInterrupt):
        run_sync(run_config(write(workdir, "grace.csv", GRACE), delete_missing=True), crashing)
    assert "ada@example.com" in state_fields(workdir) and team.contact("ada@example.com") is not None

    runtime = Runtime(transport=inner, clock=clock, sleep=clock.sleep)
    result = run_sync(run_config("grace.csv", delete_missing=True), runtime)

    assert result.summary.deleted == 1 and team.contact("ada@example.com") is None
    assert "ada@example.com" not in state_fields(workdir)


def test_paths_without_a_delete_or_a_re_creation_cost_what_they_did(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, synced: None
) -> None:
    since = len(team.request_log())

    run_sync(run_config(write(workdir, "both.csv", ADA.replace(",pro,", ",free,"), GRACE)), runtime)

    assert [f"{r['method']} {r['path']}" for r in team.request_log()[since:]] == [
        "GET /v1/api-key", "PUT /v1/contacts/update",
    ]


def test_state_show_counts_tombstones_and_drop_tombstone_forgets_one(
    cli: Any, workdir: Path, emulator: LoopsEmulator
) -> None:
    emulator.add_list("news", "Newsletter")
    assert cli("sync", write(workdir, "both.csv", ADA, GRACE.replace("grace@", "grace.hopper@"))).status == 0
    assert cli("sync", write(workdir, "ada.csv", ADA), "--delete-missing").summary()["deleted"] == 1

    shown = cli("state", "show")
    dropped = cli("state", "drop-tombstone", "Grace.Hopper@example.com")
    again = cli("state", "drop-tombstone", "grace.hopper@example.com")

    assert "tombstones         1 (deleted contacts kept unsubscribed if they come back)\n" in shown.out
    assert dropped.status == 0 and dropped.out == (
        "Dropped the tombstone of grace.hopper@example.com: if it comes back, it is created as any new contact.\n"
    )
    assert again.status == 2 and "holds no tombstone for grace.hopper@example.com" in again.err
