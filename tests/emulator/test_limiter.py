"""The emulator's rate-limit algorithms on a fake clock: which request gets 429 when, and the headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from bulksync.emulator import EmulatorServer, LoopsEmulator
from bulksync.emulator.limiter import ALGORITHMS, make_limiter
from tests.helpers import FakeClock

AUTH = {"Authorization": "Bearer test-key"}
START = 1000.0  # a whole second: fixed and sliding-counter windows start at floor(now)

Answer = tuple[float, int, int]  # (time, status, x-ratelimit-remaining)


def team(algorithm: str, rate: float = 10, background_rps: float = 0.0) -> tuple[LoopsEmulator, FakeClock]:
    clock = FakeClock(START)
    return LoopsEmulator(rate_limit=rate, clock=clock, rate_algorithm=algorithm, background_rps=background_rps), clock


def play(emulator: LoopsEmulator, clock: FakeClock, schedule: Sequence[tuple[float, int]]) -> list[Answer]:
    """Send `count` requests at each `START + offset` of the schedule; every answer's status and remaining."""
    answers = []
    for offset, count in schedule:
        clock.now = START + offset
        for _ in range(count):
            response = emulator.handle("GET", "/v1/api-key", AUTH, b"")
            assert response.headers["x-ratelimit-limit"] == "10"
            answers.append((offset, response.status, int(response.headers["x-ratelimit-remaining"])))
    return answers


def ok(offset: float, *remaining: int) -> list[Answer]:
    return [(offset, 200, left) for left in remaining]


def limited(offset: float, count: int = 1) -> list[Answer]:
    return [(offset, 429, 0)] * count


BURST = ok(0.0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0) + limited(0.0)  # every algorithm starts with its whole budget


def test_the_default_is_the_sliding_log() -> None:
    assert LoopsEmulator().rate_algorithm == "sliding-log"
    assert LoopsEmulator(rate_algorithm="fixed-window").rate_algorithm == "fixed-window"


# -- one schedule, four answers: a burst of 11, then one request each half second ----------------------

SCHEDULE = [(0.0, 11), (0.5, 1), (1.0, 1), (1.5, 1)]


def test_token_bucket_refills_continuously_and_a_429_takes_no_token() -> None:
    emulator, clock = team("token-bucket")
    # 0.5 s refills 5 tokens; the capacity caps the bucket at 10.
    assert play(emulator, clock, SCHEDULE) == BURST + ok(0.5, 4) + ok(1.0, 8) + ok(1.5, 9)


def test_sliding_log_frees_a_slot_exactly_one_second_after_it_was_taken() -> None:
    emulator, clock = team("sliding-log")
    assert play(emulator, clock, SCHEDULE) == BURST + limited(0.5) + ok(1.0, 9) + ok(1.5, 8)


def test_fixed_window_starts_over_at_each_second_of_the_clock() -> None:
    emulator, clock = team("fixed-window")
    assert play(emulator, clock, SCHEDULE) == BURST + limited(0.5) + ok(1.0, 9) + ok(1.5, 8)


def test_sliding_counter_weighs_the_previous_window_by_what_is_left_of_it() -> None:
    emulator, clock = team("sliding-counter")
    # At 1.0 the previous window's 10 still weigh 10 * (1 - 0); at 1.5, 10 * 0.5 + 0 = 5: 4 left after this one.
    assert play(emulator, clock, SCHEDULE) == BURST + limited(0.5) + limited(1.0) + ok(1.5, 4)


# -- where the algorithms differ -------------------------------------------------------------------------


def test_sliding_log_allows_at_most_10_in_any_one_second_span() -> None:
    emulator, clock = team("sliding-log")
    schedule = [(k / 10, 1) for k in range(10)] + [(0.95, 1), (1.0, 1), (1.05, 1), (1.1, 1), (1.95, 1)]
    answers = play(emulator, clock, schedule)
    assert [status for _, status, _ in answers] == [200] * 10 + [429, 200, 429, 200, 200]
    # At 1.95 the requests up to 0.95 have left the span: 1.0, 1.1 and this one are in it.
    assert [left for _, _, left in answers] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 7]


