"""retry_policy: what is retried, how often, how long it waits, and what is raised at the end."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from tenacity import RetryCallState

from bulksync.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetriableError,
)
from bulksync.loops.retry import MAX_WAIT_S, retry_policy


def failing(errors: list[Exception], result: str = "done") -> tuple[Callable[[], str], list[int]]:
    """A call that raises ``errors`` one by one, then returns ``result``; it counts its calls."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result

    return call, calls


def no_sleep(seconds: float) -> None:
    """A sleep that returns at once: for tests that do not look at the waits."""


@pytest.mark.parametrize("max_retries", [0, 1, 3, 6])
def test_gives_up_after_max_retries_plus_the_first_try(max_retries: int) -> None:
    waits: list[float] = []
    call, calls = failing([RetriableError("HTTP 500", 500)] * 10)

    with pytest.raises(RetriableError):
        retry_policy(max_retries, sleep=waits.append)(call)

    assert calls[0] == max_retries + 1
    assert len(waits) == max_retries


def test_reraises_the_last_error_itself() -> None:
    errors: list[Exception] = [RetriableError(f"HTTP 50{i}", 500 + i) for i in range(3)]
    call, _ = failing(errors)

    with pytest.raises(RetriableError) as raised:
        retry_policy(2, sleep=no_sleep)(call)

    assert raised.value is errors[-1]
    assert str(raised.value) == "HTTP 502"


def test_success_after_failures_returns_the_result() -> None:
    waits: list[float] = []
    call, calls = failing([RetriableError("timed out"), RateLimited("HTTP 429", 429)], result="ok")

    assert retry_policy(5, sleep=waits.append)(call) == "ok"
    assert calls[0] == 3
    assert len(waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        RejectedError("HTTP 400: bad", 400),
        ConflictError("HTTP 409", 409),
        NotFoundError("HTTP 404", 404),
        AuthError("refused"),
        ValueError("a bug, not a response"),
    ],
    ids=["400", "409", "404", "auth", "other"],
)
def test_only_retriable_errors_are_retried(error: Exception) -> None:
    waits: list[float] = []
    call, calls = failing([error])

    with pytest.raises(type(error)) as raised:
        retry_policy(5, sleep=waits.append)(call)

    assert raised.value is error
    assert calls[0] == 1
    assert waits == []


def test_rate_limited_is_retried() -> None:
    waits: list[float] = []
    call, calls = failing([RateLimited("HTTP 429", 429)] * 2)

    retry_policy(3, sleep=waits.append)(call)

    assert calls[0] == 3


def test_retry_after_is_honoured_exactly() -> None:
    waits: list[float] = []
    call, _ = failing(
        [RetriableError("HTTP 503", 503, retry_after=3.0), RateLimited("HTTP 429", 429, retry_after=0.25)]
    )

    retry_policy(3, sleep=waits.append)(call)

    assert waits == [3.0, 0.25]


def test_retry_after_of_zero_means_no_wait() -> None:
    waits: list[float] = []
    call, _ = failing([RateLimited("HTTP 429", 429, retry_after=0.0)])

    retry_policy(1, sleep=waits.append)(call)

    assert waits == [0.0]


def test_a_huge_retry_after_is_capped() -> None:
    waits: list[float] = []
    call, _ = failing([RateLimited("HTTP 429", 429, retry_after=3600.0)])

    retry_policy(1, sleep=waits.append)(call)

    assert waits == [MAX_WAIT_S]
    assert MAX_WAIT_S == 60.0


def backoff_waits(n: int, initial_wait: float = 0.5) -> list[float]:
    waits: list[float] = []
    call, _ = failing([RetriableError("HTTP 500", 500)] * (n + 1))
    with pytest.raises(RetriableError):
        retry_policy(n, sleep=waits.append, initial_wait=initial_wait)(call)
    return waits


def test_backoff_without_jitter_doubles_from_the_initial_wait_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)

    assert backoff_waits(8) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_adds_at_most_the_initial_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)

    assert backoff_waits(7) == [1.0, 1.5, 2.5, 4.5, 8.5, 16.5, 30.0]


def test_initial_wait_sets_the_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)

    assert backoff_waits(3, initial_wait=2.0) == [2.0, 4.0, 8.0]


def test_backoff_waits_grow_and_stay_within_bounds_with_real_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", random.Random(1234).uniform)
    schedules = [backoff_waits(6) for _ in range(50)]

    for waits in schedules:
        for attempt, wait in enumerate(waits):
            base = 0.5 * 2**attempt
            assert base <= wait <= base + 0.5
        assert all(later > earlier for earlier, later in itertools.pairwise(waits))
    assert len({waits[0] for waits in schedules}) > 1, "jitter must spread the first wait"


def test_before_sleep_sees_each_attempt_and_its_wait() -> None:
    seen: list[tuple[int, float, str]] = []

    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        seen.append((state.attempt_number, state.next_action.sleep, str(state.outcome.exception())))

    call, _ = failing([RetriableError("first", retry_after=1.0), RetriableError("second", retry_after=2.0)])
    retry_policy(4, sleep=no_sleep, before_sleep=before_sleep)(call)

    assert seen == [(1, 1.0, "first"), (2, 2.0, "second")]
