"""Pusher and push_all against the in-process Loops emulator, on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from bulksync.config import CreateVia
from bulksync.emulator import Faults, LoopsEmulator
from bulksync.errors import AuthError
from bulksync.loops.client import LoopsClient
from bulksync.loops.push import Outcome, Pusher, push_all
from bulksync.loops.throttle import GUARD, GUARD_GROWTH, RateLimiter
from bulksync.plan.actions import Action
from bulksync.plan.requests import Sent, without_resubscribe
from bulksync.state.store import Tombstone

API_KEY = "k"
TYPES = {"email": "string", "firstName": "string", "lastName": "string", "subscribed": "boolean",
         "seats": "number", "plan": "string", "mailingLists.news": "boolean"}
CONFLICT_NOTE = "already in Loops (409): updated without subscribed"


class FakeClock:
    """Shared by the limiter, the retry sleeps and the emulator; sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class Scripted(httpx.BaseTransport):
    """Passes requests to the emulator, except where the script says otherwise.

    Script items: ``None`` (pass through), ``"lost"`` (the emulator handles it, the answer is lost),
    or ``(status, headers)`` (answer this without reaching the emulator).
    """

    def __init__(self, inner: httpx.BaseTransport, script: list[Any]) -> None:
        self.inner = inner
        self.script = script
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if step is None:
            return self.inner.handle_request(request)
        if step == "lost":
            self.inner.handle_request(request)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        status, headers = step
        return httpx.Response(status, json={"success": False, "message": f"scripted {status}"}, headers=headers)


@dataclass
class Harness:
    emulator: LoopsEmulator
    clock: FakeClock
    waits: list[float]
    transport: Scripted
    pusher: Pusher
    client: LoopsClient

    def log(self) -> list[tuple[str, str, int]]:
        return [(r["method"], r["path"], r["status"]) for r in self.emulator.request_log()]


@dataclass
class Factory:
    made: list[LoopsClient] = field(default_factory=list)

    def __call__(
        self,
        emulator: LoopsEmulator | None = None,
        *,
        api_key: str = API_KEY,
        script: list[Any] | None = None,
        max_retries: int = 2,
        create_via: CreateVia = "create",
        should_stop: Callable[[], bool] = lambda: False,
        rate: float = 10.0,
        retry_sleep_moves_clock: bool = False,
    ) -> Harness:
        clock = FakeClock()
        emulator = emulator or LoopsEmulator(api_key=API_KEY, rate_limit=0, seed=1)
        limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
        transport = Scripted(emulator.transport(sleep=clock.sleep), script or [])
        client = LoopsClient(
            api_key, "http://127.0.0.1/api", transport=transport, on_response=lambda info: limiter.on_response(*info)
        )
        self.made.append(client)
        waits: list[float] = []
        sleep = clock.sleep if retry_sleep_moves_clock else waits.append
        pusher = Pusher(client, limiter, TYPES, max_retries=max_retries, sleep=sleep, create_via=create_via,
                        should_stop=should_stop)
        return Harness(emulator, clock, waits, transport, pusher, client)


@pytest.fixture
def make() -> Iterator[Factory]:
    factory = Factory()
    yield factory
    for client in factory.made:
        client.close()


def create(email: str = "ada@example.com", **send: str | None) -> Action:
    return Action("create", email, 1, 99, {}, {"email": email, **send}, ("email",))


def update(email: str, before: dict[str, str], **send: str | None) -> Action:
    return Action("update", email, 2, 98, before, {"email": email, **send}, ("email",))


def delete(email: str) -> Action:
    return Action("delete", email, None, None, {"email": email}, {"email": email}, ("email",))


# -- Pusher.execute --------------------------------------------------------------------------------------


def test_create_sends_typed_values_and_confirms_what_it_sent(make: Factory) -> None:
    h = make()
    h.emulator.add_list("news", "Newsletter")
    action = create(firstName="Ada", subscribed="true", seats="4", **{"mailingLists.news": "true"})

    outcome = h.pusher.execute(action)

    assert without_id(outcome) == Outcome(action, True, action.send, 200, 1)
    assert h.emulator.request_log()[0]["json"] == {
        "email": "ada@example.com", "firstName": "Ada", "subscribed": True, "seats": 4, "mailingLists": {"news": True}
    }
    contact = h.emulator.contact("ada@example.com")
    assert contact is not None
    assert (contact["firstName"], contact["subscribed"], contact["seats"], contact["mailingLists"]) == (
        "Ada", True, 4, {"news": True}
    )


