"""Fixtures of the emulator's tests: an emulator on the fake clock (no rate limit) and a client of it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bulksync.emulator import LoopsEmulator
from tests.helpers import FakeClock


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the in-process transport was told to make."""
    return []


@pytest.fixture
def emu(clock: FakeClock) -> LoopsEmulator:
    emulator = LoopsEmulator(rate_limit=0, clock=clock, seed=7)
    emulator.add_list("news", "Newsletter")
    emulator.add_list("beta", "Beta testers", is_public=False)
    return emulator


@pytest.fixture
def client(emu: LoopsEmulator, sleeps: list[float]) -> Iterator[httpx.Client]:
    transport = emu.transport(sleep=sleeps.append)
    auth = {"Authorization": "Bearer test-key"}
    with httpx.Client(transport=transport, base_url="http://loops.test/api", headers=auth) as c:
        yield c
