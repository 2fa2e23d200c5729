"""Fixtures of the HTTP layer's tests: a misbehaving server on 127.0.0.1, stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loops.servers import MisbehavingServer


@pytest.fixture
def hostile() -> Iterator[MisbehavingServer]:
    """Answers like Loops until a test routes a request to a trickle, a hang or a redirect."""
    with MisbehavingServer() as server:
        yield server
