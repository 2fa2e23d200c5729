"""The emulator's outage switch: in-process on a fake clock, and through the control endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from bulksync.emulator import EmulatorServer, LoopsEmulator
from tests.helpers import FakeClock, wait_until

AUTH = {"Authorization": "Bearer test-key"}
START = 1000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def emu(clock: FakeClock) -> LoopsEmulator:
    return LoopsEmulator(rate_limit=10, clock=clock, seed=3)


@pytest.fixture
def client(emu: LoopsEmulator, clock: FakeClock) -> Iterator[httpx.Client]:
    transport = emu.transport(sleep=clock.sleep)
    with httpx.Client(transport=transport, base_url="http://loops.test/api", headers=AUTH, timeout=30) as c:
        yield c


def status(client: httpx.Client, **headers: str) -> int:
    return client.get("/v1/api-key", headers=headers).status_code


def test_an_outage_fails_every_request_with_500_then_ends(
    client: httpx.Client, emu: LoopsEmulator, clock: FakeClock
) -> None:
    emu.start_outage(40)
    answer = client.get("/v1/api-key")
    assert answer.status_code == 500
    assert answer.json() == {"success": False, "message": "Internal server error"}
    assert "x-ratelimit-limit" not in answer.headers  # nothing behind the edge answered
    assert status(client, Authorization="Bearer wrong") == 500  # before the key is looked at
    for _ in range(30):
        assert status(client) == 500
    assert emu.outage() == {"active": True, "kind": "500", "starts_in": 0.0, "ends_in": 40.0, "requests": 32}
    clock.now = START + 39.999
    assert status(client) == 500
    clock.now = START + 40.0
    # The outage took no rate budget: the whole burst of 10 is there.
    assert [status(client) for _ in range(11)] == [200] * 10 + [429]
    stats = emu.stats()
    assert (stats["requests"], stats["outage"], stats["by_status"]) == (44, 33, {"500": 33, "200": 10, "429": 1})
    log = emu.request_log()
    assert [entry["outage"] for entry in log] == [True] * 33 + [False] * 11
    assert emu.outage()["active"] is False


def test_an_outage_can_be_scheduled_and_ended_early(
    client: httpx.Client, emu: LoopsEmulator, clock: FakeClock
) -> None:
    emu.start_outage(10, after=5)
    assert emu.outage() == {"active": False, "kind": "500", "starts_in": 5.0, "ends_in": 15.0, "requests": 0}
    clock.now = START + 4.9
    assert status(client) == 200
    clock.now = START + 5.0
    assert status(client) == 500
    emu.end_outage()
    assert status(client) == 200
    assert emu.outage() == {"active": False, "requests": 1}


def test_an_outage_without_an_end_lasts_until_ended(
    client: httpx.Client, emu: LoopsEmulator, clock: FakeClock
) -> None:
    emu.start_outage()
    clock.now = START + 86_400
    assert status(client) == 500
    assert emu.outage()["ends_in"] is None
    emu.end_outage()
    assert status(client) == 200


def test_kinds_502_and_drop(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.start_outage(60, "502")
    answer = client.get("/v1/api-key")
    assert (answer.status_code, answer.headers["content-type"]) == (502, "text/html")
    emu.start_outage(60, "drop")  # replaces the 502 one
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/contacts/create", json={"email": "ann@example.com"})
    assert emu.contacts() == []  # the request never reached Loops
    assert emu.stats()["dropped"] == 1


def test_a_hang_times_out_at_the_clients_timeout_or_closes_when_the_outage_ends(
    client: httpx.Client, emu: LoopsEmulator, clock: FakeClock
) -> None:
    emu.start_outage(40, "hang")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/api-key", timeout=5)
    assert clock.slept == [5]  # waited for the client's timeout, on the fake clock
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/api-key", timeout=60)  # outlives the outage: the connection closes at its end
    assert clock.slept == [5, 35]
    assert clock.now == START + 40
    assert status(client) == 200


@pytest.mark.parametrize(
    ("seconds", "kind", "after"), [(-1, "500", 0), (10, "nope", 0), (10, "500", -5), (float("nan"), "500", 0)]
)
def test_bad_outages_raise(emu: LoopsEmulator, seconds: float, kind: str, after: float) -> None:
    with pytest.raises(ValueError):
        emu.start_outage(seconds, kind, after=after)
    assert emu.outage() == {"active": False, "requests": 0}


def test_reset_ends_the_outage(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.start_outage(60)
    assert status(client) == 500
    emu.reset()
    assert status(client) == 200
    assert emu.stats()["outage"] == 0


# -- over a real socket, through the control endpoint ----------------------------------------------------


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(LoopsEmulator(rate_limit=0)) as running:
        yield running


def test_outage_control_endpoint(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.url.removesuffix("/api"), timeout=5) as control, httpx.Client(
        base_url=server.url, headers=AUTH, timeout=5
    ) as api:
        assert control.get("/_emulator/outage").json() == {"active": False, "requests": 0}
        started = control.post("/_emulator/outage", json={"seconds": 40, "kind": "500"})
        assert started.status_code == 200
        assert started.json()["active"] is True and started.json()["kind"] == "500"
        assert 39 < started.json()["ends_in"] <= 40
        assert api.get("/v1/api-key").status_code == 500
        assert control.get("/_emulator/outage").json()["requests"] == 1
        assert control.delete("/_emulator/outage").json() == {"active": False, "requests": 1}
        assert api.get("/v1/api-key").status_code == 200
        scheduled = control.post("/_emulator/outage", json={"seconds": 5, "after": 3600}).json()
        assert scheduled["active"] is False and 3599 < scheduled["starts_in"] <= 3600
        assert api.get("/v1/api-key").status_code == 200
        assert control.post("/_emulator/outage").json()["ends_in"] is None  # no body: 500s until DELETE
        assert api.get("/v1/api-key").status_code == 500
        for bad in ({"kind": "nope"}, {"seconds": "forty"}, {"seconds": -1}, {"minutes": 3}, [40]):
            assert control.post("/_emulator/outage", json=bad).status_code == 400, bad
        assert control.delete("/_emulator/outage").status_code == 200


def test_a_hung_request_is_let_go_when_the_outage_is_ended(server: EmulatorServer) -> None:
    server.emulator.start_outage(kind="hang")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(f"{server.url}/v1/api-key", headers=AUTH, timeout=30)
        except httpx.TransportError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: server.emulator.outage()["requests"] == 1, "the request to hang", timeout=10)
    server.emulator.end_outage()
    caller.join(timeout=10)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.RemoteProtocolError)
    server.emulator.start_outage(kind="hang")
    try:
        with pytest.raises(httpx.ReadTimeout):  # and a client's own timeout ends a hang
            httpx.get(f"{server.url}/v1/api-key", headers=AUTH, timeout=0.2)
    finally:
        server.emulator.end_outage()  # lets the server's thread go
