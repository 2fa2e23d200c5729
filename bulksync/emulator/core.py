"""The Loops contacts API, emulated in memory: request in, response out, no sockets."""

from __future__ import annotations

import enum
import json
import math
import random
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

MAX_STRING_LENGTH = 500
"""Loops counts the surrounding JSON quotes, so a raw string of 499 characters is already too long."""
UNLIMITED = 1_000_000
"""The rate-limit header values sent when the emulator runs without a rate limit."""
TEAM_NAME = "Emulated Team"
PROPERTY_TYPES = frozenset({"string", "number", "boolean", "date"})
RESERVED_NAMES = frozenset({"id", "listId", "softDeleteAt", "teamId", "updatedAt"})
READ_ONLY_FIELDS = frozenset({"id", "createdAt", "optInStatus", "notes"})

# (key, type) of the properties every Loops team has; the writable ones are validated by _STANDARD_CHECKS.
STANDARD_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("email", "string"),
    ("firstName", "string"),
    ("lastName", "string"),
    ("notes", "string"),
    ("source", "string"),
    ("subscribed", "boolean"),
    ("userGroup", "string"),
    ("userId", "string"),
    ("createdAt", "date"),
    ("optInStatus", "string"),
)
_STANDARD_NAMES = frozenset(name for name, _ in STANDARD_PROPERTIES) | {"mailingLists"}

_EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
_NAME_RE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_CONTACT_WRITES = frozenset({"/v1/contacts/create", "/v1/contacts/update", "/v1/contacts/delete"})
_ID_ALPHABET = string.ascii_lowercase + string.digits
_JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}
_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Faults:
    """Failures and latency injected into API requests that passed auth and the rate limit."""

    fail_rate: float = 0.0
    html_502_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_write_share: float = 0.5
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    spike_rate: float = 0.0
    spike_ms: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.fail_rate, self.html_502_rate, self.drop_rate, self.spike_rate)
        if any(not 0.0 <= share <= 1.0 for share in (*shares, self.drop_after_write_share)):
            raise ValueError("fault rates and shares must be between 0 and 1")
        if self.fail_rate + self.html_502_rate + self.drop_rate > 1.0:
            raise ValueError("fail_rate + html_502_rate + drop_rate must not exceed 1")
        if min(self.latency_ms, self.jitter_ms, self.spike_ms) < 0:
            raise ValueError("latencies must not be negative")


@dataclass
class EmulatorResponse:
    """What a transport must do: answer (after delay_s), or drop the connection."""

    status: int
    headers: dict[str, str]
    body: bytes
    drop: bool = False
    delay_s: float = 0.0

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class _Fault(enum.Enum):
    NONE = enum.auto()
    DROP_BEFORE_WRITE = enum.auto()
    DROP_AFTER_WRITE = enum.auto()
    SERVER_ERROR = enum.auto()
    BAD_GATEWAY = enum.auto()


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


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    malformed: bool

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> _Request:
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


def strip_api_prefix(path: str) -> str:
    """`/api/v1/x` and `/v1/x` are the same endpoint."""
    return path[len("/api") :] if path == "/api" or path.startswith("/api/") else path


