"""Carry out planned actions against Loops with a small paced pool of workers.

Workers only talk HTTP; every outcome comes back to the calling thread, which alone writes state
and report, so SQLite never sees two writers and a stop request is honoured between actions.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulksync import logs
from bulksync.config import CreateVia, Sleep
from bulksync.errors import (
    ApiError,
    AuthError,
    ConflictError,
    NotFoundError,
    NotSent,
    RateLimited,
    RejectedError,
    RetriableError,
    StateError,
)
from bulksync.fields import LIST_PREFIX, payload_from_fields
from bulksync.loops.breaker import OutageBreaker
from bulksync.loops.inflight import InFlight
from bulksync.loops.retry import retry_policy
from bulksync.loops.throttle import RateLimiter
from bulksync.plan.actions import Action, unsubscribed
from bulksync.plan.requests import Sent, first_request, without_resubscribe
from bulksync.state.store import Tombstone, utc_now

if TYPE_CHECKING:  # annotations only: a dry run plans without loading httpx
    from tenacity import RetryCallState

    from bulksync.loops.client import LoopsClient

log = logging.getLogger("bulksync")

STOP_GRACE_S = 5.0
POLL_S = 0.1  # how often a wait for outcomes looks at the stop
NOT_SENT = "not sent: the run was stopped"
UNANSWERED = "no answer before the run stopped: it may or may not have been applied; the next run settles it"


@dataclass(slots=True)
class Outcome:
    """What happened to one action. ``sent`` is what Loops confirmed (``None`` when it failed)."""

    action: Action
    ok: bool
    sent: Sent | None
    http_status: int | None
    attempts: int
    error: str | None = None
    note: str | None = None
    exists: bool = False  # --mode create-only met a contact already in Loops and left it alone
    contact_id: str | None = None  # Loops' id for the contact, from the write's answer
    recreated: bool = False  # Loops had lost the contact: the update re-created it and the row went whole
    tombstone: Tombstone | None = None  # a delete: what Loops had, so a re-added row stays unsubscribed


@dataclass(slots=True)
class Done:
    """How an action ended well: what Loops now has from it, and what the state should learn."""

    sent: Sent | None
    status: int
    note: str | None = None
    contact_id: str | None = None
    recreated: bool = False
    tombstone: Tombstone | None = None


def contact_id(answer: Any) -> str | None:
    """The contact id a create or update answered with, if it did."""
    value = answer.get("id") if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value else None


def tombstone_of(action: Action, contact: Mapping[str, Any] | None) -> Tombstone:
    """What to remember of a contact about to be deleted: was it unsubscribed, which of the lists
    bulksync had put it on had it left. Without an answer from Loops, the state's own knowledge."""
    if contact is None:
        return Tombstone(action.key, utc_now(), action.before.get("subscribed") == "false")
    lists = contact.get("mailingLists")
    on_lists: Mapping[str, Any] = lists if isinstance(lists, dict) else {}
    ours = [name.removeprefix(LIST_PREFIX) for name, value in action.before.items()
            if name.startswith(LIST_PREFIX) and value == "true"]
    left = tuple(sorted(list_id for list_id in ours if not on_lists.get(list_id)))
    return Tombstone(action.key, utc_now(), contact.get("subscribed") is False, left)


