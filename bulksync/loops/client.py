"""The Loops HTTP client: one method per endpoint, one function that classifies every response."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import httpx

from bulksync.config import check_base_url
from bulksync.errors import (
    ApiError,
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetriableError,
)
from bulksync.loops.deadline import RequestGuard, guard_transport
from bulksync.loops.push import UNANSWERED

log = logging.getLogger("bulksync")
USER_AGENT = "bulksync/0.1 (+https://github.com/bulksync)"
MAX_MESSAGE = 300
# What an endpoint's 2xx answer must be: a JSON object, a JSON list of objects, or (a write) an
# object or a 204 No Content; anything else is an answer bulksync cannot use.
Expect = Literal["object", "list", "write"]


class RedirectError(ApiError):
    """A 3xx: bulksync never follows redirects (the key would travel to wherever it points)."""


class UnexpectedAnswer(ApiError):
    """A 2xx whose body is not what the endpoint answers (wrong JSON shape, or ``success: false``)."""


class Unanswered(ApiError):
    """The run stopped and the grace period ended before the answer came: its fate is unknown."""


class ResponseInfo(NamedTuple):
    """What the throttle needs to know of each response."""

    status: int
    limit: int | None
    remaining: int | None
    retry_after: float | None


class LoopsClient:
    """Thin, thread-safe wrapper over an ``httpx.Client``; counts every request it sends.

    ``timeout`` bounds each request as a whole, connect to last byte (``connect_timeout`` the
    connect alone): httpx's own timeouts are per socket operation, which a trickling server defeats.
    Once ``should_stop()`` has been true for ``stop_grace_s``, requests still in flight are cut off.
    Both apply to sockets only: an in-process transport (the emulator's, ``MockTransport``) is not
    bounded.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
        on_response: Callable[[ResponseInfo], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        stop_grace_s: float = 5.0,
    ) -> None:
        check_base_url(base_url)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/v1/",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            transport=transport,
            limits=limits,
            follow_redirects=False,  # explicit: a 3xx is reported, never followed (see RedirectError)
        )
        self._timeout = timeout
        self._guard = RequestGuard(should_stop, stop_grace_s)
        # httpx builds its transport (and those of HTTPS_PROXY and friends) only when given none.
        for mounted in (self._http._transport, *self._http._mounts.values()):
            if mounted is not None:
                guard_transport(mounted, self._guard)
        self._requests = 0
        self._lock = threading.Lock()
        self._on_response = on_response

    @property
    def requests(self) -> int:
        return self._requests

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LoopsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -------------------------------------------------------------------------------
    def api_key(self) -> dict[str, Any]:
        return self._call("GET", "api-key", "object")  # type: ignore[no-any-return]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "contacts/create", "write", json=body)  # type: ignore[no-any-return]

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "contacts/update", "write", json=body)  # type: ignore[no-any-return]

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "contacts/delete", "write", json=body)  # type: ignore[no-any-return]

    def find(self, **query: str) -> list[dict[str, Any]]:
        return self._call("GET", "contacts/find", "list", params=query)  # type: ignore[no-any-return]

    def properties(self, custom_only: bool = False) -> list[dict[str, Any]]:
        params = {"list": "custom"} if custom_only else None
        return self._call("GET", "contacts/properties", "list", params=params)  # type: ignore[no-any-return]

    def create_property(self, name: str, type_: str) -> dict[str, Any]:
        body = {"name": name, "type": type_}
        return self._call("POST", "contacts/properties", "write", json=body)  # type: ignore[no-any-return]

    def lists(self) -> list[dict[str, Any]]:
        return self._call("GET", "lists", "list")  # type: ignore[no-any-return]

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, expect: Expect, **kwargs: Any) -> Any:
        with self._lock:
            self._requests += 1
        started = time.monotonic()
        try:
            with self._guard.deadline(self._timeout):
                response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetriableError(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            if self._guard.cut_off():
                raise Unanswered(UNANSWERED) from None
            raise RetriableError(f"connection failed ({type(exc).__name__}: {exc})") from None
        log.info("%s /v1/%s -> %d in %.0f ms", method, path, response.status_code,
                 1000 * (time.monotonic() - started), extra={"http_status": response.status_code})
        if self._on_response is not None:
            self._on_response(ResponseInfo(response.status_code, *rate_headers(response), retry_after(response)))
        raise_for_response(response)
        return answer(response, f"{method} /v1/{path}", expect)


def answer(response: httpx.Response, what: str, expect: Expect) -> Any:
    """A 2xx's body, checked against what the endpoint answers; raises when it cannot be used."""
    status = response.status_code
    if status == 204 and expect == "write":
        return {}  # No Content: done, with nothing to say (a write's answer carries nothing bulksync needs)
    try:
        body = response.json()
    except ValueError:
        if status == 204 or not response.content:
            raise UnexpectedAnswer(f"HTTP {status} with no body to {what}, which answers JSON", status) from None
        # A maintenance page or a proxy's error served as 200: worth another try, like a 502.
        raise RetriableError(f"HTTP {status} with a body that is not JSON", status) from None
    shape = "list" if expect == "list" else "object"
    if not _has_shape(body, shape):
        raise UnexpectedAnswer(f"HTTP {status}: the answer to {what} is {_kind(body)}, not the JSON {shape} "
                               "Loops documents", status)
    if isinstance(body, dict) and body.get("success") is False:
        # Loops says it did not do it, whatever the status: never recorded as confirmed.
        message = body.get("message") or body.get("error") or "no message"
        raise UnexpectedAnswer(f"HTTP {status} with success: false ({str(message)[:MAX_MESSAGE]})", status)
    return body


def _has_shape(body: Any, shape: str) -> bool:
    if shape == "list":
        return isinstance(body, list) and all(isinstance(item, dict) for item in body)
    return isinstance(body, dict)


def _kind(body: Any) -> str:
    if isinstance(body, list):
        return "a JSON list" if all(isinstance(item, dict) for item in body) else "a JSON list of non-objects"
    return {dict: "a JSON object", str: "a JSON string", bool: "a JSON boolean", type(None): "JSON null"}.get(
        type(body), "a JSON number")


def rate_headers(response: httpx.Response) -> tuple[int | None, int | None]:
    return _int_header(response, "x-ratelimit-limit"), _int_header(response, "x-ratelimit-remaining")


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header in its seconds form (Loops documents none)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def error_message(response: httpx.Response) -> str:
    """Loops' message when the body is JSON, else a short excerpt: a 502 may be an HTML page."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if message:
            return f"HTTP {response.status_code}: {str(message)[:MAX_MESSAGE]}"
    kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
    return f"HTTP {response.status_code} ({kind} body)"


def raise_for_response(response: httpx.Response) -> None:
    """The one place that decides what a status means: fine, retry, skip the row, or stop the run."""
    status = response.status_code
    if status < 300:
        return
    message = error_message(response)
    if status in (401, 403):
        raise AuthError(f"Loops refused the API key ({message}); check LOOPS_API_KEY")
    if status == 429:
        raise RateLimited(message, status, retry_after(response))
    if status >= 500 or status == 408:
        raise RetriableError(message, status, retry_after(response))
    if status == 409:
        raise ConflictError(message, status)
    if status == 404:
        raise NotFoundError(message, status)
    if status >= 400:
        raise RejectedError(message, status)
    location = response.headers.get("location", "")[:200] or "nowhere"
    raise RedirectError(f"HTTP {status}: Loops answered with a redirect (to {location}); bulksync does not follow "
                        "redirects: check --base-url / LOOPS_BASE_URL", status)
