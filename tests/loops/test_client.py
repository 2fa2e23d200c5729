"""The Loops client: status classification, error messages, base URL check, and requests over MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bulksync.config import check_base_url
from bulksync.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetriableError,
)
from bulksync.loops.client import (
    USER_AGENT,
    LoopsClient,
    RedirectError,
    ResponseInfo,
    error_message,
    raise_for_response,
    retry_after,
)

API_KEY = "sk_live_SECRET_4f9a"
BASE_URL = "https://app.loops.so/api"
HTML_502 = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body>\r\n</html>\r\n"


def response(
    status: int, body: Any = None, headers: dict[str, str] | None = None, content: bytes | None = None
) -> httpx.Response:
    request = httpx.Request("POST", f"{BASE_URL}/v1/contacts/create")
    if content is not None:
        return httpx.Response(status, content=content, headers=headers, request=request)
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def raised(resp: httpx.Response) -> ApiError | AuthError:
    with pytest.raises((ApiError, AuthError)) as info:
        raise_for_response(resp)
    error = info.value
    assert isinstance(error, (ApiError, AuthError))  # pytest.raises types a tuple as their common base
    return error


# -- raise_for_response --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_success_statuses_raise_nothing(status: int) -> None:
    raise_for_response(response(status, {"success": True}))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_an_auth_error(status: int) -> None:
    error = raised(response(status, {"error": "Invalid API key"}))

    assert type(error) is AuthError
    assert str(error) == f"Loops refused the API key (HTTP {status}: Invalid API key); check LOOPS_API_KEY"


def test_429_is_rate_limited_with_retry_after_from_the_header() -> None:
    error = raised(response(429, {"success": False, "message": "Rate limit exceeded."}, {"Retry-After": "7"}))

    assert type(error) is RateLimited
    assert isinstance(error, RetriableError)
    assert (error.status, error.retry_after, str(error)) == (429, 7.0, "HTTP 429: Rate limit exceeded.")


def test_429_without_retry_after_has_none() -> None:
    error = raised(response(429, {"success": False, "message": "Rate limit exceeded."}))

    assert type(error) is RateLimited
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408])
def test_server_errors_and_request_timeout_are_retriable(status: int) -> None:
    error = raised(response(status, {"success": False, "message": "Internal server error"}))

    assert type(error) is RetriableError
    assert error.status == status
    assert error.retry_after is None


def test_503_carries_its_retry_after() -> None:
    error = raised(response(503, content=b"", headers={"retry-after": "12.5"}))

    assert type(error) is RetriableError
    assert error.retry_after == 12.5


@pytest.mark.parametrize(
    ("status", "kind"),
    [(409, ConflictError), (404, NotFoundError), (400, RejectedError), (405, RejectedError), (422, RejectedError)],
)
def test_other_client_errors_reject_the_row(status: int, kind: type[ApiError]) -> None:
    error = raised(response(status, {"success": False, "message": "nope"}))

    assert type(error) is kind
    assert isinstance(error, RejectedError)
    assert not isinstance(error, RetriableError)
    assert (error.status, str(error)) == (status, f"HTTP {status}: nope")


def test_a_redirect_is_a_redirect_error_that_says_it_is_not_followed() -> None:
    error = raised(response(302, content=b"", headers={"location": "https://elsewhere"}))

    assert type(error) is RedirectError
    assert not isinstance(error, RetriableError | RejectedError)
    assert error.status == 302
    assert str(error) == (
        "HTTP 302: Loops answered with a redirect (to https://elsewhere); bulksync does not follow redirects: "
        "check --base-url / LOOPS_BASE_URL"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)],
)
def test_retry_after_reads_the_seconds_form_only(value: str, expected: float | None) -> None:
    assert retry_after(response(429, content=b"", headers={"Retry-After": value})) == expected


# -- error_message -----------------------------------------------------------------------------------


def test_error_message_uses_the_json_message() -> None:
    resp = response(400, {"success": False, "message": "Some body key or value is longer than allowable"})

    assert error_message(resp) == "HTTP 400: Some body key or value is longer than allowable"


def test_error_message_reads_the_old_error_key() -> None:
    assert error_message(response(401, {"error": "Invalid API key"})) == "HTTP 401: Invalid API key"


def test_error_message_for_an_html_502_names_the_content_type_not_the_page() -> None:
    resp = response(502, content=HTML_502, headers={"content-type": "text/html; charset=utf-8"})

    assert error_message(resp) == "HTTP 502 (text/html body)"


def test_error_message_for_an_empty_body() -> None:
    assert error_message(response(503, content=b"")) == "HTTP 503 (no content type body)"


def test_error_message_for_json_without_a_message() -> None:
    assert error_message(response(500, {"success": False})) == "HTTP 500 (application/json body)"
    assert error_message(response(500, ["not", "an", "object"])) == "HTTP 500 (application/json body)"


def test_error_message_is_cut_to_300_characters() -> None:
    message = error_message(response(400, {"message": "x" * 1000}))

    assert message == "HTTP 400: " + "x" * 300


def test_html_502_is_retriable() -> None:
    error = raised(response(502, content=HTML_502, headers={"content-type": "text/html"}))

    assert type(error) is RetriableError
    assert str(error) == "HTTP 502 (text/html body)"


# -- check_base_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://app.loops.so/api",
        "https://example.com:8443/",
        "http://127.0.0.1:8765",
        "http://127.0.0.2/api",
        "http://localhost:8080/api",
        "http://LOCALHOST",
        "http://[::1]:9000/",
    ],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://app.loops.so/api",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://10.0.0.1",
        "http://[::2]/",
        "ftp://127.0.0.1",
        "app.loops.so/api",
    ],
)
def test_key_never_travels_over_plain_http_to_other_hosts(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_base_url(url)

    assert repr(url) in str(info.value)
    assert "https" in str(info.value)


def test_client_refuses_a_plain_http_base_url_before_any_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with pytest.raises(ConfigError):
        LoopsClient(API_KEY, "http://example.com", transport=httpx.MockTransport(handler))
    assert seen == []


# -- LoopsClient over MockTransport ----------------------------------------------------------------


class Recorder:
    """A MockTransport handler answering from a function, remembering every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def client_for(
    answer: Callable[[httpx.Request], httpx.Response],
    on_response: Callable[[ResponseInfo], None] | None = None,
    base_url: str = BASE_URL,
) -> tuple[LoopsClient, Recorder]:
    recorder = Recorder(answer)
    return LoopsClient(API_KEY, base_url, transport=httpx.MockTransport(recorder), on_response=on_response), recorder


