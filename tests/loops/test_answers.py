"""Answers bulksync cannot use: a wrong JSON shape, ``success: false``, a 3xx, and a 204 (which it can).

Each gets its own one-line message; a row's request is that row's failure (never recorded as
confirmed), a request before the push stops the run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulksync.cli import main
from bulksync.emulator import LoopsEmulator
from bulksync.errors import RetriableError
from bulksync.loops.client import LoopsClient, RedirectError, UnexpectedAnswer
from bulksync.loops.push import Pusher
from bulksync.loops.throttle import RateLimiter
from bulksync.plan.actions import Action
from tests.helpers import API_KEY, IN_PROCESS_URL, CliResult, state_fields

Override = Callable[[httpx.Request], httpx.Response | None]
SOURCE = "email,firstName,plan\nada@example.com,Ada,pro\ngrace@example.com,Grace,team\n"
EMAILS = ["ada@example.com", "grace@example.com"]


def answering(path: str, response: httpx.Response, method: str | None = None) -> Override:
    """Answer requests to ``/v1/{path}`` with ``response``; every other request reaches the emulator."""
    return lambda request: (
        response if request.url.path.endswith(f"/v1/{path}") and method in (None, request.method) else None
    )


def run(emulator: LoopsEmulator, workdir: Path, override: Override, monkeypatch: pytest.MonkeyPatch) -> CliResult:
    """``bulksync sync people.csv`` in-process, against the emulator except where ``override`` answers."""
    (workdir / "people.csv").write_text(SOURCE)
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", IN_PROCESS_URL)
    inner = emulator.transport()

    def handler(request: httpx.Request) -> httpx.Response:
        return override(request) or inner.handle_request(request)

    out, err = io.StringIO(), io.StringIO()
    argv = ["sync", "people.csv", "--state", "state.db", "--create-properties", "--max-retries", "1",
            "--report", "report.csv", "--summary-json", "summary.json"]
    status = main(argv, out=out, err=err, sleep=lambda s: None, transport=httpx.MockTransport(handler))
    return CliResult(status, out.getvalue(), err.getvalue(), workdir)


def client(answer: httpx.Response) -> LoopsClient:
    return LoopsClient("k", "https://app.loops.so/api", transport=httpx.MockTransport(lambda request: answer))


# -- the client: what each endpoint's answer must be --------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "body", "message"),
    [
        (lambda c: c.properties(), {"a": 1}, "the answer to GET /v1/contacts/properties is a JSON object, not the "
                                              "JSON list Loops documents"),
        (lambda c: c.lists(), [1, 2], "the answer to GET /v1/lists is a JSON list of non-objects, not the JSON "
                                      "list Loops documents"),
        (lambda c: c.api_key(), [], "the answer to GET /v1/api-key is a JSON list, not the JSON object Loops "
                                    "documents"),
        (lambda c: c.update({"email": "a@x.io"}), "ok", "the answer to PUT /v1/contacts/update is a JSON string, "
                                                        "not the JSON object Loops documents"),
    ],
    ids=["properties-object", "lists-of-numbers", "api-key-list", "update-string"],
)
def test_an_answer_of_the_wrong_shape_is_an_unexpected_answer(call: Callable[[LoopsClient], Any], body: Any,
                                                               message: str) -> None:
    with client(httpx.Response(200, json=body)) as loops, pytest.raises(UnexpectedAnswer) as info:
        call(loops)

    assert str(info.value) == f"HTTP 200: {message}"
    assert not isinstance(info.value, RetriableError)  # Loops answered: asking again gets the same


def test_success_false_in_a_200_is_not_a_success() -> None:
    answer = httpx.Response(200, json={"success": False, "message": "Contact not updated."})
    with client(answer) as loops, pytest.raises(UnexpectedAnswer) as info:
        loops.update({"email": "a@x.io"})

    assert str(info.value) == "HTTP 200 with success: false (Contact not updated.)"


@pytest.mark.parametrize("call", [lambda c: c.delete({"email": "a@x.io"}), lambda c: c.update({"email": "a@x.io"}),
                                  lambda c: c.create({"email": "a@x.io"}), lambda c: c.create_property("p", "string")],
                         ids=["delete", "update", "create", "create-property"])
def test_a_204_confirms_a_write(call: Callable[[LoopsClient], Any]) -> None:
    with client(httpx.Response(204)) as loops:
        assert call(loops) == {}


def test_a_204_is_no_answer_to_a_read() -> None:
    with client(httpx.Response(204)) as loops, pytest.raises(UnexpectedAnswer) as info:
        loops.properties()

    assert str(info.value) == "HTTP 204 with no body to GET /v1/contacts/properties, which answers JSON"


def test_an_empty_200_confirms_nothing() -> None:
    with client(httpx.Response(200)) as loops, pytest.raises(UnexpectedAnswer, match=r"^HTTP 200 with no body to PUT"):
        loops.update({"email": "a@x.io"})


def test_a_redirect_is_never_followed() -> None:
    answer = httpx.Response(301, headers={"location": "https://elsewhere.example/api/v1/contacts/update"})
    with client(answer) as loops, pytest.raises(RedirectError) as info:
        loops.update({"email": "a@x.io"})

    assert "bulksync does not follow redirects" in str(info.value)


# -- a row's request: that row fails, not retried, not recorded ------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, json={"success": False, "message": "nope"}), httpx.Response(200, json=[]),
     httpx.Response(302, headers={"location": "https://elsewhere"})],
    ids=["success-false", "list", "redirect"],
)
def test_an_unusable_answer_fails_the_row_after_one_request(answer: httpx.Response) -> None:
    loops = client(answer)
    limiter = RateLimiter(1000.0, sleep=lambda s: None)
    pusher = Pusher(loops, limiter, {"email": "string"}, max_retries=3, sleep=lambda s: None)
    action = Action("create", "a@x.io", 1, 99, {}, {"email": "a@x.io"}, ("email",))

    outcome = pusher.execute(action)

    assert (outcome.ok, outcome.sent, outcome.attempts, outcome.http_status) == (False, None, 1, answer.status_code)
    assert outcome.error is not None and "internal error" not in outcome.error
    assert loops.requests == 1
    loops.close()


# -- through the CLI ---------------------------------------------------------------------------------------------


def test_cli_success_false_fails_the_rows_and_records_nothing(
    emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(emulator, workdir, answering("contacts/update", httpx.Response(200, json={"success": False})),
                 monkeypatch)

    assert result.status == 1, result.err
    assert [(r["key"], r["status"], r["error"]) for r in result.report()] == [
        (email, "failed", "HTTP 200 with success: false (no message)") for email in EMAILS
    ]
    assert state_fields(workdir) == {}


def test_cli_a_204_to_the_writes_records_them(
    emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(emulator, workdir, answering("contacts/update", httpx.Response(204)), monkeypatch)

    assert result.status == 0, result.err
    assert sorted(state_fields(workdir)) == EMAILS
    # The key check, properties and lists, the property created, two writes: none retried.
    assert result.summary()["requests"] == 6


def test_cli_a_redirect_on_a_write_fails_that_row_without_an_internal_error(
    emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redirect = httpx.Response(307, headers={"location": "https://elsewhere.example/"})
    result = run(emulator, workdir, answering("contacts/update", redirect), monkeypatch)

    assert result.status == 1
    assert "internal error" not in result.err
    errors = {r["error"] for r in result.report()}
    assert errors == {"HTTP 307: Loops answered with a redirect (to https://elsewhere.example/); bulksync does not "
                      "follow redirects: check --base-url / LOOPS_BASE_URL"}
    assert state_fields(workdir) == {}


def test_cli_a_redirect_on_the_key_check_is_a_configuration_error(
    emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redirect = httpx.Response(301, headers={"location": "https://app.loops.so/api/v1/api-key"})
    result = run(emulator, workdir, answering("api-key", redirect), monkeypatch)

    assert result.status == 2
    assert result.err == (
        "bulksync: error: could not check the API key: HTTP 301: Loops answered with a redirect (to "
        "https://app.loops.so/api/v1/api-key); bulksync does not follow redirects: check --base-url / "
        "LOOPS_BASE_URL; nothing was sent\n"
    )
    assert emulator.contacts() == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("contacts/properties", {"properties": []}, "could not read the account's properties from Loops: HTTP 200: "
         "the answer to GET /v1/contacts/properties is a JSON object, not the JSON list Loops documents"),
        ("api-key", ["Hostile team"], "could not check the API key: HTTP 200: the answer to GET /v1/api-key is a "
         "JSON list of non-objects, not the JSON object Loops documents"),
    ],
    ids=["properties-object", "api-key-list"],
)
def test_cli_a_wrong_shape_before_the_push_stops_the_run_with_one_line(
    emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch, path: str, body: Any, message: str
) -> None:
    result = run(emulator, workdir, answering(path, httpx.Response(200, json=body), method="GET"), monkeypatch)

    assert (result.status, result.err) == (1, f"bulksync: error: {message}\n")
    assert emulator.contacts() == []

