"""The emulator's HTTP vocabulary: parsed requests, responses, and Loops' JSON error bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}


@dataclass
class EmulatorResponse:
    """What a transport must do: answer (after delay_s), or drop the connection.

    `hang`: the answer never comes; the connection stays silent for delay_s (or until the client's
    timeout fires, or the outage is ended), then closes.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    drop: bool = False
    delay_s: float = 0.0
    hang: bool = False

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class ApiError(Exception):
    """A 4xx answer with Loops' `{"success": false, "message": ...}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> EmulatorResponse:
    """A JSON response with the given status."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return EmulatorResponse(status, {**_JSON_HEADERS, **(headers or {})}, body)


def error_response(status: int, message: str) -> EmulatorResponse:
    """A Loops-style error response."""
    return json_response(status, {"success": False, "message": message})


def strip_api_prefix(path: str) -> str:
    """`/api/v1/x` and `/v1/x` are the same endpoint."""
    return path[len("/api") :] if path == "/api" or path.startswith("/api/") else path


@dataclass
class Request:
    """An API request, its path without the /api prefix and its body parsed as JSON where it is JSON."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    malformed: bool

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> Request:
        """The request for `target` (path and query string); header names are lowercased."""
        parts = urlsplit(target)
        body: Any = None
        malformed = False
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except ValueError:
                malformed = True
        return cls(
            method=method.upper(),
            path=strip_api_prefix(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in headers.items()},
            body=body,
            malformed=malformed,
        )

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        if self.malformed:
            raise ApiError(400, "Invalid JSON body.")
        if not isinstance(self.body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return self.body