def ok(payload: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json={"success": True, "id": "c1"} if payload is None else payload)


def test_create_sends_bearer_key_user_agent_and_json_body() -> None:
    client, recorder = client_for(ok())

    with client:
        assert client.create({"email": "ada@example.com", "subscribed": False}) == {"success": True, "id": "c1"}

    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://app.loops.so/api/v1/contacts/create"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["user-agent"] == USER_AGENT
    assert json.loads(request.content) == {"email": "ada@example.com", "subscribed": False}


@pytest.mark.parametrize(
    ("call", "method", "url"),
    [
        (lambda c: c.update({"email": "a@x.io"}), "PUT", "https://app.loops.so/api/v1/contacts/update"),
        (lambda c: c.delete({"email": "a@x.io"}), "POST", "https://app.loops.so/api/v1/contacts/delete"),
        (lambda c: c.api_key(), "GET", "https://app.loops.so/api/v1/api-key"),
        (lambda c: c.lists(), "GET", "https://app.loops.so/api/v1/lists"),
        (lambda c: c.properties(), "GET", "https://app.loops.so/api/v1/contacts/properties"),
        (lambda c: c.properties(custom_only=True), "GET", "https://app.loops.so/api/v1/contacts/properties?list=custom"),
        (
            lambda c: c.create_property("plan", "string"),
            "POST",
            "https://app.loops.so/api/v1/contacts/properties",
        ),
    ],
    ids=["update", "delete", "api-key", "lists", "properties", "custom-properties", "create-property"],
)
def test_each_endpoint_hits_its_path(call: Callable[[LoopsClient], Any], method: str, url: str) -> None:
    listing = method == "GET" and not url.endswith("api-key")  # the endpoints that answer a list
    client, recorder = client_for(ok([]) if listing else ok())

    call(client)

    assert [(r.method, str(r.url)) for r in recorder.requests] == [(method, url)]


def test_base_url_with_a_trailing_slash_gives_the_same_paths() -> None:
    client, recorder = client_for(ok(), base_url="https://app.loops.so/api/")

    client.update({"email": "a@x.io"})

    assert str(recorder.requests[0].url) == "https://app.loops.so/api/v1/contacts/update"