def test_requests_are_paced_by_the_limiter(make: Factory) -> None:
    h = make(rate=10)

    for i in range(4):
        assert h.pusher.execute(create(f"u{i}@example.com")).ok

    # Just under the ceiling of 10/s at first, then at it (the emulator announces no lower limit).
    assert len(h.clock.sleeps) == 3 and all(0.1 - 1e-9 <= gap <= 1 / 9.8 + 1e-9 for gap in h.clock.sleeps)


def test_409_on_create_falls_back_to_update_without_subscribed_true(make: Factory) -> None:
    h = make()
    h.emulator.seed([{"email": "ada@example.com", "firstName": "Augusta", "subscribed": False}])
    action = create(firstName="Ada", subscribed="true")

    outcome = h.pusher.execute(action)

    sent: Sent = {"email": "ada@example.com", "firstName": "Ada"}
    assert without_id(outcome) == Outcome(action, True, sent, 200, 2, note=CONFLICT_NOTE)
    assert h.log() == [("POST", "/v1/contacts/create", 409), ("PUT", "/v1/contacts/update", 200)]
    assert h.emulator.request_log()[1]["json"] == {"email": "ada@example.com", "firstName": "Ada"}
    contact = h.emulator.contact("ada@example.com")
    assert contact is not None and (contact["firstName"], contact["subscribed"]) == ("Ada", False)


def test_409_fallback_keeps_subscribed_false(make: Factory) -> None:
    h = make()
    h.emulator.seed([{"email": "ada@example.com"}])

    outcome = h.pusher.execute(create(subscribed="false"))

    assert outcome.sent == {"email": "ada@example.com", "subscribed": "false"}
    assert h.emulator.contact("ada@example.com")["subscribed"] is False  # type: ignore[index]


def test_a_create_whose_answer_was_lost_lands_once(make: Factory) -> None:
    h = make(script=["lost"])
    action = create(firstName="Ada", subscribed="true")

    outcome = h.pusher.execute(action)

    sent: Sent = {"email": "ada@example.com", "firstName": "Ada"}
    assert without_id(outcome) == Outcome(action, True, sent, 200, 3, note=CONFLICT_NOTE)
    assert h.log() == [
        ("POST", "/v1/contacts/create", 200),
        ("POST", "/v1/contacts/create", 409),
        ("PUT", "/v1/contacts/update", 200),
    ]
    assert len(h.emulator.contacts()) == 1
    assert len(h.waits) == 1


def test_create_via_update_never_sends_subscribed_true(make: Factory) -> None:
    h = make(create_via="update")
    action = create(firstName="Ada", subscribed="true")

    outcome = h.pusher.execute(action)

    assert without_id(outcome) == Outcome(action, True, {"email": "ada@example.com", "firstName": "Ada"}, 200, 1)
    assert h.log() == [("PUT", "/v1/contacts/update", 200)]


def test_update_sends_changes_and_clears_with_null(make: Factory) -> None:
    h = make()
    h.emulator.seed([{"email": "ada@example.com", "lastName": "Byron", "plan": "free"}])
    action = update("ada@example.com", {"email": "ada@example.com", "lastName": "Byron", "plan": "free"},
                    lastName=None, plan="pro")

    outcome = h.pusher.execute(action)

    assert without_id(outcome) == Outcome(action, True, action.send, 200, 1)
    assert h.emulator.request_log()[0]["json"] == {"email": "ada@example.com", "lastName": None, "plan": "pro"}
    contact = h.emulator.contact("ada@example.com")
    assert contact is not None and (contact["lastName"], contact["plan"]) == (None, "pro")


def without_id(outcome: Outcome) -> Outcome:
    """The outcome less Loops' contact id (random), which is checked to be there."""
    assert outcome.contact_id, "a write's answer carries the contact's id"
    return replace(outcome, contact_id=None)