class _TokenBucket:
    """Loops' per-team rate limit, with the team's other traffic draining the same bucket."""

    def __init__(self, rate: float, background_rps: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.now = clock
        self.rate = rate
        self.background_rps = background_rps
        self.refill()

    @property
    def limit(self) -> int:
        return int(self.rate) if self.rate > 0 else UNLIMITED

    def refill(self) -> None:
        """Fill the bucket to capacity."""
        self._capacity = max(self.rate, 1.0)
        self._tokens = self._capacity
        self._stamp = self._clock()

    def set_background(self, background_rps: float) -> None:
        self._advance()
        self.background_rps = background_rps

    def take(self) -> tuple[bool, int]:
        """Take one token: (allowed, tokens left)."""
        if self.rate <= 0:
            return True, UNLIMITED
        self._advance()
        # The epsilon absorbs float error from clocks advanced in fractional steps.
        if self._tokens < 1.0 - 1e-9:
            return False, 0
        self._tokens = max(0.0, self._tokens - 1.0)
        return True, math.floor(self._tokens + 1e-9)

    def _advance(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        net_rate = self.rate - self.background_rps
        self._tokens = min(self._capacity, max(0.0, self._tokens + elapsed * net_rate))


@dataclass
class _Contact:
    id: str
    data: dict[str, Any]
    lists: dict[str, bool] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """The contact as `find` returns it."""
        standard = {key: self.data.get(key) for key in _CONTACT_FIELDS}
        custom = {key: value for key, value in self.data.items() if key not in standard}
        return {"id": self.id, **standard, "mailingLists": dict(self.lists), "optInStatus": None, **custom}


_CONTACT_FIELDS = ("email", "firstName", "lastName", "source", "subscribed", "userGroup", "userId")


@dataclass
class _Write:
    """A validated contact body: fields to set (None clears) and list memberships to change."""

    fields: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, bool] = field(default_factory=dict)
    new_properties: list[str] = field(default_factory=list)


def normalize_email(email: str) -> str:
    """The key emails are matched on."""
    return email.strip().lower()


def _check_email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL_RE.match(value.strip()):
        raise ApiError(400, "Invalid email address.")
    return value.strip()


def _check_text(key: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string.")
        return value

    return check


def _check_subscribed(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError(400, "subscribed must be a boolean.")
    return value


def _check_user_id(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ApiError(400, "userId must be a non-empty string.")
    return value


_STANDARD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": _check_email,
    "firstName": _check_text("firstName"),
    "lastName": _check_text("lastName"),
    "source": _check_text("source"),
    "userGroup": _check_text("userGroup"),
    "subscribed": _check_subscribed,
    "userId": _check_user_id,
}


def _identifier(source: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (email, userId) pair of a find or delete, exactly one of them set."""
    email, user_id = source.get("email"), source.get("userId")
    given = [value for value in (email, user_id) if value is not None and value != ""]
    if len(given) != 1 or not isinstance(given[0], str):
        raise ApiError(400, "Provide exactly one of email or userId.")
    return (_check_email(email), None) if email else (None, user_id)


def _as_string(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return value
    raise ValueError


def _as_number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        text = value.strip()
        return int(text) if _INTEGER_RE.match(text) else float(text)
    raise ValueError


def _as_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError


def _as_date(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return value
    if isinstance(value, str) and (_INTEGER_RE.match(value) or _DATE_RE.match(value)):
        if not _INTEGER_RE.match(value):
            datetime.fromisoformat(value)  # rejects impossible dates such as 2024-02-30
        return value
    raise ValueError


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "string": _as_string,
    "number": _as_number,
    "boolean": _as_boolean,
    "date": _as_date,
}


def _check_lengths(value: Any) -> None:
    """Reject any key or string value over Loops' length limit, at any depth."""
    if isinstance(value, str):
        if len(value) + 2 > MAX_STRING_LENGTH:
            raise ApiError(400, "Some body key or value is longer than allowable")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_lengths(key)
            _check_lengths(item)
    elif isinstance(value, list):
        for item in value:
            _check_lengths(item)


def _property_label(name: str) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
    return words[:1].upper() + words[1:]


class LoopsEmulator:
    """An in-memory Loops team: contacts, custom properties, lists, the rate limit and injected faults."""

    def __init__(
        self,
        api_key: str = "test-key",
        rate_limit: float = 10.0,
        *,
        faults: Faults | None = None,
        background_rps: float = 0.0,
        strict_properties: bool = False,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.faults = faults or Faults()
        self.strict_properties = strict_properties
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        # A separate stream for ids, so creating contacts does not shift the fault draws.
        self._id_rng = random.Random(seed)
        self._bucket = _TokenBucket(rate_limit, background_rps, clock)
        self._properties: dict[str, str] = {}
        self._lists: dict[str, dict[str, Any]] = {}
        self._routes: dict[str, dict[str, Callable[[_Request], Any]]] = {
            "/v1/contacts/create": {"POST": self._create},
            "/v1/contacts/update": {"PUT": self._update},
            "/v1/contacts/find": {"GET": self._find},
            "/v1/contacts/delete": {"POST": self._delete},
            "/v1/contacts/properties": {"GET": self._list_properties, "POST": self._create_property},
            "/v1/lists": {"GET": self._list_lists},
            "/v1/api-key": {"GET": lambda _request: {"success": True, "teamName": TEAM_NAME}},
        }
        self._clear()

    # -- configuration and inspection -------------------------------------------------------------

    @property
    def rate_limit(self) -> float:
        return self._bucket.rate

    @property
    def background_rps(self) -> float:
        return self._bucket.background_rps

    def configure(
        self,
        *,
        rate_limit: float | None = None,
        faults: Faults | None = None,
        background_rps: float | None = None,
        strict_properties: bool | None = None,
    ) -> None:
        """Change settings; a new rate_limit starts with a full bucket."""
        with self._lock:
            if faults is not None:
                self.faults = faults
            if strict_properties is not None:
                self.strict_properties = strict_properties
            if background_rps is not None:
                self._bucket.set_background(background_rps)
            if rate_limit is not None:
                self._bucket.rate = rate_limit
                self._bucket.refill()

    def reset(self) -> None:
        """Forget contacts, the request log and stats; keep settings, properties and lists."""
        with self._lock:
            self._clear()
            self._bucket.refill()

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact, as `find` would return it."""
        with self._lock:
            return [contact.view() for contact in self._contacts.values()]

    def contact(self, email: str) -> dict[str, Any] | None:
        """The contact with this email (trimmed, case-insensitive), or None."""
        with self._lock:
            found = self._by_email.get(normalize_email(email))
            return self._contacts[found].view() if found else None

    def seed(self, contacts: Iterable[Mapping[str, Any]]) -> None:
        """Add contacts directly, without counting requests; unknown properties become strings.

        Unlike the API, this accepts an `id`, and unsubscribed contacts on lists. Raises ValueError.
        """
        with self._lock:
            for given in contacts:
                data = {key: value for key, value in given.items() if key not in READ_ONLY_FIELDS}
                try:
                    if "email" not in data:
                        raise ApiError(400, "email is required.")
                    if given.get("id") in self._contacts:
                        raise ApiError(409, "A contact with this id already exists.")
                    write = self._parse_write(data, strict=False)
                    self._check_unique(write)
                except ApiError as error:
                    raise ValueError(f"cannot seed {dict(given)!r}: {error.message}") from None
                self._insert(write, contact_id=given.get("id"))

    def add_property(self, name: str, type_: str) -> None:
        """Create a custom property, as POST /v1/contacts/properties would. Raises ValueError."""
        with self._lock:
            try:
                self._register_property(name, type_)
            except ApiError as error:
                raise ValueError(error.message) from None

    def add_list(self, list_id: str, name: str, is_public: bool = True) -> None:
        """Create (or replace) a mailing list."""
        with self._lock:
            self._lists[list_id] = {"id": list_id, "name": name, "description": None, "isPublic": is_public}

    def stats(self) -> dict[str, Any]:
        """Counts of API requests: total, by endpoint, by status, writes, 429s and drops."""
        with self._lock:
            return {
                "requests": self._request_count,
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "writes": self._writes,
                "rate_limited": self._by_status.get("429", 0),
                "dropped": self._dropped,
            }

    def request_log(self) -> list[dict[str, Any]]:
        """One entry per API request, in arrival order."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    # -- transports ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> EmulatorResponse:
        """Answer one API request; `target` is the path with its query string."""
        request = _Request.parse(method, target, headers, body)
        with self._lock:
            response = self._respond(request)
            self._record(request, response)
            delay_s = self._draw_delay()
        return replace(response, delay_s=delay_s)

    def transport(self, sleep: Callable[[float], None] = time.sleep) -> httpx.MockTransport:
        """An httpx transport that calls handle() in-process, sleeping with the given function."""

        def handler(request: httpx.Request) -> httpx.Response:
            target = request.url.raw_path.decode("ascii")
            answer = self.handle(request.method, target, request.headers, request.read())
            if answer.delay_s > 0:
                sleep(answer.delay_s)
            if answer.drop:
                message = "Server disconnected without sending a response."
                raise httpx.RemoteProtocolError(message, request=request)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(handler)

    # -- request pipeline ---------------------------------------------------------------------------

    def _clear(self) -> None:
        self._contacts: dict[str, _Contact] = {}
        self._by_email: dict[str, str] = {}
        self._by_user_id: dict[str, str] = {}
        self._log: list[dict[str, Any]] = []
        self._request_count = 0
        self._writes = 0
        self._dropped = 0
        self._by_endpoint: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()

    def _respond(self, request: _Request) -> EmulatorResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response(401, {"error": "Invalid API key"})
        allowed, remaining = self._bucket.take()
        rate_headers = {"x-ratelimit-limit": str(self._bucket.limit), "x-ratelimit-remaining": str(remaining)}
        if not allowed:
            return json_response(429, {"success": False, "message": "Rate limit exceeded."}, rate_headers)
        fault = self._draw_fault()
        if fault is _Fault.DROP_BEFORE_WRITE:
            return EmulatorResponse(0, {}, b"", drop=True)
        if fault is _Fault.BAD_GATEWAY:
            # A load balancer answers this one: no JSON and no rate-limit headers.
            return EmulatorResponse(502, {"content-type": "text/html"}, _BAD_GATEWAY_HTML)
        if fault is _Fault.SERVER_ERROR:
            response = error_response(500, "Internal server error")
        else:
            response = self._route(request)
        response.headers.update(rate_headers)
        response.drop = fault is _Fault.DROP_AFTER_WRITE
        return response

    def _route(self, request: _Request) -> EmulatorResponse:
        methods = self._routes.get(request.path)
        if methods is None:
            return error_response(404, "Not found.")
        endpoint = methods.get(request.method)
        if endpoint is None:
            response = error_response(405, "Method not allowed.")
            response.headers["allow"] = ", ".join(methods)
            return response
        try:
            payload = endpoint(request)
        except ApiError as error:
            return error_response(error.status, error.message)
        if request.path in _CONTACT_WRITES:
            self._writes += 1
        return json_response(200, payload)

    def _draw_fault(self) -> _Fault:
        faults = self.faults
        draw, after_write = self._rng.random(), self._rng.random()
        if draw < faults.drop_rate:
            applied = after_write < faults.drop_after_write_share
            return _Fault.DROP_AFTER_WRITE if applied else _Fault.DROP_BEFORE_WRITE
        draw -= faults.drop_rate
        if draw < faults.fail_rate:
            return _Fault.SERVER_ERROR
        if draw - faults.fail_rate < faults.html_502_rate:
            return _Fault.BAD_GATEWAY
        return _Fault.NONE

    def _draw_delay(self) -> float:
        faults = self.faults
        jitter = self._rng.uniform(0.0, faults.jitter_ms)
        spike = faults.spike_ms if self._rng.random() < faults.spike_rate else 0.0
        return (faults.latency_ms + jitter + spike) / 1000.0

    def _record(self, request: _Request, response: EmulatorResponse) -> None:
        self._request_count += 1
        self._by_endpoint[f"{request.method} {request.path}"] += 1
        if response.drop:
            self._dropped += 1
        else:
            self._by_status[str(response.status)] += 1
        self._log.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "json": request.body,
                "status": response.status,
                "dropped": response.drop,
                "at": self._bucket.now(),  # arrival time on the emulator's clock, to measure sustained rates
            }
        )

    # -- endpoints ------------------------------------------------------------------------------------

    def _create(self, request: _Request) -> dict[str, Any]:
        body = request.json_object()
        if body.get("email") is None:
            raise ApiError(400, "email is required.")
        write = self._parse_write(body, strict=self.strict_properties)
        self._check_list_additions(None, write)
        self._check_unique(write)
        return {"success": True, "id": self._insert(write).id}

    def _update(self, request: _Request) -> dict[str, Any]:
        body = request.json_object()
        write = self._parse_write(body, strict=self.strict_properties)
        email, user_id = write.fields.get("email"), write.fields.get("userId")
        if email is None and user_id is None:
            raise ApiError(400, "email or userId is required.")
        by_email = self._by_email.get(normalize_email(email)) if email else None
        by_user_id = self._by_user_id.get(user_id) if user_id else None
        if by_email and by_user_id and by_email != by_user_id:
            raise ApiError(400, "Multiple contacts found.")
        target_id = by_email or by_user_id
        if target_id is None:
            if email is None:
                raise ApiError(400, "No contact found with this userId; an email is needed to create one.")
            self._check_list_additions(None, write)
            return {"success": True, "id": self._insert(write).id}
        contact = self._contacts[target_id]
        if by_email:
            write.fields.pop("email", None)  # matched on it: the stored spelling stays
        self._check_list_additions(contact, write)
        self._apply(contact, write)
        return {"success": True, "id": contact.id}

    def _find(self, request: _Request) -> list[dict[str, Any]]:
        found = self._lookup(*_identifier(request.query))
        return [self._contacts[found].view()] if found else []

    def _delete(self, request: _Request) -> dict[str, Any]:
        found = self._lookup(*_identifier(request.json_object()))
        if found is None:
            raise ApiError(404, "Contact not found.")
        self._unindex(self._contacts.pop(found))
        return {"success": True, "message": "Contact deleted."}

    def _list_properties(self, request: _Request) -> list[dict[str, str]]:
        custom = list(self._properties.items())
        chosen = custom if request.query.get("list") == "custom" else [*STANDARD_PROPERTIES, *custom]
        return [{"key": name, "label": _property_label(name), "type": type_} for name, type_ in chosen]

    def _create_property(self, request: _Request) -> dict[str, Any]:
        body = request.json_object()
        self._register_property(body.get("name"), body.get("type"))
        return {"success": True}

    def _list_lists(self, _request: _Request) -> list[dict[str, Any]]:
        return [dict(mailing_list) for mailing_list in self._lists.values()]

    # -- contact bodies and storage ------------------------------------------------------------------------

    def _register_property(self, name: Any, type_: Any) -> None:
        if type_ not in PROPERTY_TYPES:
            raise ApiError(400, f"Invalid property type {type_!r}: use string, number, boolean or date.")
        self._check_property_name(name)
        if name in self._properties or name in _STANDARD_NAMES:
            raise ApiError(400, f"A property named {name!r} already exists.")
        self._properties[name] = type_

    @staticmethod
    def _check_property_name(name: Any) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ApiError(400, f"Invalid property name {name!r}: names are camelCase.")
        if name in RESERVED_NAMES:
            raise ApiError(400, f"{name!r} is a reserved property name.")

    def _parse_write(self, body: Mapping[str, Any], strict: bool) -> _Write:
        _check_lengths(dict(body))
        write = _Write()
        for key, value in body.items():
            if key == "mailingLists":
                write.lists = self._parse_lists(value)
            elif key in READ_ONLY_FIELDS or key in RESERVED_NAMES:
                raise ApiError(400, f"{key} cannot be set.")
            elif key in _STANDARD_CHECKS:
                write.fields[key] = _STANDARD_CHECKS[key](value)
            else:
                write.fields[key] = self._parse_custom(key, value, strict, write)
        return write

    def _parse_custom(self, key: str, value: Any, strict: bool, write: _Write) -> Any:
        type_ = self._properties.get(key)
        if type_ is None:
            if strict:
                raise ApiError(400, f"Unknown contact property {key!r}: create it first.")
            self._check_property_name(key)
            if value is not None:
                write.new_properties.append(key)
            type_ = "string"
        if value is None:
            return None
        try:
            return _COERCERS[type_](value)
        except ValueError:
            raise ApiError(400, f"Invalid value for {key!r}: expected a {type_}.") from None

    def _parse_lists(self, value: Any) -> dict[str, bool]:
        if not isinstance(value, dict) or not all(isinstance(on, bool) for on in value.values()):
            raise ApiError(400, "mailingLists must be an object of list ids to booleans.")
        unknown = [list_id for list_id in value if list_id not in self._lists]
        if unknown:
            raise ApiError(400, f"Unknown mailing list {unknown[0]!r}.")
        return dict(value)

    def _check_list_additions(self, contact: _Contact | None, write: _Write) -> None:
        subscribed = write.fields.get("subscribed", contact.data["subscribed"] if contact else True)
        current = contact.lists if contact else {}
        if not subscribed and any(on and list_id not in current for list_id, on in write.lists.items()):
            raise ApiError(400, "An unsubscribed contact cannot be added to a mailing list.")

    def _check_unique(self, write: _Write) -> None:
        if normalize_email(write.fields["email"]) in self._by_email:
            raise ApiError(409, "A contact with this email already exists.")
        user_id = write.fields.get("userId")
        if user_id is not None and user_id in self._by_user_id:
            raise ApiError(409, "A contact with this userId already exists.")

    def _insert(self, write: _Write, contact_id: str | None = None) -> _Contact:
        contact = _Contact(contact_id or self._new_id(), {key: None for key in _CONTACT_FIELDS})
        contact.data.update(source="API", subscribed=True)
        self._contacts[contact.id] = contact
        self._apply(contact, write)
        return contact

    def _apply(self, contact: _Contact, write: _Write) -> None:
        self._unindex(contact)
        for key, value in write.fields.items():
            if value is None and key not in _CONTACT_FIELDS:
                contact.data.pop(key, None)
            else:
                contact.data[key] = value
        for list_id, on in write.lists.items():
            if on:
                contact.lists[list_id] = True
            else:
                contact.lists.pop(list_id, None)
        for name in write.new_properties:
            self._properties.setdefault(name, "string")
        self._index(contact)

    def _lookup(self, email: str | None, user_id: str | None) -> str | None:
        if email is not None:
            return self._by_email.get(normalize_email(email))
        return self._by_user_id.get(user_id or "")

    def _index(self, contact: _Contact) -> None:
        self._by_email[normalize_email(contact.data["email"])] = contact.id
        if contact.data["userId"] is not None:
            self._by_user_id[contact.data["userId"]] = contact.id

    def _unindex(self, contact: _Contact) -> None:
        if contact.data["email"] is not None:
            self._by_email.pop(normalize_email(contact.data["email"]), None)
        self._by_user_id.pop(contact.data["userId"] or "", None)

    def _new_id(self) -> str:
        # Loops ids are 25-character cuids such as "cll6ag0ad00000ml46f0h7wxy".
        return "c" + "".join(self._id_rng.choices(_ID_ALPHABET, k=24))
