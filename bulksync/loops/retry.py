"""The retry policy, built in one place from configuration (tenacity)."""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bulksync.config import Sleep
from bulksync.errors import RetriableError

MAX_WAIT_S = 60.0


def wait_retry_after_or_backoff(initial: float = 0.5, maximum: float = 30.0) -> Callable[[RetryCallState], float]:
    """Honour ``Retry-After`` when the server sent one, else exponential backoff with jitter."""
    backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetriableError) and error.retry_after is not None:
            return min(error.retry_after, MAX_WAIT_S)
        return float(backoff(state))

    return wait


def retry_policy(
    max_retries: int,
    sleep: Sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    initial_wait: float = 0.5,
    counted: list[int] | None = None,
) -> Retrying:
    """Retry only what is worth retrying, ``max_retries`` times after the first try, then re-raise.

    With ``counted`` (the tries that count, kept by the caller), only those use up the retries: an
    outage's probes, made while the breaker holds the run, do not fail a row.
    """
    stop: Callable[[RetryCallState], bool] = stop_after_attempt(max_retries + 1)
    if counted is not None:
        stop = lambda state: counted[0] >= max_retries + 1  # noqa: E731 (a one-line tenacity stop)
    return Retrying(
        retry=retry_if_exception_type(RetriableError),
        stop=stop,
        wait=wait_retry_after_or_backoff(initial=initial_wait),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