def test_fixed_window_lets_20_through_across_a_window_boundary() -> None:
    emulator, clock = team("fixed-window")
    answers = play(emulator, clock, [(0.99, 10), (1.0, 10), (1.5, 1), (2.0, 1)])
    assert answers == ok(0.99, *range(9, -1, -1)) + ok(1.0, *range(9, -1, -1)) + limited(1.5) + ok(2.0, 9)


def test_fixed_window_counts_429s_and_the_sliding_log_does_not() -> None:
    for algorithm in ("fixed-window", "sliding-log"):
        emulator, clock = team(algorithm)
        play(emulator, clock, [(0.0, 10), (0.5, 30)])
        assert emulator.stats()["rate_limited"] == 30
    # Neither holds the 30 rejected requests against the next second.
    assert play(emulator, clock, [(1.0, 10)]) == ok(1.0, *range(9, -1, -1))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_client_pacing_at_the_limit_is_never_refused(algorithm: str) -> None:
    emulator, clock = team(algorithm)
    answers = play(emulator, clock, [(0.05 + k / 10, 1) for k in range(50)])
    assert {status for _, status, _ in answers} == {200}


@pytest.mark.parametrize(("algorithm", "admitted"), [
    ("token-bucket", 55),  # 1 request/s over the refill: the burst of 10 lasts the 5 s
    ("sliding-log", 50),
    ("fixed-window", 50),
    ("sliding-counter", 50),  # in each window the first request (previous 10 weigh 10) and no other is refused
])
def test_a_client_a_little_over_the_limit_gets_429s(algorithm: str, admitted: int) -> None:
    emulator, clock = team(algorithm)
    answers = play(emulator, clock, [(k / 11, 1) for k in range(55)])  # 11/s for 5 s
    assert sum(status == 200 for _, status, _ in answers) == admitted


def test_sliding_counter_remaining_is_what_the_estimate_leaves() -> None:
    emulator, clock = team("sliding-counter")
    play(emulator, clock, [(0.0, 10)])
    # At 1.25 the previous 10 weigh 7.5: requests are admitted at 7.5, 8.5 and 9.5 (under 10), not at 10.5.
    assert play(emulator, clock, [(1.25, 4)]) == ok(1.25, 2, 1, 0) + limited(1.25)
    # At 1.75: 10 * 0.25 + 3 = 5.5, so five more fit.
    assert play(emulator, clock, [(1.75, 6)]) == ok(1.75, 4, 3, 2, 1, 0) + limited(1.75)
    # Two windows later the counts are forgotten.
    assert play(emulator, clock, [(3.5, 1)]) == ok(3.5, 9)


def test_a_fractional_rate_keeps_its_mean() -> None:
    clock = FakeClock(START)
    emulator = LoopsEmulator(rate_limit=2.5, clock=clock)  # 2 requests per 0.8 s
    statuses = []
    for offset in (0.0, 0.0, 0.0, 0.79, 0.8, 0.8, 0.8):
        clock.now = START + offset
        response = emulator.handle("GET", "/v1/api-key", AUTH, b"")
        assert response.headers["x-ratelimit-limit"] == "2"
        statuses.append(response.status)
    assert statuses == [200, 200, 429, 429, 200, 200, 429]


# -- the team's other traffic ----------------------------------------------------------------------------

# Others send 4 requests/s, at START + 0.25, + 0.5, ...; bulksync sends 10 at 0, 10 at 1.0 and 4 at 1.5.
BACKGROUND = [(0.0, 10), (1.0, 10), (1.5, 4)]


