"""One run's link to Loops: the client, the shared rate limiter, the retry policy, the key check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from bulksync.config import CreateVia, HttpConfig, Runtime
from bulksync.errors import ApiError, ConfigError, Interrupted
from bulksync.loops.breaker import OutageBreaker
from bulksync.loops.client import LoopsClient, RedirectError
from bulksync.loops.inflight import InFlight
from bulksync.loops.push import STOP_GRACE_S, Pusher
from bulksync.loops.throttle import RateLimiter
from bulksync.source.mapping import property_types


class Connection:
    """Every request of a run goes through here, paced by one limiter and retried by one policy."""

    def __init__(self, http: HttpConfig, runtime: Runtime, create_via: CreateVia = "update") -> None:
        assert http.api_key is not None
        self.http = http
        self.runtime = runtime
        self.create_via = create_via
        self.limiter = RateLimiter(http.rate_limit, clock=runtime.clock, sleep=runtime.sleep)
        self.breaker = OutageBreaker(http.outage_wait, clock=runtime.clock, sleep=runtime.sleep)
        self.in_flight = InFlight(http.concurrency, clock=runtime.clock)
        self.client = LoopsClient(
            http.api_key, http.base_url,
            timeout=http.read_timeout, connect_timeout=http.connect_timeout,
            transport=runtime.transport, max_connections=max(4, http.concurrency),
            on_response=lambda info: self.limiter.on_response(*info),
            should_stop=runtime.should_stop, stop_grace_s=STOP_GRACE_S,
        )
        self._reads = self.pusher({})
        self._team: str | None = None

    def pusher(self, types: dict[str, str], *, create_only: bool = False,
               before_send: Callable[[], None] = lambda: None) -> Pusher:
        """``before_send`` runs before each request is sent, and raises StateError to stop the sending."""
        return Pusher(self.client, self.limiter, types, max_retries=self.http.max_retries,
                      sleep=self.runtime.sleep, create_via=self.create_via, should_stop=self.runtime.should_stop,
                      create_only=create_only, breaker=self.breaker, in_flight=self.in_flight,
                      before_send=before_send)

    def workers(self) -> int:
        """Requests to keep in flight now: the rate aimed at times the latency seen (Little's law)."""
        return self.in_flight.size(self.limiter.target())

    def check_key(self) -> str:
        """The team's name; asked once per run. A bad key raises AuthError after one request."""
        if self._team is None:
            try:
                answer = self._reads.check_key()
            except ApiError as exc:
                self._failed("the API key check", "could not check the API key", exc)
            self._team = str(answer.get("teamName") or "(unnamed team)")
        return self._team

    def read(self, what: str, request: Any) -> Any:
        """A read-only request (properties, lists), paced and retried like the writes."""
        self.check_key()
        try:
            return self._reads.call(request, what, [0])
        except ApiError as exc:
            self._failed(what, f"could not read {what} from Loops", exc)

    def _failed(self, what: str, prefix: str, exc: ApiError) -> NoReturn:
        """A request made before any contact is sent failed: the run stops, saying why."""
        if self.runtime.should_stop():  # the stop, not Loops, ended it (the CLI exits 130 or 143)
            raise Interrupted(f"the run was stopped during {what}; no contact was sent") from None
        if isinstance(exc, RedirectError):  # the base URL is wrong, or Loops moved: a configuration matter
            raise ConfigError(f"{prefix}: {exc}; nothing was sent") from None
        raise ApiError(f"{prefix}: {exc}", exc.status) from None

    def properties(self) -> list[dict[str, Any]]:
        return self.read("the account's properties", self.client.properties)  # type: ignore[no-any-return]

    def lists(self) -> list[dict[str, Any]]:
        return self.read("the account's mailing lists", self.client.lists)  # type: ignore[no-any-return]

    def api_key(self) -> dict[str, Any]:
        return {"success": True, "teamName": self.check_key()}

    def create_property(self, name: str, type_: str) -> None:
        """Create a custom property; one that exists already (a retried create that went through) is fine."""
        try:
            self.read(f"property {name}", lambda: self.client.create_property(name, type_))
        except ApiError:
            if name not in property_types(self.properties()):
                raise

    @property
    def requests(self) -> int:
        return self.client.requests

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
