"""Carry out planned actions against Loops with a small paced pool of workers.

Workers only talk HTTP; every outcome comes back to the calling thread, which alone writes state
and report, so SQLite never sees two writers and a stop request is honoured between actions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bulksync import logs
from bulksync.config import CreateVia, Sleep
from bulksync.errors import AuthError, ConflictError, NotFoundError, NotSent, RejectedError, RetriableError
from bulksync.fields import payload_from_fields
from bulksync.loops.retry import retry_policy
from bulksync.loops.throttle import RateLimiter
from bulksync.plan.actions import Action
from bulksync.plan.requests import Sent, first_request, without_resubscribe

if TYPE_CHECKING:  # annotations only: a dry run plans without loading httpx
    from tenacity import RetryCallState

    from bulksync.loops.client import LoopsClient

log = logging.getLogger("bulksync")

STOP_GRACE_S = 5.0
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
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.types = types
        self.max_retries = max_retries
        self.sleep = sleep
        # --mode create-only must learn that a contact exists (409) rather than update it (upsert).
        self.create_via: CreateVia = "create" if create_only else create_via
        self.create_only = create_only
        self._refused: AuthError | None = None
        self._should_stop = should_stop

    def execute(self, action: Action) -> Outcome:
        if self._refused:  # the key is dead: no more requests, no retry storm
            raise self._refused
        attempts = [0]
        try:
            sent, status, note = self._run(action, attempts)
        except AuthError as exc:
            self._refused = exc
            raise
        except (RejectedError, RetriableError, NotSent) as exc:
            return Outcome(action, False, None, exc.status, attempts[0], error=str(exc))
        except Exception as exc:  # a bug on one row must not stop the run: that row fails, loudly
            log.exception("unexpected error on %s of %s", action.kind, action.key)
            return Outcome(action, False, None, None, attempts[0], error=f"internal error: {type(exc).__name__}: {exc}")
        return Outcome(action, True, sent, status, attempts[0], note=note, exists=sent is None)

    def _run(self, action: Action, attempts: list[int]) -> tuple[Sent | None, int, str | None]:
        if action.kind == "refresh":
            return {}, 0, None
        endpoint, sent = first_request(action, self.create_via)
        try:
            self._send({"create": self.client.create, "update": self.client.update,
                        "delete": self.client.delete}[endpoint], sent, attempts, action)
        except NotFoundError:
            if endpoint != "delete":
                raise
            return sent, 404, "already gone from Loops"
        except ConflictError:
            if endpoint != "create":
                raise
            if self.create_only:
                return None, 409, "already in Loops: left alone (--mode create-only)"
            sent = without_resubscribe(action.send)
            self._send(self.client.update, sent, attempts, action)
            return sent, 200, "already in Loops (409): updated without subscribed"
        return sent, 200, None

    def check_key(self) -> dict[str, Any]:
        """``GET /v1/api-key``, paced and retried like any request: a bad key raises AuthError."""
        return self.call(self.client.api_key, "the API key check", [0])  # type: ignore[no-any-return]

    def call(self, request: Callable[[], Any], what: str, attempts: list[int], action: Action | None = None) -> Any:
        """One request under the rate limit, retried by policy; ``attempts`` counts the tries sent."""

        def once() -> Any:
            self.limiter.acquire()
            if self._should_stop():
                raise NotSent("not sent: the run was stopped")
            attempts[0] += 1
            return request()

        return retry_policy(self.max_retries, self.sleep, before_sleep=_log_retry(what, action))(once)

    def _send(self, endpoint: Callable[[dict[str, Any]], Any], send: Sent, attempts: list[int], action: Action) -> None:
        body = payload_from_fields(send, self.types)
        self.call(lambda: endpoint(body), f"{action.kind} of {action.key}", attempts, action)


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


def push_all(
    actions: Iterable[Action],
    execute: Callable[[Action], Outcome],
    concurrency: int,
    on_outcome: Callable[[Outcome], None],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    grace_s: float = STOP_GRACE_S,
) -> None:
    """Run ``actions`` on ``concurrency`` workers, handing each outcome to ``on_outcome`` here.

    Stops taking new actions once ``should_stop()`` is true or the key is refused. Actions in
    flight then get ``grace_s`` seconds to finish; one still unanswered after that is reported as
    failed with its fate unknown (nothing is recorded in state, so the next run settles it).
    """
    auth_error: AuthError | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bulksync")
    pending: dict[Future[Outcome], tuple[int, Action]] = {}  # position, to settle in order

    def settle(done: Iterable[Future[Outcome]]) -> None:
        nonlocal auth_error
        for future in sorted(done, key=lambda f: pending[f][0]):
            del pending[future]
            try:
                on_outcome(future.result())
            except AuthError as exc:
                auth_error = auth_error or exc

    try:
        for position, action in enumerate(actions):
            if should_stop() or auth_error:
                break
            pending[pool.submit(execute, action)] = (position, action)
            if len(pending) >= concurrency * 2:
                settle(wait(pending, return_when=FIRST_COMPLETED).done)
        settle(wait(pending, timeout=grace_s if should_stop() else None).done)
        for _, action in sorted(pending.values(), key=lambda item: item[0]):
            on_outcome(Outcome(action, False, None, None, 1, error=UNANSWERED))
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)
    if auth_error:
        raise auth_error
