"""The Loops HTTP client: one method per endpoint, one function that classifies every response."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

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

log = logging.getLogger("bulksync")
USER_AGENT = "bulksync/0.1 (+https://github.com/bulksync)"
MAX_MESSAGE = 300


class ResponseInfo(NamedTuple):
    """What the throttle needs to know of each response."""

    status: int
    limit: int | None
    remaining: int | None
    retry_after: float | None


class LoopsClient:
    """Thin, thread-safe wrapper over an ``httpx.Client``; counts every request it sends."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
        on_response: Callable[[ResponseInfo], None] | None = None,
    ) -> None:
        check_base_url(base_url)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/v1/",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            timeout=timeout or httpx.Timeout(30.0, connect=5.0),
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
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
        return self._call("GET", "api-key")  # type: ignore[no-any-return]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "contacts/create", json=body)  # type: ignore[no-any-return]

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "contacts/update", json=body)  # type: ignore[no-any-return]

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "contacts/delete", json=body)  # type: ignore[no-any-return]

    def find(self, **query: str) -> list[dict[str, Any]]:
        return self._call("GET", "contacts/find", params=query)  # type: ignore[no-any-return]

    def properties(self, custom_only: bool = False) -> list[dict[str, Any]]:
        params = {"list": "custom"} if custom_only else None
        return self._call("GET", "contacts/properties", params=params)  # type: ignore[no-any-return]

    def create_property(self, name: str, type_: str) -> dict[str, Any]:
        return self._call("POST", "contacts/properties", json={"name": name, "type": type_})  # type: ignore[no-any-return]

    def lists(self) -> list[dict[str, Any]]:
        return self._call("GET", "lists")  # type: ignore[no-any-return]

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._lock:
            self._requests += 1
        started = time.monotonic()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetriableError(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise RetriableError(f"connection failed ({type(exc).__name__}: {exc})") from None
        log.info("%s /v1/%s -> %d in %.0f ms", method, path, response.status_code,
                 1000 * (time.monotonic() - started), extra={"http_status": response.status_code})
        if self._on_response is not None:
            self._on_response(ResponseInfo(response.status_code, *rate_headers(response), retry_after(response)))
        raise_for_response(response)
        try:
            return response.json()
        except ValueError:
            status = response.status_code
            raise RetriableError(f"HTTP {status} with a body that is not JSON", status) from None


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
    raise ApiError(message, status)
