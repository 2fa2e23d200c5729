"""The "Contact added" warning: a run that would create more than 1,000 contacts through the API says
so once on stderr, before sending, and points to ``bulksync export``; a nightly handful says nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulksync.cli import main
from bulksync.emulator import LoopsEmulator
from bulksync.plan.first_load import FIRST_LOAD_CREATES, first_load_warning
from tests.helpers import writes

WARNING = "would create"


def users(workdir: Path, count: int, name: str = "users.csv") -> str:
    rows = "".join(f"person{i}@example.com,Person {i}\n" for i in range(count))
    (workdir / name).write_text("email,firstName\n" + rows)
    return name


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if WARNING in line]


def test_the_threshold() -> None:
    assert FIRST_LOAD_CREATES == 1_000
    assert first_load_warning(0) is None and first_load_warning(1_000) is None
    message = first_load_warning(1_001)
    assert message is not None
    assert "1,001 contacts through the API" in message and '"Contact added"' in message
    assert "bulksync export SOURCE --to DIR" in message


@pytest.mark.parametrize(("count", "warned"), [(1_000, False), (1_001, True)])
def test_a_dry_run_warns_above_the_threshold_only(cli: Any, workdir: Path, count: int, warned: bool) -> None:
    result = cli("sync", users(workdir, count), "--dry-run")

    assert result.status == 0, result.err
    assert len(warnings(result.err)) == (1 if warned else 0)
    if warned:
        assert f"this run would create {count:,} contacts" in result.err and "WARNING" in result.err


def test_a_sync_warns_once_before_it_sends(workdir: Path, emulator: LoopsEmulator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", "test-key")
    monkeypatch.setenv("LOOPS_BASE_URL", "http://127.0.0.1:9/api")
    answer = emulator.transport()
    err = io.StringIO()
    seen_at_first_write: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method != "GET" and not seen_at_first_write:
            seen_at_first_write.append(err.getvalue())
        return answer.handle_request(request)

    status = main(["sync", users(workdir, 1_001), "--state", "s.db", "--report", "r.csv", "--rate-limit", "1000"],
                  out=io.StringIO(), err=err, sleep=lambda _: None, transport=httpx.MockTransport(handler))

    assert status == 0, err.getvalue()
    assert len(emulator.contacts()) == 1_001
    assert len(warnings(seen_at_first_write[0])) == 1  # said before the first write
    assert len(warnings(err.getvalue())) == 1  # and only once


def test_apply_warns_and_a_nightly_handful_does_not(cli: Any, workdir: Path, emulator: LoopsEmulator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bulksync.plan.first_load.FIRST_LOAD_CREATES", 20)
    planned = cli("sync", users(workdir, 21), "--dry-run", "--plan", "first.plan", "--state", "s.db", report=False)
    assert len(warnings(planned.err)) == 1

    applied = cli("apply", "first.plan", "--report", "r.csv", "--rate-limit", "1000", sleep=lambda _: None)

    assert applied.status == 0, applied.err
    assert len(warnings(applied.err)) == 1 and len(emulator.contacts()) == 21
    nightly = cli("sync", users(workdir, 41), "--state", "s.db", sleep=lambda _: None)  # 20 new: at the threshold
    assert nightly.status == 0 and nightly.summary()["created"] == 20
    assert warnings(nightly.err) == []


def test_a_run_refused_for_missing_properties_gives_no_warning(cli: Any, workdir: Path, emulator: LoopsEmulator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bulksync.plan.first_load.FIRST_LOAD_CREATES", 2)
    (workdir / "plans.csv").write_text("email,plan\n" + "".join(f"p{i}@example.com,pro\n" for i in range(3)))

    refused = cli("sync", "plans.csv", "--state", "s.db", create_properties=False)  # Loops has no property plan

    assert refused.status == 2 and "Loops has no custom property plan (string) yet" in refused.err
    assert warnings(refused.err) == []  # the run would never have sent: nothing to warn of
    assert writes(emulator) == []
    (workdir / "a-file").write_text("")
    unplanned = cli("sync", "plans.csv", "--state", "s.db", "--dry-run", "--plan", "a-file/p.plan", report=False)
    assert unplanned.status == 2 and "cannot write a-file/p.plan" in unplanned.err
    assert warnings(unplanned.err) == []  # a dry run warns once its plan is made
    planned = cli("sync", "plans.csv", "--state", "s.db", "--dry-run", "--plan", "p.plan", report=False)
    assert planned.status == 0 and len(warnings(planned.err)) == 1
    applied = cli("apply", "p.plan", "--report", "r.csv")
    assert applied.status == 2 and warnings(applied.err) == [] and writes(emulator) == []


def test_the_warning_comes_after_the_checks_and_before_a_property_is_created(
    workdir: Path, emulator: LoopsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bulksync.plan.first_load.FIRST_LOAD_CREATES", 2)
    monkeypatch.setenv("LOOPS_API_KEY", "test-key")
    monkeypatch.setenv("LOOPS_BASE_URL", "http://127.0.0.1:9/api")
    (workdir / "plans.csv").write_text("email,plan\n" + "".join(f"p{i}@example.com,pro\n" for i in range(3)))
    answer, err = emulator.transport(), io.StringIO()
    said_at_write: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            said_at_write.append((request.url.path, err.getvalue()))
        return answer.handle_request(request)

    status = main(["sync", "plans.csv", "--state", "s.db", "--report", "r.csv", "--create-properties"],
                  out=io.StringIO(), err=err, sleep=lambda _: None, transport=httpx.MockTransport(handler))

    assert status == 0, err.getvalue()
    first_path, said = said_at_write[0]
    assert first_path == "/api/v1/contacts/properties" and len(warnings(said)) == 1  # before the first write
    assert len(warnings(err.getvalue())) == 1