@pytest.mark.parametrize(("algorithm", "answers", "background"), [
    # The others drain the bucket continuously: 10 - 4 = 6 tokens a second are left.
    ("token-bucket", ok(1.0, 5, 4, 3, 2, 1, 0) + limited(1.0, 4) + ok(1.5, 2, 1, 0) + limited(1.5),
     {"requests": 6, "rate_limited": 0}),
    # The others' requests at 0.25, 0.5 and 0.75 are refused; theirs at 1.0 takes a freed slot first.
    ("sliding-log", ok(1.0, *range(8, -1, -1)) + limited(1.0) + limited(1.5, 4), {"requests": 6, "rate_limited": 5}),
    ("fixed-window", ok(1.0, *range(8, -1, -1)) + limited(1.0) + limited(1.5, 4), {"requests": 6, "rate_limited": 5}),
    # At 1.0 the previous 10 weigh 10: theirs and ours are refused; at 1.25 and 1.5 theirs get in (7.5, 6).
    ("sliding-counter", limited(1.0, 10) + ok(1.5, 2, 1, 0) + limited(1.5), {"requests": 6, "rate_limited": 4}),
])
def test_background_traffic_shares_the_limit(
    algorithm: str, answers: list[Answer], background: dict[str, int]
) -> None:
    emulator, clock = team(algorithm, background_rps=4)
    assert play(emulator, clock, BACKGROUND) == ok(0.0, *range(9, -1, -1)) + answers
    assert emulator.stats()["background"] == background


@pytest.mark.parametrize(("algorithm", "admitted", "background_429s"), [
    ("token-bucket", 0, 49),  # 118 wanted in 5.9 s, 10 + 59 tokens supplied
    ("sliding-log", 0, 58),  # each freed slot is taken by the others' request arriving at that very moment
    ("fixed-window", 3, 61),  # at 5.0 the window starts afresh: 5.0, 5.1 and 5.2 get in before the others fill it
    ("sliding-counter", 0, 59),  # after the first window, every other one of theirs: 9 + 4 * 10 + 10 refused
])
def test_background_over_the_limit_leaves_little_and_gets_429s_itself(
    algorithm: str, admitted: int, background_429s: int
) -> None:
    emulator, clock = team(algorithm, background_rps=20)
    answers = play(emulator, clock, [(5.0 + k / 10, 1) for k in range(10)])
    assert sum(status == 200 for _, status, _ in answers) == admitted
    assert emulator.stats()["background"] == {"requests": 118, "rate_limited": background_429s}  # 20/s until 5.9


@pytest.mark.parametrize(("algorithm", "remaining"), [
    ("token-bucket", 9),  # the bucket refilled to capacity meanwhile
    ("sliding-log", 6),  # the others' 86399.33, 86399.67 and 86400.0 are in the last second
    ("fixed-window", 8),  # only their 86400.0 is in this second
    ("sliding-counter", 5),  # the previous window's 3 weigh 3 at its very end, plus their 86400.0
])
def test_background_alone_under_the_limit_is_never_refused_even_after_a_long_gap(
    algorithm: str, remaining: int
) -> None:
    emulator, clock = team(algorithm, background_rps=3)
    clock.now = START + 86_400.0  # a day later: counted, not replayed one by one
    assert emulator.stats()["background"] == {"requests": 259_200, "rate_limited": 0}
    assert play(emulator, clock, [(86_400.0, 2)]) == ok(86_400.0, remaining, remaining - 1)


def test_background_rps_changes_from_now_on() -> None:
    emulator, clock = team("sliding-log", background_rps=10)
    clock.now = START + 2.0
    emulator.configure(background_rps=0)
    assert emulator.stats()["background"] == {"requests": 20, "rate_limited": 0}
    # The others' last 10 requests (1.1 .. 2.0) fill the log until they leave it, one each 0.1 s.
    assert play(emulator, clock, [(2.0, 1), (2.15, 2), (2.35, 3)]) == (
        limited(2.0) + ok(2.15, 0) + limited(2.15) + ok(2.35, 1, 0) + limited(2.35)
    )


def test_unlimited_counts_background_and_refuses_nothing() -> None:
    emulator, clock = team("sliding-log", rate=0, background_rps=50)
    clock.now = START + 1.0
    response = emulator.handle("GET", "/v1/api-key", AUTH, b"")
    assert response.status == 200
    assert int(response.headers["x-ratelimit-remaining"]) >= 1000
    assert emulator.stats()["background"] == {"requests": 50, "rate_limited": 0}


# -- through httpx, on the emulator of conftest.py -------------------------------------------------------


