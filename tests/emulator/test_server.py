"""The emulator on a real loopback socket, its control endpoints, and the command that serves it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.emulator import cli as emulator_cli
from tests.helpers import api_create, api_find

AUTH = {"Authorization": "Bearer test-key"}
REPO_ROOT = Path(__file__).resolve().parents[2]






# -- over a real loopback socket -------------------------------------------------------------------


@pytest.fixture
def server(emu: LoopsEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emu) as running:
        yield running


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as c:
        yield c


def test_server_keeps_the_connection_alive(server: EmulatorServer, http: httpx.Client) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/api")
    local_ports = set()
    for n in range(5):
        response = api_create(http, email=f"user{n}@example.com")
        assert response.status_code == 200
        local_ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(local_ports) == 1
    assert len(api_find(http, email="user3@example.com")) == 1
    assert http.get("/v1/contacts/create").status_code == 405


def test_server_drop_is_a_transport_error(server: EmulatorServer, http: httpx.Client) -> None:
    server.emulator.configure(faults=Faults(drop_rate=1.0, drop_after_write_share=1.0))
    with pytest.raises(httpx.TransportError):
        api_create(http, email="ann@example.com")
    assert server.emulator.contact("ann@example.com") is not None
    server.emulator.configure(faults=Faults())
    assert api_create(http, email="bob@example.com").status_code == 200


def test_server_502_html_and_latency(server: EmulatorServer, http: httpx.Client) -> None:
    server.emulator.configure(faults=Faults(html_502_rate=1.0, latency_ms=50))
    started = time.monotonic()
    response = http.get("/v1/api-key")
    assert time.monotonic() - started >= 0.05
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert "502 Bad Gateway" in response.text


def test_server_control_endpoints(server: EmulatorServer, http: httpx.Client) -> None:
    root = server.url.removesuffix("/api")
    with httpx.Client(base_url=root, timeout=5) as control:  # no API key needed
        assert control.post("/_emulator/lists", json={"id": "vip", "name": "VIP"}).status_code == 200
        assert (
            control.post("/_emulator/properties", json={"name": "score", "type": "number"}).status_code == 200
        )
        seeded = [{"email": "ann@example.com", "score": 5, "mailingLists": {"vip": True}}]
        assert control.post("/_emulator/seed", json=seeded).status_code == 200
        assert (
            control.post("/_emulator/config", json={"rate_limit": 1, "faults": {"latency_ms": 1}}).status_code
            == 200
        )
        assert http.get("/v1/api-key").status_code == 200
        assert http.get("/v1/api-key").status_code == 429
        (contact,) = control.get("/_emulator/contacts").json()
        assert (contact["score"], contact["mailingLists"]) == (5, {"vip": True})
        stats = control.get("/_emulator/stats").json()
        assert (stats["requests"], stats["rate_limited"]) == (2, 1)
        assert [e["status"] for e in control.get("/_emulator/requests").json()] == [200, 429]
        assert server.emulator.rate_limit == 1
        assert server.emulator.faults == Faults(latency_ms=1)
        assert control.post("/_emulator/seed", json={"email": "x"}).status_code == 400
        for bad_config in ({"faults": {"nope": 1}}, {"strict_properties": "yes"}, {"rate_limit": "fast"}):
            assert control.post("/_emulator/config", json=bad_config).status_code == 400
        assert control.get("/api/_emulator/nothing").status_code == 404
        assert control.post("/_emulator/reset").status_code == 200
        assert control.get("/_emulator/contacts").json() == []


def test_server_reads_chunked_bodies(server: EmulatorServer, http: httpx.Client) -> None:
    chunks = iter([b'{"email": "ann@', b'example.com", "firstName": "Ann"}'])
    response = http.post("/v1/contacts/create", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert server.emulator.request_log()[0]["json"] == {"email": "ann@example.com", "firstName": "Ann"}


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_server_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError):
        EmulatorServer(host=host)


# -- CLI -------------------------------------------------------------------------------------------


def parse_cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    emulator_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults_and_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_cli()
    assert (args.host, args.port, args.api_key, args.rate_limit) == ("127.0.0.1", 8787, "test-key", 10.0)
    assert emulator_cli.run(parse_cli("--host", "0.0.0.0")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loopback" in captured.err and captured.err.count("\n") == 1


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "url"
    code = (
        "import argparse, sys; from bulksync.emulator import cli; p = argparse.ArgumentParser(); "
        "cli.add_arguments(p); sys.exit(cli.run(p.parse_args(sys.argv[1:])))"
    )
    argv = [sys.executable, "-c", code, "--port", "0", "--api-key", "k", "--ready-file", str(ready)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            deadline = time.monotonic() + 10
            while not ready.exists() or not ready.read_text().endswith("\n"):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            url = ready.read_text().strip()
            response = httpx.get(f"{url}/v1/api-key", headers={"Authorization": "Bearer k"}, timeout=5)
            assert response.status_code == 200
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert out == f"Loops emulator listening on {url} (api key: k)\n"