def test_delete_of_a_contact_already_gone_is_ok(make: Factory) -> None:
    h = make()
    action = delete("gone@example.com")

    outcome = h.pusher.execute(action)

    assert replace(outcome, tombstone=None) == Outcome(
        action, True, {"email": "gone@example.com"}, 404, 2, note="already gone from Loops"
    )
    assert outcome.tombstone is not None
    assert outcome.tombstone == Tombstone("gone@example.com", outcome.tombstone.deleted_at, False)
    assert h.log() == [("GET", "/v1/contacts/find", 200), ("POST", "/v1/contacts/delete", 404)]
    assert h.waits == []


def test_delete_removes_the_contact(make: Factory) -> None:
    h = make()
    h.emulator.seed([{"email": "ada@example.com"}])
    action = delete("ada@example.com")

    outcome = h.pusher.execute(action)

    assert replace(outcome, tombstone=None) == Outcome(action, True, {"email": "ada@example.com"}, 200, 2)
    assert outcome.tombstone is not None and not outcome.tombstone.unsubscribed
    assert h.emulator.contacts() == []


def test_refresh_sends_nothing(make: Factory) -> None:
    h = make()
    action = Action("refresh", "ada@example.com", 3, 5, {"email": "ada@example.com"}, {"email": "ada@example.com"})

    assert h.pusher.execute(action) == Outcome(action, True, {}, 0, 0)
    assert h.emulator.stats()["requests"] == 0


def test_a_rejected_row_fails_without_retrying(make: Factory) -> None:
    h = make()
    action = create("not-an-email")

    outcome = h.pusher.execute(action)

    assert (outcome.ok, outcome.sent, outcome.http_status, outcome.attempts) == (False, None, 400, 1)
    assert outcome.error is not None and outcome.error.startswith("HTTP 400: ")
    assert h.waits == []


def test_server_errors_are_retried_max_retries_times_then_fail(make: Factory) -> None:
    h = make(LoopsEmulator(api_key=API_KEY, rate_limit=0, faults=Faults(fail_rate=1.0), seed=1), max_retries=3)
    action = create()

    outcome = h.pusher.execute(action)

    assert outcome == Outcome(action, False, None, 500, 4, error="HTTP 500: Internal server error")
    assert h.emulator.stats()["requests"] == 4
    assert len(h.waits) == 3


def test_a_429_with_retry_after_pauses_and_retries(make: Factory) -> None:
    h = make(script=[(429, {"retry-after": "2", "x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"})],
             retry_sleep_moves_clock=True)
    action = create()

    outcome = h.pusher.execute(action)

    assert without_id(outcome) == Outcome(action, True, action.send, 200, 2)
    assert h.transport.calls == 2
    assert h.clock.sleeps == [2.0]  # the retry waits Retry-After; the limiter's pause has passed by then
    # Cut to 90% by the 429, then 2 s of recovery: alone on the limit, the 429 widened the window's guard
    # instead of teaching a lower limit, and the unlimited emulator's answer left the --rate-limit ceiling.
    assert GUARD < h.pusher.limiter.guard <= GUARD_GROWTH * GUARD
    assert h.pusher.limiter.rate == 10.0


def test_paced_at_the_teams_limit_no_request_is_refused(make: Factory) -> None:
    clock = FakeClock()
    h = make(LoopsEmulator(api_key=API_KEY, rate_limit=10, clock=clock, seed=1), rate=10)
    h.pusher.limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)  # the emulator's clock

    for i in range(40):
        assert h.pusher.execute(create(f"u{i}@example.com")).ok

    assert h.emulator.stats()["rate_limited"] == 0
    assert clock.now == pytest.approx(39 / 9.8)  # just under the limit: no request refused


def test_a_refused_key_raises_and_sends_nothing_more(make: Factory) -> None:
    h = make(api_key="wrong")

    with pytest.raises(AuthError) as first:
        h.pusher.execute(create("a@example.com"))
    with pytest.raises(AuthError) as second:
        h.pusher.execute(create("b@example.com"))

    assert second.value is first.value
    assert h.emulator.stats()["requests"] == 1
    assert h.waits == []