class Pusher:
    """Executes one action: the right endpoint, paced, retried, with the 409 fallback."""

    def __init__(
        self,
        client: LoopsClient,
        limiter: RateLimiter,
        types: Mapping[str, str],
        *,
        max_retries: int,
        sleep: Sleep,
        create_via: CreateVia = "update",
        should_stop: Callable[[], bool] = lambda: False,
        create_only: bool = False,
        breaker: OutageBreaker | None = None,
        in_flight: InFlight | None = None,
        before_send: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.in_flight = in_flight
        self.limiter = limiter
        self.types = types
        self.max_retries = max_retries
        self.sleep = sleep
        # --mode create-only must learn that a contact exists (409) rather than update it (upsert).
        self.create_via: CreateVia = "create" if create_only else create_via
        self.create_only = create_only
        self._refused: AuthError | None = None
        self._should_stop = should_stop
        self._before_send = before_send  # raises StateError once the state can record no more
        self._halted = threading.Event()

    def halt(self) -> None:
        """Send nothing more, retries of requests in flight included (the state can record no more)."""
        self._halted.set()

    def _stopping(self) -> bool:
        return self._halted.is_set() or self._should_stop()

    def execute(self, action: Action) -> Outcome:
        if self._refused:  # the key is dead: no more requests, no retry storm
            raise self._refused
        attempts = [0]
        try:
            done = self._run(action, attempts)
        except AuthError as exc:
            self._refused = exc
            raise
        except ApiError as exc:  # rejected, retries spent, not sent, an answer that cannot be used, unanswered
            return Outcome(action, False, None, exc.status, attempts[0], error=str(exc))
        except Exception as exc:  # a bug on one row must not stop the run: that row fails, loudly
            log.exception("unexpected error on %s of %s", action.kind, action.key)
            return Outcome(action, False, None, None, attempts[0], error=f"internal error: {type(exc).__name__}: {exc}")
        return Outcome(action, True, done.sent, done.status, attempts[0], note=done.note, exists=done.sent is None,
                       contact_id=done.contact_id, recreated=done.recreated, tombstone=done.tombstone)

    def _run(self, action: Action, attempts: list[int]) -> Done:
        if action.kind == "refresh":
            return Done({}, 0)
        if action.kind == "delete":
            return self._delete(action, attempts)
        endpoint, sent = first_request(action, self.create_via)
        try:
            answer = self._send(self.client.create if endpoint == "create" else self.client.update, sent, attempts,
                                action)
        except ConflictError:
            if endpoint != "create":
                raise
            if self.create_only:
                return Done(None, 409, "already in Loops: left alone (--mode create-only)")
            sent = without_resubscribe(action.send)
            answer = self._send(self.client.update, sent, attempts, action)
            return Done(sent, 200, "already in Loops (409): updated without subscribed", contact_id(answer))
        new_id = contact_id(answer)
        if action.kind == "update" and action.loops_id and new_id and new_id != action.loops_id:
            return self._send_whole(action, attempts, sent, new_id)
        return Done(sent, 200, action.note, new_id)

    def _send_whole(self, action: Action, attempts: list[int], sent: Sent, new_id: str) -> Done:
        """The update was answered with another id: the contact had been deleted in Loops and the upsert
        has just re-created it from the changed fields alone. Send the rest of the row at once."""
        whole: Sent = {name: value for name, value in (action.whole or {}).items() if value is not None}
        whole.update({name: action.send[name] for name in action.identity if name in action.send})
        stays = "false" in (action.before.get("subscribed"), sent.get("subscribed"), whole.get("subscribed"))
        whole = unsubscribed(whole) if stays else without_resubscribe(whole)
        answer = self._send(self.client.update, whole, attempts, action)
        note = "deleted in Loops since the last sync: re-created and sent whole" + (
            ", kept unsubscribed" if stays else ""
        )
        return Done({**sent, **whole}, 200, note, contact_id(answer) or new_id, recreated=True)

    def _delete(self, action: Action, attempts: list[int]) -> Done:
        """Look the contact up first (what Loops has goes into its tombstone), then delete it."""
        key_field = action.identity[0] if action.identity else "email"
        try:
            found = self.call(lambda: self.client.find(**{key_field: action.key}), f"lookup of {action.key}",
                              attempts, action)
        except (NotFoundError, RejectedError):
            found = []  # the lookup could not tell: the tombstone keeps what the state knows
        contact = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None
        tombstone = tombstone_of(action, contact)
        try:
            self._send(self.client.delete, action.send, attempts, action)
        except NotFoundError:
            return Done(action.send, 404, "already gone from Loops", tombstone=tombstone)
        return Done(action.send, 200, None, tombstone=tombstone)

    def check_key(self) -> dict[str, Any]:
        """``GET /v1/api-key``, paced and retried like any request: a bad key raises AuthError."""
        return self.call(self.client.api_key, "the API key check", [0])  # type: ignore[no-any-return]

    def call(self, request: Callable[[], Any], what: str, attempts: list[int], action: Action | None = None) -> Any:
        """One request under the rate limit, retried by policy; ``attempts`` counts the tries sent."""

        counted = [0]  # tries that count against --max-retries: an outage's probes do not

        def once() -> Any:
            probe = self.breaker.before_request(self._stopping) if self.breaker else False
            self.limiter.acquire()
            if self._stopping():
                raise NotSent(NOT_SENT)
            try:
                self._before_send()  # an outage's probes get no answers to notice a lost state by
            except StateError as exc:
                self.halt()
                raise NotSent(f"not sent: {exc}") from None
            attempts[0] += 1
            counted[0] += 0 if probe else 1
            try:
                with self.in_flight.timing() if self.in_flight else nullcontext():
                    answer = request()
            except RateLimited:
                raise  # Loops answered: no outage
            except RetriableError:
                if self.breaker:
                    self.breaker.failed(probe)
                raise
            if self.breaker:
                self.breaker.succeeded(probe)
            return answer

        return retry_policy(self.max_retries, self.sleep, before_sleep=_log_retry(what, action), counted=counted)(once)

    def _send(self, endpoint: Callable[[dict[str, Any]], Any], send: Sent, attempts: list[int], action: Action) -> Any:
        body = payload_from_fields(send, self.types)
        return self.call(lambda: endpoint(body), f"{action.kind} of {action.key}", attempts, action)


def _log_retry(what: str, action: Action | None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        status = getattr(error, "status", None)
        log.warning(
            "retrying %s after attempt %d (%s); waiting %.1fs", what, state.attempt_number, error, wait_s,
            extra=logs.context(action.row if action else None, action.key if action else None, status,
                               state.attempt_number),
        )

    return before_sleep


class Workers:
    """A pool of daemon threads running ``execute`` on actions, grown as more are needed.

    Not a ThreadPoolExecutor: its atexit hook joins every worker, so one stuck in a request past
    the grace period would keep a stopped run alive; a daemon thread ends with the process.
    """

    def __init__(self, execute: Callable[[Action], Outcome], count: int) -> None:
        self._execute = execute
        self._queue: queue.SimpleQueue[tuple[Future[Outcome], Action] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.grow(count)

    def grow(self, count: int) -> None:
        """Have at least ``count`` workers (a pool never shrinks: an idle thread costs nothing)."""
        while len(self._threads) < count:
            thread = threading.Thread(target=self._work, name=f"bulksync_{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, action: Action) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._queue.put((future, action))
        return future

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            future, action = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                future.set_result(self._execute(action))
            except BaseException as exc:  # handed to the calling thread, which decides
                future.set_exception(exc)

    def shutdown(self, wait: bool) -> None:
        """Let the workers end once the queue is empty; ``wait`` joins them (never after a stop's grace)."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def push_all(
    actions: Iterable[Action],
    execute: Callable[[Action], Outcome],
    concurrency: int | Callable[[], int],
    on_outcome: Callable[[Outcome], None],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    grace_s: float = STOP_GRACE_S,
) -> None:
    """Run ``actions`` on ``concurrency`` workers, handing each outcome to ``on_outcome`` here.

    ``concurrency`` may be a function, asked before each action: the pool grows to what it says.

    Stops taking new actions once ``should_stop()`` is true or the key is refused. Actions in
    flight then get ``grace_s`` seconds to finish; one still unanswered after that is reported as
    failed with its fate unknown (nothing is recorded in state, so the next run settles it). Every
    wait here is short and looks at ``should_stop()``: requests that hang cannot keep a stop waiting.
    """
    auth_error: AuthError | None = None
    workers = concurrency if callable(concurrency) else lambda: concurrency
    pool = Workers(execute, workers())
    pending: dict[Future[Outcome], tuple[int, Action]] = {}  # position, to settle in order
    stopped_at: float | None = None

    def settle(done: Iterable[Future[Outcome]]) -> None:
        nonlocal auth_error
        for future in sorted(done, key=lambda f: pending[f][0]):
            del pending[future]
            try:
                on_outcome(future.result())
            except AuthError as exc:
                auth_error = auth_error or exc

    def settle_some() -> bool:
        """Settle what finished within a short wait; False once a stop's grace period is over."""
        nonlocal stopped_at
        timeout = POLL_S
        if should_stop():
            stopped_at = stopped_at or time.monotonic()
            timeout = min(timeout, stopped_at + grace_s - time.monotonic())
            if timeout <= 0:
                return False
        settle(wait(pending, timeout=timeout, return_when=FIRST_COMPLETED).done)
        return True

    try:
        upcoming = iter(actions)
        position = 0
        # Stop before taking the next action, not after: one taken and dropped would be in no report.
        while not (should_stop() or auth_error) and (action := next(upcoming, None)) is not None:
            size = workers()
            pool.grow(size)
            pending[pool.submit(action)] = (position, action)
            position += 1
            while len(pending) >= size * 2 and not should_stop() and settle_some():
                pass
        while pending and settle_some():
            pass
        for future, (_, action) in sorted(pending.items(), key=lambda item: item[1][0]):
            if future.cancel():  # still queued: it never starts
                on_outcome(Outcome(action, False, None, None, 0, error=NOT_SENT))
            else:
                on_outcome(Outcome(action, False, None, None, 1, error=UNANSWERED))
    finally:
        for future in pending:
            future.cancel()  # after an error here, nothing queued is sent
        pool.shutdown(wait=not pending)
    if auth_error:
        raise auth_error
