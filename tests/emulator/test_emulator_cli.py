"""`bulksync emulator`'s new options: seeding, the rate algorithm, outages, and one-line refusals."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulksync.cli import main
from bulksync.emulator import LoopsEmulator
from bulksync.emulator.seeding import from_flags, read_seed_file

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = {
    "lists": [{"id": "vip", "name": "VIP", "isPublic": False}],
    "properties": [{"name": "score", "type": "number"}],
    "contacts": [
        {"email": "ann@example.com", "score": "5", "plan": "pro", "mailingLists": {"vip": True, "news": True}},
        {"id": "c-bob", "email": "bob@example.com", "subscribed": False},
    ],
}


def write_seed(folder: Path, content: Any, name: str = "seed.json") -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


# -- seeding, in-process ---------------------------------------------------------------------------------


def test_flags_and_a_seed_file_load_lists_properties_then_contacts(tmp_path: Path) -> None:
    emulator = LoopsEmulator(rate_limit=0)
    from_flags(["news:Weekly: the news", "beta:Beta"], ["plan:string"]).load_into(emulator)
    read_seed_file(write_seed(tmp_path, SEED)).load_into(emulator)

    handle = emulator.handle
    lists = handle("GET", "/v1/lists", {"Authorization": "Bearer test-key"}, b"").json()
    assert [(entry["id"], entry["name"], entry["isPublic"]) for entry in lists] == [
        ("news", "Weekly: the news", True), ("beta", "Beta", True), ("vip", "VIP", False)
    ]
    properties = handle("GET", "/v1/contacts/properties?list=custom", {"Authorization": "Bearer test-key"}, b"")
    assert [(p["key"], p["type"]) for p in properties.json()] == [("plan", "string"), ("score", "number")]
    ann = emulator.contact("ann@example.com")
    assert ann is not None
    assert (ann["score"], ann["plan"], ann["mailingLists"]) == (5, "pro", {"vip": True, "news": True})
    bob = emulator.contact("bob@example.com")
    assert bob is not None and (bob["id"], bob["subscribed"]) == ("c-bob", False)


def test_an_empty_seed_file_object_is_fine(tmp_path: Path) -> None:
    seed = read_seed_file(write_seed(tmp_path, {}))
    assert (seed.lists, seed.properties, seed.contacts) == ([], [], [])


# -- bad options: one line, exit 2, nothing served -------------------------------------------------------


def run_emulator(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["emulator", "--port", "0", *argv], out=io.StringIO(), err=io.StringIO())
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate-algorithm", "nope"],
     "unknown rate algorithm 'nope': use token-bucket, sliding-log, fixed-window or sliding-counter"),
    (["--rate-limit", "-1"], "rate_limit and background_rps must be 0 or more"),
    (["--list", "news"], "--list expects ID:NAME, such as news:Newsletter, not 'news'"),
    (["--list", ":News"], "--list expects ID:NAME"),
    (["--list", "news: "], "--list expects ID:NAME"),
    (["--property", "plan"], "--property expects NAME:TYPE with a TYPE of string, number, boolean or date, not 'plan'"),
    (["--property", "plan:text"], "not 'plan:text'"),
    (["--property", "Plan:string"], "--property: property 'Plan': Invalid property name 'Plan': names are camelCase."),
    (["--property", "plan:string", "--property", "plan:number"], "property 'plan': A property named 'plan' already"),
    (["--outage-at", "5"], "--outage-at needs --outage-for SECONDS"),
    (["--outage-for", "-1"], "--outage-for expects seconds (0 or more), not '-1'"),
    (["--outage-for", "soon"], "--outage-for expects seconds (0 or more), not 'soon'"),
    (["--outage-at", "nan", "--outage-for", "5"], "--outage-at expects seconds"),
    (["--outage-for", "5", "--outage-kind", "slow"], "unknown outage kind 'slow': use 500, 502, drop or hang"),
])
def test_bad_options_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run_emulator(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("bulksync emulator: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    ("[]", "a seed file holds a JSON object with lists, properties and contacts"),
    ({"list": []}, "unknown key 'list': a seed file has lists, properties and contacts"),
    ({"lists": {"id": "x"}}, "'lists' must be a list of JSON objects"),
    ({"lists": [{"id": "x"}]}, "lists[0] needs a string id and name, and an optional boolean isPublic"),
    ({"lists": [{"id": "x", "name": "X", "isPublic": "yes"}]}, "lists[0] needs"),
    ({"properties": [{"name": "plan", "type": "text"}]}, "properties[0] needs a string name and a type of string"),
    ({"properties": [{"name": "id", "type": "string"}]}, "property 'id': 'id' is a reserved property name."),
    ({"contacts": [{"email": "a@example.com"}, {"email": "nope"}]}, "contacts[1]: cannot seed {'email': 'nope'}"),
    ({"contacts": [{"email": "a@example.com", "mailingLists": {"gone": True}}]}, "Unknown mailing list 'gone'"),
    ({"contacts": ["a@example.com"]}, "'contacts' must be a list of JSON objects"),
])
def test_a_bad_seed_file_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: Any, message: str
) -> None:
    path = write_seed(tmp_path, content)
    status, out, err = run_emulator(capsys, "--seed-file", str(path))
    assert (status, out) == (2, "")
    assert err.startswith(f"bulksync emulator: {path}: ") and err.count("\n") == 1, err
    assert message in err


def test_an_unreadable_seed_file_is_one_line_naming_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert run_emulator(capsys, "--seed-file", str(missing)) == (
        2, "", f"bulksync emulator: {missing}: cannot read the seed file: No such file or directory\n"
    )
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"lists": [{"id": "caf\xe9", "name": "x"}]}')
    assert run_emulator(capsys, "--seed-file", str(latin))[2] == (
        f"bulksync emulator: {latin}: the seed file is not UTF-8 text\n"
    )


# -- the real command, as a process ------------------------------------------------------------------------


class Emulator:
    """`bulksync emulator` in a process of its own, its base URL read from its "listening" line."""

    def __init__(self, *argv: str, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "bulksync", "emulator", "--port", "0", "--api-key", "k", *argv]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def read_lines() -> None:  # a thread, so that waiting for the line can time out
            for line in stdout:
                lines.put(line)

        self._reader = threading.Thread(target=read_lines, daemon=True)
        self._reader.start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = ""
        assert line.startswith("Loops emulator listening on http://127.0.0.1:"), (line, self.stop())
        self.url = line.split()[4]
        self.root = self.url.removesuffix("/api")

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": "Bearer k"}, timeout=5)

    def control(self) -> httpx.Client:
        return httpx.Client(base_url=self.root, timeout=5)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then its exit status and stderr (empty after the first call)."""
        if self.process.stderr is None or self.process.stderr.closed:
            return self.process.returncode, ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)  # stdout is the reading thread's until its end
        assert self.process.stdout is not None and self.process.stderr is not None
        self.process.stdout.close()
        with self.process.stderr as stderr:  # at most a line or two
            return self.process.returncode, stderr.read()


