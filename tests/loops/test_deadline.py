"""``--timeout`` bounds a whole request, and a stopped run cuts off what is still in flight: real sockets."""

from __future__ import annotations

import threading

import httpx
import pytest

from bulksync.errors import RetriableError
from bulksync.loops.client import LoopsClient, Unanswered
from bulksync.loops.push import UNANSWERED
from tests.helpers import wait_until
from tests.loops.servers import Answer, Hang, MisbehavingServer, Trickle

WRITE = "POST /v1/contacts/create"


def test_a_response_trickled_byte_by_byte_times_out_as_a_whole(hostile: MisbehavingServer) -> None:
    # ~100 bytes at 20 a second: every read gets a byte well within 1 s, the whole takes ~5 s.
    hostile.routes[WRITE] = Trickle(Answer(body={"success": True, "id": "c1"}), interval_s=0.05)

    with LoopsClient("k", hostile.url, timeout=1.0) as client, pytest.raises(RetriableError) as info:
        client.create({"email": "ada@example.com"})

    assert str(info.value) == "timed out (ReadTimeout)"


def test_headers_that_never_end_time_out(hostile: MisbehavingServer) -> None:
    hostile.routes["GET /v1/api-key"] = Trickle(forever=True, interval_s=0.002)

    with LoopsClient("k", hostile.url, timeout=0.5) as client, pytest.raises(RetriableError, match=r"^timed out"):
        client.api_key()


def test_prompt_answers_on_one_connection_are_unaffected(hostile: MisbehavingServer) -> None:
    with LoopsClient("k", hostile.url, timeout=1.0) as client:
        assert client.api_key()["teamName"] == "Hostile team"
        assert client.update({"email": "ada@example.com"}) == {"success": True}

    assert hostile.seen == ["GET /v1/api-key", "PUT /v1/contacts/update"]


def test_a_trickling_proxy_from_the_environment_is_bounded_too(
    hostile: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", hostile.url.removesuffix("/api"))
    # A proxy is sent the full URL as the request target: "GET http://127.0.0.1:9/api/v1/api-key".
    hostile.routes["GET http://127.0.0.1:9/api/v1/api-key"] = Trickle(forever=True, interval_s=0.002)

    with LoopsClient("k", "http://127.0.0.1:9/api", timeout=0.5) as client, pytest.raises(RetriableError) as info:
        client.api_key()
    assert str(info.value) == "timed out (ReadTimeout)"
    assert hostile.seen == ["GET http://127.0.0.1:9/api/v1/api-key"]


def test_a_stopped_run_cuts_off_a_request_in_flight_after_the_grace(hostile: MisbehavingServer) -> None:
    hostile.routes[WRITE] = Hang()
    stop = threading.Event()
    client = LoopsClient("k", hostile.url, timeout=60.0, should_stop=stop.is_set, stop_grace_s=0.3)
    errors: list[Exception] = []

    def send() -> None:
        try:
            client.create({"email": "ada@example.com"})
        except Exception as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: hostile.saw(WRITE), "the request at the server")
    stop.set()
    sender.join(timeout=20)  # the bound: well under the 60 s timeout

    assert not sender.is_alive()
    (error,) = errors
    assert type(error) is Unanswered  # not retried: it may have been applied
    assert str(error) == UNANSWERED
    client.close()


def test_after_the_grace_nothing_more_is_sent(hostile: MisbehavingServer) -> None:
    stopped = LoopsClient("k", hostile.url, timeout=5.0, should_stop=lambda: True, stop_grace_s=0.0)
    with stopped as client, pytest.raises(Unanswered):
        client.api_key()
    assert hostile.seen == []


def test_an_in_process_transport_is_left_alone() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"success": True}))
    with LoopsClient("k", "https://app.loops.so/api", transport=transport, should_stop=lambda: True,
                     stop_grace_s=0.0) as client:
        assert client.update({"email": "a@x.io"}) == {"success": True}
