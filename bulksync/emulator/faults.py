"""Injected failures and latency: what may go wrong with a request, drawn from a seeded generator."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from bulksync.emulator.wire import EmulatorResponse

_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Faults:
    """Failures and latency injected into API requests that passed auth and the rate limit."""

    fail_rate: float = 0.0
    html_502_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_write_share: float = 0.5
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    spike_rate: float = 0.0
    spike_ms: float = 0.0
    # The way in: a request reaches the rate limiter a random 0..N ms after it was sent. Networks add
    # this (the answer's latency above is the server's), and it lets two requests sent a second apart
    # arrive less than a second apart.
    arrival_jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.fail_rate, self.html_502_rate, self.drop_rate, self.spike_rate)
        if any(not 0.0 <= share <= 1.0 for share in (*shares, self.drop_after_write_share)):
            raise ValueError("fault rates and shares must be between 0 and 1")
        if self.fail_rate + self.html_502_rate + self.drop_rate > 1.0:
            raise ValueError("fail_rate + html_502_rate + drop_rate must not exceed 1")
        if min(self.latency_ms, self.jitter_ms, self.spike_ms, self.arrival_jitter_ms) < 0:
            raise ValueError("latencies must not be negative")


class Fault(enum.Enum):
    """What befalls one request."""

    NONE = enum.auto()
    DROP_BEFORE_WRITE = enum.auto()
    DROP_AFTER_WRITE = enum.auto()
    SERVER_ERROR = enum.auto()
    BAD_GATEWAY = enum.auto()


def draw_fault(faults: Faults, rng: random.Random) -> Fault:
    """The fault for the next request; it always takes two draws, so the sequence does not depend on the rates."""
    draw, after_write = rng.random(), rng.random()
    if draw < faults.drop_rate:
        applied = after_write < faults.drop_after_write_share
        return Fault.DROP_AFTER_WRITE if applied else Fault.DROP_BEFORE_WRITE
    draw -= faults.drop_rate
    if draw < faults.fail_rate:
        return Fault.SERVER_ERROR
    if draw - faults.fail_rate < faults.html_502_rate:
        return Fault.BAD_GATEWAY
    return Fault.NONE


def draw_delay(faults: Faults, rng: random.Random) -> float:
    """Seconds to wait before answering: the base latency, jitter and maybe a spike."""
    jitter = rng.uniform(0.0, faults.jitter_ms)
    spike = faults.spike_ms if rng.random() < faults.spike_rate else 0.0
    return (faults.latency_ms + jitter + spike) / 1000.0


def dropped_response() -> EmulatorResponse:
    """A connection dropped before the request reached the API."""
    return EmulatorResponse(0, {}, b"", drop=True)


def bad_gateway_response() -> EmulatorResponse:
    """A load balancer's 502: no JSON and no rate-limit headers."""
    return EmulatorResponse(502, {"content-type": "text/html"}, _BAD_GATEWAY_HTML)