@pytest.fixture
def spawned() -> Iterator[list[Emulator]]:
    started: list[Emulator] = []
    yield started
    for emulator in started:
        emulator.stop()


def test_the_command_starts_seeded_with_its_algorithm_and_a_scheduled_outage(
    tmp_path: Path, spawned: list[Emulator]
) -> None:
    write_seed(tmp_path, SEED)
    emulator = Emulator(
        "--list", "news:Newsletter", "--property", "plan:string", "--seed-file", "seed.json",
        "--rate-algorithm", "fixed-window", "--rate-limit", "5",
        "--outage-at", "3600", "--outage-for", "60", "--outage-kind", "drop",
        cwd=tmp_path,
    )
    spawned.append(emulator)
    with emulator.api() as api, emulator.control() as control:
        assert [entry["id"] for entry in api.get("/v1/lists").json()] == ["news", "vip"]
        custom = api.get("/v1/contacts/properties", params={"list": "custom"}).json()
        assert [(p["key"], p["type"]) for p in custom] == [("plan", "string"), ("score", "number")]
        ann = api.get("/v1/contacts/find", params={"email": "ann@example.com"})
        assert ann.json()[0]["mailingLists"] == {"vip": True, "news": True}
        assert ann.headers["x-ratelimit-limit"] == "5"
        settings = control.get("/_emulator/config").json()
        assert (settings["rate_algorithm"], settings["rate_limit"]) == ("fixed-window", 5)
        outage = control.get("/_emulator/outage").json()
        assert (outage["active"], outage["kind"]) == (False, "drop")
        assert 3590 < outage["starts_in"] <= 3600 and outage["ends_in"] - outage["starts_in"] == pytest.approx(60)
    assert emulator.stop() == (0, "")


def test_the_command_in_an_outage_from_its_start_until_ended(tmp_path: Path, spawned: list[Emulator]) -> None:
    emulator = Emulator("--outage-for", "3600", cwd=tmp_path)
    spawned.append(emulator)
    with emulator.api() as api, emulator.control() as control:
        assert api.get("/v1/api-key").status_code == 500
        assert control.delete("/_emulator/outage").json() == {"active": False, "requests": 1}
        answer = api.get("/v1/api-key")
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-limit"] == "10"
    assert emulator.stop() == (0, "")
