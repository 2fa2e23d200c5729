"""The Loops contacts API, emulated in memory: request in, response out, no sockets."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, replace
from typing import Any

import httpx

from bulksync.emulator.faults import (
    Fault,
    Faults,
    bad_gateway_response,
    draw_delay,
    draw_fault,
    dropped_response,
)
from bulksync.emulator.limiter import DEFAULT_ALGORITHM, BackgroundStats, check_algorithm, make_limiter
from bulksync.emulator.outage import Outage
from bulksync.emulator.team import Team
from bulksync.emulator.wire import ApiError, EmulatorResponse, Request, error_response, json_response

TEAM_NAME = "Emulated Team"
_CONTACT_WRITES = frozenset({"/v1/contacts/create", "/v1/contacts/update", "/v1/contacts/delete"})


class LoopsEmulator:
    """An in-memory Loops team: contacts, custom properties, lists, the rate limit, faults and outages.

    `rate_algorithm` is one of limiter.ALGORITHMS (default sliding-log, the strictest realistic one);
    `clock` drives the rate limit and outages, so tests on a fake clock never sleep.
    """

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
        rate_algorithm: str = DEFAULT_ALGORITHM,
    ) -> None:
        self.api_key = api_key
        self.faults = faults or Faults()
        self.strict_properties = strict_properties
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._arrival_rng = random.Random(seed)  # its own sequence: arrival jitter never shifts the faults drawn
        self._team = Team(seed)
        self._clock = clock
        self._background = BackgroundStats()
        self._limiter = make_limiter(rate_algorithm, rate_limit, background_rps, clock, self._background)
        self._outage: Outage | None = None
        self._outage_ended = threading.Event()  # wakes hung requests when end_outage() is called
        team = self._team
        self._routes: dict[str, dict[str, Callable[[Request], Any]]] = {
            "/v1/contacts/create": {"POST": lambda request: team.create(request.json_object(), self.strict_properties)},
            "/v1/contacts/update": {"PUT": lambda request: team.update(request.json_object(), self.strict_properties)},
            "/v1/contacts/find": {"GET": lambda request: team.find(request.query)},
            "/v1/contacts/delete": {"POST": lambda request: team.delete(request.json_object())},
            "/v1/contacts/properties": {
                "GET": lambda request: team.list_properties(custom_only=request.query.get("list") == "custom"),
                "POST": lambda request: team.create_property(request.json_object()),
            },
            "/v1/lists": {"GET": lambda _request: team.list_lists()},
            "/v1/api-key": {"GET": lambda _request: {"success": True, "teamName": TEAM_NAME}},
        }
        self._clear()

    # -- configuration and inspection -------------------------------------------------------------

    @property
    def rate_limit(self) -> float:
        return self._limiter.rate

    @property
    def rate_algorithm(self) -> str:
        return self._limiter.algorithm

    @property
    def background_rps(self) -> float:
        return self._limiter.background_rps

    def configure(
        self,
        *,
        rate_limit: float | None = None,
        faults: Faults | None = None,
        background_rps: float | None = None,
        strict_properties: bool | None = None,
        rate_algorithm: str | None = None,
    ) -> None:
        """Change settings; a new rate_limit or rate_algorithm starts with a full budget. Raises ValueError."""
        with self._lock:
            if rate_limit is not None or rate_algorithm is not None:
                # Built first, so that a bad value changes nothing.
                limiter = make_limiter(
                    check_algorithm(rate_algorithm or self._limiter.algorithm),
                    self._limiter.rate if rate_limit is None else rate_limit,
                    self._limiter.background_rps if background_rps is None else background_rps,
                    self._clock,
                    self._background,
                )
                self._limiter.run_background()  # the old limiter's share of the others' traffic so far
                self._limiter = limiter
            elif background_rps is not None:
                self._limiter.set_background(background_rps)
            if faults is not None:
                self.faults = faults
            if strict_properties is not None:
                self.strict_properties = strict_properties

    def settings(self) -> dict[str, Any]:
        """What configure() sets, as GET /_emulator/config shows it."""
        with self._lock:
            return {
                "rate_limit": self._limiter.rate,
                "rate_algorithm": self._limiter.algorithm,
                "background_rps": self._limiter.background_rps,
                "strict_properties": self.strict_properties,
                "faults": asdict(self.faults),
            }

    def reset(self) -> None:
        """Forget contacts, the request log, stats and any outage; keep settings, properties and lists."""
        with self._lock:
            self._team.clear()
            self._clear()
            self._limiter.refill()
            self._outage = None
            self._outage_ended.set()

    # -- outages ------------------------------------------------------------------------------------

    def start_outage(self, seconds: float | None = None, kind: str = "500", *, after: float = 0.0) -> None:
        """Fail every API request from `after` seconds from now for `seconds` (None: until end_outage()).

        `kind` is one of outage.OUTAGE_KINDS: "500", "502", "drop" or "hang". Replaces any earlier
        outage. Raises ValueError.
        """
        with self._lock:
            self._outage = Outage.starting(self._clock(), seconds, kind, after)
            self._outage_ended.clear()

    def end_outage(self) -> None:
        """End (or cancel) the outage now; requests hanging in it are let go."""
        with self._lock:
            self._outage = None
            self._outage_ended.set()

    def outage(self) -> dict[str, Any]:
        """The current or scheduled outage (times in seconds from now) and how many requests it failed."""
        with self._lock:
            shown = self._outage.describe(self._clock()) if self._outage is not None else {"active": False}
            return {**shown, "requests": self._outage_requests}

    def wait_for_outage_end(self, timeout_s: float) -> None:
        """Block up to `timeout_s`, or until end_outage() is called: how a hung request waits."""
        self._outage_ended.wait(timeout_s)

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact, as `find` would return it."""
        with self._lock:
            return self._team.views()

    def contact(self, email: str) -> dict[str, Any] | None:
        """The contact with this email (trimmed, case-insensitive), or None."""
        with self._lock:
            return self._team.view_of(email)

    def seed(self, contacts: Iterable[Mapping[str, Any]]) -> None:
        """Add contacts directly, without counting requests; unknown properties become strings.

        Unlike the API, this accepts an `id`, and unsubscribed contacts on lists. Raises ValueError.
        """
        with self._lock:
            self._team.seed(contacts)

    def add_property(self, name: str, type_: str) -> None:
        """Create a custom property, as POST /v1/contacts/properties would. Raises ValueError."""
        with self._lock:
            self._team.add_property(name, type_)

    def add_list(self, list_id: str, name: str, is_public: bool = True) -> None:
        """Create (or replace) a mailing list."""
        with self._lock:
            self._team.add_list(list_id, name, is_public)

    def stats(self) -> dict[str, Any]:
        """Counts of API requests: total, by endpoint, by status, writes, 429s, drops, those failed by an
        outage; and `background`: the simulated traffic of the team's other clients and its 429s."""
        with self._lock:
            self._limiter.run_background()
            return {
                "requests": self._request_count,
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "writes": self._writes,
                "rate_limited": self._by_status.get("429", 0),
                "dropped": self._dropped,
                "outage": self._outage_requests,
                "background": self._background.snapshot(),
            }

    def request_log(self) -> list[dict[str, Any]]:
        """One entry per API request, in arrival order."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    # -- transports ---------------------------------------------------------------------------------

    def arrival_delay(self) -> float:
        """Seconds a request spends on the way in before the emulator sees it (``arrival_jitter_ms``)."""
        with self._lock:
            jitter_ms = self.faults.arrival_jitter_ms
            return self._arrival_rng.uniform(0.0, jitter_ms) / 1000.0 if jitter_ms > 0 else 0.0

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> EmulatorResponse:
        """Answer one API request; `target` is the path with its query string."""
        request = Request.parse(method, target, headers, body)
        with self._lock:
            now = self._clock()
            outage = self._outage if self._outage is not None and self._outage.active(now) else None
            if outage is not None:  # nothing behind Loops' edge answers: no auth, no rate limit
                response = outage.response(now)
                self._outage_requests += 1
            else:
                response = self._respond(request)
            self._record(request, response, outage is not None)
            delay_s = draw_delay(self.faults, self._rng)  # drawn even for a hang: the sequence stays the same
        return response if response.hang else replace(response, delay_s=delay_s)

    def transport(self, sleep: Callable[[float], None] = time.sleep) -> httpx.MockTransport:
        """An httpx transport that calls handle() in-process, sleeping with the given function."""

        def handler(request: httpx.Request) -> httpx.Response:
            target = request.url.raw_path.decode("ascii")
            if (arrival := self.arrival_delay()) > 0:
                sleep(arrival)
            answer = self.handle(request.method, target, request.headers, request.read())
            read_timeout = (request.extensions.get("timeout") or {}).get("read")
            if answer.hang and read_timeout is not None and read_timeout < answer.delay_s:
                sleep(read_timeout)  # the client gives up first, as it would on a socket
                raise httpx.ReadTimeout("The read operation timed out", request=request)
            if answer.delay_s > 0:
                sleep(answer.delay_s)
            if answer.drop:
                message = "Server disconnected without sending a response."
                raise httpx.RemoteProtocolError(message, request=request)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

        return httpx.MockTransport(handler)

    # -- request pipeline ---------------------------------------------------------------------------

    def _clear(self) -> None:
        self._log: list[dict[str, Any]] = []
        self._request_count = 0
        self._writes = 0
        self._dropped = 0
        self._outage_requests = 0
        self._background.requests = self._background.rate_limited = 0.0
        self._by_endpoint: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()

    def _respond(self, request: Request) -> EmulatorResponse:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response(401, {"error": "Invalid API key"})
        allowed, rate_headers = self._limiter.admit()
        if not allowed:
            return json_response(429, {"success": False, "message": "Rate limit exceeded."}, rate_headers)
        fault = draw_fault(self.faults, self._rng)
        if fault is Fault.DROP_BEFORE_WRITE:
            return dropped_response()
        if fault is Fault.BAD_GATEWAY:
            return bad_gateway_response()
        server_error = fault is Fault.SERVER_ERROR
        response = error_response(500, "Internal server error") if server_error else self._route(request)
        response.headers.update(rate_headers)
        response.drop = fault is Fault.DROP_AFTER_WRITE
        return response

    def _route(self, request: Request) -> EmulatorResponse:
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

    def _record(self, request: Request, response: EmulatorResponse, outage: bool) -> None:
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
                "outage": outage,
                "at": self._clock(),  # arrival time on the emulator's clock, to measure sustained rates
            }
        )