def test_token_bucket_headers_and_429(client: httpx.Client, emu: LoopsEmulator, clock: FakeClock) -> None:
    emu.configure(rate_limit=10, rate_algorithm="token-bucket")
    remaining = []
    for _ in range(10):
        response = client.get("/v1/api-key")
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "10"
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == list(range(9, -1, -1))
    limited = client.get("/v1/api-key")
    assert limited.status_code == 429
    assert limited.json() == {"success": False, "message": "Rate limit exceeded."}
    assert limited.headers["x-ratelimit-remaining"] == "0"
    clock.sleep(0.1)  # refills one token; the 429 took none
    assert client.get("/v1/api-key").status_code == 200
    assert client.get("/v1/api-key").status_code == 429
    clock.sleep(60)  # capped at capacity
    statuses = [client.get("/v1/api-key").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert emu.stats()["rate_limited"] == 3


def test_background_traffic_shares_the_bucket(
    client: httpx.Client, emu: LoopsEmulator, clock: FakeClock
) -> None:
    emu.configure(rate_limit=10, background_rps=4, rate_algorithm="token-bucket")
    while client.get("/v1/api-key").status_code == 200:
        pass
    clock.sleep(1.0)
    statuses = [client.get("/v1/api-key").status_code for _ in range(7)]
    assert statuses == [200] * 6 + [429]
    emu.configure(background_rps=20)
    clock.sleep(5.0)  # others use more than the limit: the bucket stays empty
    assert client.get("/v1/api-key").status_code == 429


def test_auth_is_checked_before_the_rate_limit(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.configure(rate_limit=1)
    assert client.get("/v1/api-key").status_code == 200
    assert client.get("/v1/api-key", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/api-key").status_code == 429


def test_unlimited_still_sends_headers(client: httpx.Client) -> None:
    response = client.get("/v1/api-key")
    assert int(response.headers["x-ratelimit-limit"]) >= 1000
    assert int(response.headers["x-ratelimit-remaining"]) >= 1000


# -- configuration ---------------------------------------------------------------------------------------


def test_configure_switches_the_algorithm_with_a_full_budget() -> None:
    emulator, clock = team("token-bucket")
    play(emulator, clock, [(0.0, 10)])
    emulator.configure(rate_algorithm="fixed-window")
    assert (emulator.rate_algorithm, emulator.rate_limit) == ("fixed-window", 10)
    assert play(emulator, clock, [(0.0, 11)]) == BURST
    emulator.configure(rate_limit=20)
    assert emulator.rate_algorithm == "fixed-window"


@pytest.mark.parametrize("options", [
    {"rate_algorithm": "nope"}, {"rate_limit": -1}, {"background_rps": -1}, {"rate_limit": float("nan")},
    {"rate_limit": float("inf")}, {"background_rps": float("inf")},
])
def test_bad_settings_raise_and_change_nothing(options: dict[str, Any]) -> None:
    emulator, _ = team("sliding-counter")
    with pytest.raises(ValueError, match=r"rate algorithm 'nope'|0 or more"):
        emulator.configure(**options)
    assert (emulator.rate_algorithm, emulator.rate_limit, emulator.background_rps) == ("sliding-counter", 10, 0)
    with pytest.raises(ValueError, match="use token-bucket, sliding-log, fixed-window or sliding-counter"):
        make_limiter("leaky", 10, 0, FakeClock())


def test_config_control_endpoint_sets_and_shows_the_algorithm() -> None:
    with EmulatorServer(LoopsEmulator(rate_limit=0)) as server, httpx.Client(
        base_url=server.url.removesuffix("/api"), timeout=5
    ) as control:
        assert control.get("/_emulator/config").json()["rate_algorithm"] == "sliding-log"
        answer = control.post("/_emulator/config", json={"rate_limit": 5, "rate_algorithm": "token-bucket"})
        assert answer.status_code == 200
        settings = control.get("/_emulator/config").json()
        shown = (settings["rate_limit"], settings["rate_algorithm"], settings["background_rps"])
        assert shown == (5, "token-bucket", 0)
        assert settings["faults"]["fail_rate"] == 0
        for bad in ({"rate_algorithm": "nope"}, {"rate_algorithm": 3}, {"rate_limit": -2}):
            refused = control.post("/_emulator/config", json=bad)
            assert refused.status_code == 400, bad
        assert server.emulator.rate_algorithm == "token-bucket"
