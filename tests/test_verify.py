"""``bulksync verify``: the state against the emulator after contacts were deleted, unsubscribed and
edited on Loops' side; values as Loops returns them are no drift; samples are reproducible; the
lookups are paced and write nothing; bad input and a refused key get their exit status."""

from __future__ import annotations

import csv
import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulksync.cli import main
from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.loops.connection import Connection
from bulksync.state import open_state
from bulksync.sync import run_sync
from bulksync.verify import VerifyOptions, run_verify
from tests.helpers import API_KEY, FakeClock, api_update, run_config


@pytest.fixture
def in_loops(emulator: LoopsEmulator) -> Iterator[httpx.Client]:
    """Changes made in Loops itself (its UI, an unsubscribe link), not by bulksync."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(transport=emulator.transport(), base_url="http://loops.test/api", headers=auth) as client:
        yield client


@pytest.fixture
def synced(cli: Any) -> None:
    """contacts.csv synced: 47 contacts in state.db and in Loops."""
    result = cli("sync", "contacts.csv", "--state", "state.db")
    assert result.status == 0 and result.summary()["created"] == 47, result.err


def drift_lines(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def finds(emulator: LoopsEmulator, since: int = 0) -> list[dict[str, str]]:
    return [r["query"] for r in emulator.request_log()[since:] if r["path"] == "/v1/contacts/find"]


def test_drift_made_in_loops_is_found(cli: Any, emulator: LoopsEmulator, in_loops: httpx.Client,
                                      synced: None) -> None:
    assert in_loops.post("/v1/contacts/delete", json={"email": "grace.hopper@example.com"}).status_code == 200
    assert api_update(in_loops, email="alan.turing@example.com", subscribed=False).status_code == 200
    assert api_update(in_loops, email="ada.lovelace@example.com", firstName="Augusta").status_code == 200
    assert api_update(in_loops, email="edsger.dijkstra@example.com", plan=None, zip="=1+1").status_code == 200
    since = len(emulator.request_log())

    result = cli("verify", "--state", "state.db", "--all", "--report", "drift.csv")

    assert result.status == 1, result.err
    assert result.out.splitlines()[1:6] == [
        "  matching                      43",
        "  missing in Loops               1",
        "  unsubscribed in Loops          1",
        "  different fields               2",
        "  requests                      48",
    ]
    assert result.out.startswith("Verified 47 of 47 contacts of state.db against Loops in ")
    assert "(all of them)" in result.out.splitlines()[0]
    assert "Missing in Loops, deleted there (1):\n  grace.hopper@example.com\n" in result.out
    assert "  alan.turing@example.com  subscribed: state (not set) / Loops false\n" in result.out
    assert '  ada.lovelace@example.com  firstName: state "Ada" / Loops "Augusta"\n' in result.out
    assert ('  edsger.dijkstra@example.com  plan: state "pro" / Loops (empty); zip: state "02104" / Loops "=1+1"\n'
            in result.out)
    assert result.out.endswith("Report: drift.csv (one line per difference)\n3 of 47 contacts differ from the state; "
                               "1 more only unsubscribed in Loops, which is no drift (--strict counts it).\n")
    assert drift_lines(cli("verify", "--state", "state.db", "--all", "--report", "drift.csv").workdir / "drift.csv") \
        == [
        {"key": "ada.lovelace@example.com", "problem": "different fields", "field": "firstName",
         "state_value": "Ada", "loops_value": "Augusta"},
        {"key": "alan.turing@example.com", "problem": "unsubscribed in Loops", "field": "subscribed",
         "state_value": "", "loops_value": "false"},
        {"key": "edsger.dijkstra@example.com", "problem": "different fields", "field": "plan",
         "state_value": "pro", "loops_value": ""},
        {"key": "edsger.dijkstra@example.com", "problem": "different fields", "field": "zip",
         "state_value": "02104", "loops_value": "'=1+1"},  # safe to open in a spreadsheet
        {"key": "grace.hopper@example.com", "problem": "missing in Loops", "field": "", "state_value": "",
         "loops_value": ""},
    ]
    log = emulator.request_log()[since:]
    assert {f"{r['method']} {r['path']}" for r in log} == {"GET /v1/api-key", "GET /v1/contacts/find"}  # no write
    assert len(finds(emulator, since)) == 2 * 47


def test_unsubscribes_in_loops_are_listed_but_are_drift_only_with_strict(
    cli: Any, in_loops: httpx.Client, synced: None
) -> None:
    for email in ("alan.turing@example.com", "ada.lovelace@example.com"):  # their campaigns' unsubscribe links
        assert api_update(in_loops, email=email, subscribed=False).status_code == 200

    canary = cli("verify", "--state", "state.db", "--all", "--report", "drift.csv")

    assert canary.status == 0, canary.out  # a nightly canary stays green through normal life
    assert "  unsubscribed in Loops          2\n" in canary.out
    assert "  ada.lovelace@example.com  subscribed: state (not set) / Loops false\n" in canary.out
    assert canary.out.endswith("Loops holds what the state says for every contact checked but 2 who unsubscribed "
                               "in Loops, which is no drift (--strict counts it).\n")
    assert [line["problem"] for line in drift_lines(canary.workdir / "drift.csv")] == ["unsubscribed in Loops"] * 2
    strict = cli("verify", "--state", "state.db", "--all", "--report", "drift.csv", "--strict")
    assert strict.status == 1 and strict.out.endswith("2 of 47 contacts differ from the state.\n")


def test_values_as_loops_returns_them_are_no_drift(cli: Any, emulator: LoopsEmulator, in_loops: httpx.Client,
                                                   workdir: Path) -> None:
    for name, type_ in (("seats", "number"), ("vip", "boolean"), ("since", "date"), ("seen", "date")):
        emulator.add_property(name, type_)
    (workdir / "typed.csv").write_text("email,seats,vip,since,seen\n"
                                       "a@example.com,007,yes,2024-01-31,2024-01-31T10:00:00+01:00\n"
                                       "b@example.com,1.50,0,2024-02-29,2024-03-01 08:00\n")
    assert cli("sync", "typed.csv", "--state", "state.db").status == 0
    assert (emulator.contact("a@example.com") or {}).get("seats") == 7  # typed as the property says
    api_update(in_loops, email="a@example.com", since="2024-01-31T00:00:00.000Z", seen=1706691600000)
    api_update(in_loops, email="b@example.com", since=1709164800000, seen="2024-03-01T09:00:00+01:00")

    result = cli("verify", "--state", "state.db", "--report", "drift.csv")

    assert result.status == 0, result.out
    assert "  matching                       2\n" in result.out
    assert drift_lines(result.workdir / "drift.csv") == []
    api_update(in_loops, email="b@example.com", seats=2, since="2024-03-01")
    changed = cli("verify", "--state", "state.db", "--report", "drift.csv")
    assert changed.status == 1
    found = [(line["field"], line["state_value"], line["loops_value"]) for line in drift_lines(changed.workdir /
                                                                                             "drift.csv")]
    assert found == [("seats", "1.5", "2"), ("since", "2024-02-29", "2024-03-01")]


def test_a_sample_is_drawn_again_from_its_seed(cli: Any, emulator: LoopsEmulator, synced: None) -> None:
    def sampled(*args: str) -> tuple[str, list[str]]:
        since = len(emulator.request_log())
        result = cli("verify", "--state", "state.db", "--report", "drift.csv", *args)
        assert result.status == 0, result.out
        return result.out, sorted(query["email"] for query in finds(emulator, since))

    out, first = sampled("--sample", "5", "--seed", "42")
    assert len(first) == len(set(first)) == 5
    assert out.startswith("Verified 5 of 47 contacts") and "--seed 42 draws it again" in out
    assert sampled("--sample", "5", "--seed", "42")[1] == first
    assert sampled("--sample", "5", "--seed", "7")[1] != first
    out, unseeded = sampled("--sample", "5")
    seed = out.split("--seed ", 1)[1].split(" ", 1)[0]
    assert sampled("--sample", "5", "--seed", seed)[1] == unseeded
    out, everyone = sampled()  # the default sample, 100, is more than the state holds: every contact
    assert len(everyone) == 47 and "(all of them)" in out


def test_the_lookups_are_paced_and_a_user_id_state_finds_by_user_id(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, clock: FakeClock
) -> None:
    rows = "".join(f"p{i}@example.com,u{i},P{i}\n" for i in range(30))
    (workdir / "ids.csv").write_text("email,userId,firstName\n" + rows)
    config = run_config("ids.csv", key="userId")
    assert run_sync(config, runtime).summary.created == 30
    clock.sleep(1.0)  # another run, a second later: the sync's requests have left Loops' window
    since, started = len(team.request_log()), clock.now

    with Connection(config.http, runtime) as loops:
        result = run_verify(VerifyOptions(workdir / "state.db", sample=None, report=workdir / "drift.csv"), loops,
                            runtime)

    assert (result.counts.checked, result.counts.matching, result.requests) == (30, 30, 31)
    assert [r["status"] for r in team.request_log()[since:]] == [200] * 31  # not one 429
    assert clock.now - started >= 30 / 10  # 31 requests at Loops' 10 a second
    assert sorted(query["userId"] for query in finds(team, since)) == sorted(f"u{i}" for i in range(30))


def test_bad_input_and_a_refused_key(cli: Any, monkeypatch: pytest.MonkeyPatch, workdir: Path, synced: None) -> None:
    def error(*args: str) -> tuple[int, str]:
        result = cli("verify", *args)
        assert result.err.count("\n") == 1, result.err
        return result.status, result.err

    assert cli("verify", "--state", "state.db", "--sample", "0").status == 2  # argparse says why, on stderr
    assert cli("verify", "--state", "state.db", "--sample", "5", "--all").status == 2

    assert error("--state", "none.db") == (2, "bulksync: error: none.db: no such state file; a sync or 'bulksync "
                                               "state baseline' makes it: nothing to verify\n")
    assert not (workdir / "none.db").exists()
    open_state(workdir / "empty.db").close()  # a state that holds no contact yet
    assert error("--state", "empty.db") == (2, "bulksync: error: empty.db holds no contacts (no sync or 'bulksync "
                                                "state baseline' recorded any yet): nothing to verify\n")
    status, message = error("--state", "state.db", "--report", "state.db")
    assert status == 2 and "an output must never overwrite an input" in message
    monkeypatch.setenv("LOOPS_API_KEY", "not-the-key")
    status, message = error("--state", "state.db")
    assert status == 4 and "Loops refused the API key" in message and "not-the-key" not in message
    monkeypatch.delenv("LOOPS_API_KEY")
    assert error("--state", "state.db") == (2, "bulksync: error: verify looks contacts up in Loops: set "
                                               "LOOPS_API_KEY\n")


def test_the_log_file_is_never_the_report_or_the_state(cli: Any, emulator: LoopsEmulator, synced: None,
                                                       workdir: Path) -> None:
    state = (workdir / "state.db").read_bytes()
    for flags, clash in ((["--report", "drift.csv", "--log-file", "drift.csv"], "and --report drift.csv are the same"),
                         (["--log-file", "state.db"], "is --state (state.db)"),
                         (["--log-file", "state.db-wal"], "is a file bulksync keeps beside the state")):
        since = len(emulator.request_log())

        refused = cli("verify", "--state", "state.db", *flags)

        assert refused.status == 2 and clash in refused.err and refused.err.count("\n") == 1, refused.err
        assert emulator.request_log()[since:] == []
    assert not (workdir / "drift.csv").exists() and not (workdir / "state.db-wal").exists()
    assert (workdir / "state.db").read_bytes() == state


def test_a_signal_stops_verify_with_words_that_fit_it(workdir: Path, emulator: LoopsEmulator, synced: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    answer, err = emulator.transport(), io.StringIO()
    looked_up: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/contacts/find"):
            looked_up.append(request.url.params["email"])
            if len(looked_up) == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # as systemd or a CI runner stops a job
        return answer.handle_request(request)

    status = main(["verify", "--state", "state.db", "--all", "--report", "drift.csv"], out=io.StringIO(), err=err,
                  sleep=lambda _: None, transport=httpx.MockTransport(handler))

    assert status == 143, err.getvalue()
    said = err.getvalue()
    assert "stopping: finishing the lookup in flight; the report keeps what was found (signal again to abort)" in said
    assert "saving state" not in said  # verify saves no state
    assert said.endswith("bulksync: error: stopped after checking 3 of 47 contacts; drift.csv holds what was found\n")
    assert len(looked_up) == 3 and drift_lines(workdir / "drift.csv") == []
