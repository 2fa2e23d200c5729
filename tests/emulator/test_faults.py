"""The emulator's injected faults and latency, in-process on a fake clock."""

from __future__ import annotations

import httpx
import pytest

from bulksync.emulator import Faults, LoopsEmulator
from tests.helpers import FakeClock, api_create

AUTH = {"Authorization": "Bearer test-key"}




# -- faults and latency ----------------------------------------------------------------------------


def test_fail_rate_answers_500_json(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.configure(faults=Faults(fail_rate=1.0))
    response = api_create(client, email="ann@example.com")
    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "Internal server error"}
    assert emu.contacts() == []


def test_html_502_is_not_json(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.configure(faults=Faults(html_502_rate=1.0))
    response = client.get("/v1/api-key")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


@pytest.mark.parametrize(("share", "written"), [(1.0, True), (0.0, False)])
def test_drop_raises_a_transport_error_and_may_apply_the_write(
    client: httpx.Client, emu: LoopsEmulator, share: float, written: bool
) -> None:
    emu.configure(faults=Faults(drop_rate=1.0, drop_after_write_share=share))
    with pytest.raises(httpx.RemoteProtocolError):
        api_create(client, email="ann@example.com")
    assert (emu.contact("ann@example.com") is not None) is written
    assert emu.stats()["writes"] == int(written)
    assert emu.stats()["dropped"] == 1
    (entry,) = emu.request_log()
    assert entry["dropped"] is True
    emu.configure(faults=Faults())
    # The retry of a create whose response was lost meets a 409, as with Loops.
    assert api_create(client, email="ann@example.com").status_code == (409 if written else 200)


def test_fault_draws_are_reproducible_with_a_seed() -> None:
    def statuses(seed: int) -> list[int]:
        emulator = LoopsEmulator(rate_limit=0, faults=Faults(fail_rate=0.3, html_502_rate=0.2), seed=seed)
        return [emulator.handle("GET", "/v1/api-key", AUTH, b"").status for _ in range(200)]

    first = statuses(3)
    assert first == statuses(3)
    assert first != statuses(4)
    assert 40 <= first.count(500) <= 80
    assert 20 <= first.count(502) <= 60


def test_latency_jitter_and_spikes_go_through_the_injected_sleep(
    client: httpx.Client, emu: LoopsEmulator, sleeps: list[float]
) -> None:
    emu.configure(faults=Faults(latency_ms=100))
    client.get("/v1/api-key")
    assert sleeps == [pytest.approx(0.1)]
    sleeps.clear()
    emu.configure(faults=Faults(latency_ms=10, jitter_ms=20, spike_rate=0.5, spike_ms=1000))
    for _ in range(50):
        client.get("/v1/api-key")
    assert all(0.01 <= s <= 0.03 or 1.01 <= s <= 1.03 for s in sleeps)
    assert any(s > 1 for s in sleeps) and any(s < 1 for s in sleeps)


def test_arrival_jitter_delays_a_request_before_the_rate_limit_sees_it() -> None:
    """Two requests sent 1.0 s apart may reach a sliding log less than a second apart: the way in."""
    clock = FakeClock()
    emulator = LoopsEmulator(rate_limit=1, rate_algorithm="sliding-log", clock=clock, seed=3,
                             faults=Faults(arrival_jitter_ms=400))
    with httpx.Client(transport=emulator.transport(sleep=clock.sleep), base_url="http://loops.test/api",
                      headers=AUTH) as client:
        statuses, sent, arrived = [], [], []
        for _ in range(40):
            sent.append(clock())
            statuses.append(client.get("/v1/api-key").status_code)
            arrived.append(emulator.request_log()[-1]["at"])
            clock.sleep(sent[-1] + 1.0 - clock())  # the next one leaves 1.0 s after this one

    delays = [at - left for left, at in zip(sent, arrived, strict=True)]
    assert all(0 <= delay <= 0.4 for delay in delays) and len(set(delays)) > 30
    assert 429 in statuses  # one a second, but not always a second apart on arrival


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError):
        Faults(fail_rate=1.5)
    with pytest.raises(ValueError):
        Faults(fail_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError):
        Faults(latency_ms=-1)