def test_should_stop_means_the_request_is_never_sent(make: Factory) -> None:
    h = make(should_stop=lambda: True)
    action = create()

    outcome = h.pusher.execute(action)

    assert outcome == Outcome(action, False, None, None, 0, error="not sent: the run was stopped")
    assert h.emulator.stats()["requests"] == 0


def test_check_key(make: Factory) -> None:
    assert make().pusher.check_key() == {"success": True, "teamName": "Emulated Team"}
    with pytest.raises(AuthError):
        make(api_key="wrong").pusher.check_key()


def test_without_resubscribe_drops_only_subscribed_true() -> None:
    assert without_resubscribe({"email": "a@x.io", "subscribed": "true", "plan": "pro"}) == {
        "email": "a@x.io", "plan": "pro"
    }
    assert without_resubscribe({"email": "a@x.io", "subscribed": "false"}) == {"email": "a@x.io", "subscribed": "false"}
    assert without_resubscribe({"email": "a@x.io", "subscribed": None}) == {"email": "a@x.io", "subscribed": None}


# -- push_all --------------------------------------------------------------------------------------------


def instant(action: Action) -> Outcome:
    return Outcome(action, True, dict(action.send), 200, 1)


def test_one_worker_hands_outcomes_over_in_action_order() -> None:
    actions = [create(f"u{i:03d}@example.com") for i in range(200)]
    seen: list[str] = []

    push_all(actions, instant, 1, lambda outcome: seen.append(outcome.action.key))

    assert seen == [a.key for a in actions]


def test_outcomes_are_handed_over_on_the_calling_thread(make: Factory) -> None:
    h = make()
    actions = [create(f"u{i:02d}@example.com", firstName=f"N{i}") for i in range(40)]
    caller = threading.get_ident()
    handed: list[tuple[str, int]] = []
    workers: set[int] = set()

    def execute(action: Action) -> Outcome:
        workers.add(threading.get_ident())
        return h.pusher.execute(action)

    push_all(actions, execute, 4, lambda outcome: handed.append((outcome.action.key, threading.get_ident())))

    assert sorted(key for key, _ in handed) == [a.key for a in actions]
    assert {ident for _, ident in handed} == {caller}
    assert caller not in workers
    assert len(h.emulator.contacts()) == 40
    assert h.emulator.stats()["requests"] == 40


def test_should_stop_stops_taking_actions_and_records_those_in_flight() -> None:
    actions = [create(f"u{i:03d}@example.com") for i in range(100)]
    executed: list[str] = []
    handed: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def execute(action: Action) -> Outcome:
        with lock:
            executed.append(action.key)
        return instant(action)

    def on_outcome(outcome: Outcome) -> None:
        handed.append(outcome.action.key)
        stop.set()

    push_all(actions, execute, 2, on_outcome, should_stop=stop.is_set)

    assert 1 <= len(executed) <= 4  # what was queued when the first outcome came back
    assert sorted(handed) == sorted(executed)


def test_a_stop_before_the_start_runs_nothing() -> None:
    executed: list[Action] = []

    def execute(action: Action) -> Outcome:
        executed.append(action)
        return instant(action)

    push_all([create()], execute, 4, lambda o: None, should_stop=lambda: True)

    assert executed == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_refused_key_stops_the_run_after_at_most_one_request_per_worker(make: Factory, concurrency: int) -> None:
    h = make(api_key="wrong")
    handed: list[Outcome] = []

    with pytest.raises(AuthError):
        push_all([create(f"u{i}@example.com") for i in range(50)], h.pusher.execute, concurrency, handed.append)

    assert 1 <= h.emulator.stats()["requests"] <= concurrency
    assert handed == []


def test_a_key_revoked_mid_run_keeps_what_was_confirmed_and_sends_no_more(make: Factory) -> None:
    h = make(script=[None, None, None, (401, {})])
    actions = [create(f"u{i}@example.com") for i in range(10)]
    handed: list[Outcome] = []

    with pytest.raises(AuthError):
        push_all(actions, h.pusher.execute, 1, handed.append)

    assert sorted(o.action.key for o in handed) == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert all(o.ok for o in handed)
    assert h.transport.calls == 4
