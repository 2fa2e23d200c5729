"""Outages: a span of the emulator's clock in which every API request fails the same way.

Loops has had a 38-minute database outage and hours of intermittent 500s. During an emulated outage
nothing behind Loops' edge answers: requests are failed before the API key and the rate limit are
looked at, so they consume no budget and their answers carry no rate-limit headers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bulksync.emulator.faults import bad_gateway_response, dropped_response
from bulksync.emulator.wire import EmulatorResponse, error_response

OUTAGE_KINDS = ("500", "502", "drop", "hang")
"""500: a JSON 500; 502: a load balancer's HTML page; drop: the connection closes without an answer;
hang: no answer until the outage ends (or the client's timeout fires), then the connection closes."""
MAX_HANG_S = 600.0
"""The longest a hung request waits when the outage has no end: no client waits longer than that."""


def check_kind(kind: Any) -> str:
    """`kind` if it is an outage kind; ValueError naming the choices otherwise."""
    if kind not in OUTAGE_KINDS:
        raise ValueError(f"unknown outage kind {kind!r}: use {', '.join(OUTAGE_KINDS[:-1])} or {OUTAGE_KINDS[-1]}")
    return str(kind)


@dataclass(frozen=True)
class Outage:
    """Every API request arriving in [starts_at, ends_at) of the emulator's clock fails as `kind` says."""

    starts_at: float
    ends_at: float = math.inf
    kind: str = "500"

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if not self.ends_at >= self.starts_at:  # written so that NaN fails too
            raise ValueError("an outage cannot end before it starts")

    @classmethod
    def starting(cls, now: float, seconds: float | None, kind: str = "500", after: float = 0.0) -> Outage:
        """The outage that starts `after` seconds from `now` and lasts `seconds` (None: until ended)."""
        if not after >= 0 or (seconds is not None and not seconds >= 0):
            raise ValueError("outage seconds and start must be 0 or more")
        starts_at = now + after
        return cls(starts_at, math.inf if seconds is None else starts_at + seconds, kind)

    def active(self, now: float) -> bool:
        """Whether a request arriving at `now` fails."""
        return self.starts_at <= now < self.ends_at

    def response(self, now: float) -> EmulatorResponse:
        """The failed answer to a request arriving at `now`, during the outage."""
        if self.kind == "502":
            return bad_gateway_response()
        if self.kind == "drop":
            return dropped_response()
        if self.kind == "hang":
            wait_s = min(self.ends_at - now, MAX_HANG_S)
            return EmulatorResponse(0, {}, b"", drop=True, hang=True, delay_s=wait_s)
        return error_response(500, "Internal server error")

    def describe(self, now: float) -> dict[str, Any]:
        """The outage as the control endpoint shows it: times in seconds from now, None for no end."""
        return {
            "active": self.active(now),
            "kind": self.kind,
            "starts_in": max(0.0, self.starts_at - now),
            "ends_in": None if math.isinf(self.ends_at) else max(0.0, self.ends_at - now),
        }
