"""A whole run beside the team's other traffic, on a fake clock, for every limiter the emulator has.

One worker, so the shared fake clock advances exactly as the pacing says (two workers sleeping at
once would each add their sleep to it). The neighbour sends 3 requests a second evenly throughout.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.emulator.limiter import ALGORITHMS
from bulksync.sync import run_sync
from tests.helpers import API_KEY, FakeClock, run_config

CONTACTS = 300
NEIGHBOUR_RPS = 3.0


SQUEEZED = pytest.mark.xfail(strict=True, reason=(
    "known gap (issue 12): on the fake clock both streams are exactly periodic, and a sliding counter refuses "
    "a request that lands right after another while the window is nearly full; at the 6.4/s bulksync paces "
    "at, ~13% of the neighbour's requests are refused (an even 5.95/s would be needed). With real timing "
    "(make bench) the same limiter refused 0 of 150"))


@pytest.mark.parametrize("algorithm", [
    pytest.param(name, marks=SQUEEZED) if name == "sliding-counter" else name for name in ALGORITHMS
])
def test_a_run_leaves_the_neighbour_its_share_and_takes_most_of_the_rest(workdir: Path, algorithm: str) -> None:
    random.seed(1)  # the retries' jitter: the same schedule every run
    clock = FakeClock()
    team = LoopsEmulator(api_key=API_KEY, rate_limit=10, clock=clock, seed=1, rate_algorithm=algorithm,
                         background_rps=NEIGHBOUR_RPS)
    runtime = Runtime(transport=team.transport(sleep=clock.sleep), clock=clock, sleep=clock.sleep)
    (workdir / "people.csv").write_text("email\n" + "".join(f"user{n}@example.com\n" for n in range(CONTACTS)))
    started = clock()

    result = run_sync(run_config("people.csv", concurrency=1), runtime)

    elapsed = clock() - started
    neighbour = team.stats()["background"]
    assert (result.summary.created, result.summary.failed) == (CONTACTS, 0)
    assert neighbour["rate_limited"] <= 0.01 * neighbour["requests"], neighbour  # its mail is not refused
    assert CONTACTS / elapsed >= 0.85 * (10 - NEIGHBOUR_RPS)  # and bulksync takes most of what is left