def test_find_percent_encodes_its_parameter() -> None:
    client, recorder = client_for(ok([]))

    assert client.find(email="ada+news@example.com") == []

    assert recorder.requests[0].url.raw_path == b"/api/v1/contacts/find?email=ada%2Bnews%40example.com"


def test_request_counter_counts_every_request_sent_even_failed_ones() -> None:
    statuses = iter([200, 500, 400, 200])
    client, _ = client_for(lambda request: httpx.Response(next(statuses), json={"success": True}))

    client.update({"email": "a@x.io"})
    with pytest.raises(RetriableError):
        client.update({"email": "a@x.io"})
    with pytest.raises(RejectedError):
        client.update({"email": "a@x.io"})
    client.update({"email": "a@x.io"})

    assert client.requests == 4


def test_error_responses_raise_their_classified_error() -> None:
    client, _ = client_for(lambda request: httpx.Response(409, json={"success": False, "message": "exists"}))

    with pytest.raises(ConflictError, match=r"^HTTP 409: exists$"):
        client.create({"email": "a@x.io"})


def raises_transport(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc

    return answer


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (httpx.ReadTimeout("read timed out"), "timed out (ReadTimeout)"),
        (httpx.ConnectTimeout("connect timed out"), "timed out (ConnectTimeout)"),
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            "connection failed (ConnectError: [Errno 111] Connection refused)",
        ),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "connection failed (RemoteProtocolError: Server disconnected without sending a response.)",
        ),
    ],
    ids=["read-timeout", "connect-timeout", "refused", "dropped"],
)
def test_transport_errors_and_timeouts_become_retriable(exc: Exception, message: str) -> None:
    infos: list[ResponseInfo] = []
    client, _ = client_for(raises_transport(exc), on_response=infos.append)

    with pytest.raises(RetriableError) as info:
        client.create({"email": "a@x.io"})

    assert type(info.value) is RetriableError
    assert str(info.value) == message
    assert (info.value.status, info.value.retry_after) == (None, None)
    assert client.requests == 1
    assert infos == []  # no response, nothing for the throttle


def test_a_200_whose_body_is_not_json_is_retriable() -> None:
    client, _ = client_for(lambda request: httpx.Response(200, content=b"<html>maintenance</html>"))

    with pytest.raises(RetriableError, match=r"^HTTP 200 with a body that is not JSON$") as info:
        client.api_key()

    assert info.value.status == 200


def test_on_response_gets_status_rate_headers_and_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(200, json={}, headers={"x-ratelimit-limit": "10", "x-ratelimit-remaining": "9"}),
            httpx.Response(
                429,
                json={"success": False, "message": "Rate limit exceeded."},
                headers={"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "retry-after": "2"},
            ),
            httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"}),
            httpx.Response(200, json={}, headers={"x-ratelimit-limit": "ten", "x-ratelimit-remaining": ""}),
        ]
    )
    infos: list[ResponseInfo] = []
    client, _ = client_for(lambda request: next(answers), on_response=infos.append)

    client.update({"email": "a@x.io"})
    with pytest.raises(RateLimited):
        client.update({"email": "a@x.io"})
    with pytest.raises(RetriableError):
        client.update({"email": "a@x.io"})
    client.update({"email": "a@x.io"})

    assert infos == [
        ResponseInfo(200, 10, 9, None),
        ResponseInfo(429, 10, 0, 2.0),
        ResponseInfo(502, None, None, None),
        ResponseInfo(200, None, None, None),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: httpx.Response(401, json={"error": "Invalid API key"}),
        lambda request: httpx.Response(403, content=b""),
        lambda request: httpx.Response(500, json={"success": False, "message": "Internal server error"}),
        lambda request: httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"}),
        lambda request: httpx.Response(200, content=b"not json"),
        raises_transport(httpx.ConnectError("Connection refused")),
        raises_transport(httpx.ReadTimeout("timed out")),
    ],
    ids=["401", "403", "500", "502-html", "200-not-json", "connect-error", "timeout"],
)
def test_the_api_key_never_appears_in_an_error(answer: Callable[[httpx.Request], httpx.Response]) -> None:
    client, _ = client_for(answer)

    with pytest.raises((ApiError, AuthError)) as info:
        client.create({"email": "a@x.io"})

    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value)
    assert info.value.__cause__ is None
