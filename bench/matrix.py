"""The rate-budget matrix of ``make bench``: bulksync at default settings against every limiter the
emulator offers, at 60, 300 and 700 ms answers (+-30%), beside a neighbour, and through an outage.

Each run is ``bulksync sync`` as its own process against the emulator on a loopback socket, with no
``--rate-limit`` and no ``--concurrency``: what a new user gets. Targets (issue 12): >= 9.7 writes/s
and <= 0.5% 429s in every cell; with a neighbour at 3/s, <= 1% of its requests answered 429 and
bulksync >= 85% of the 7/s left; a 40 s outage rides through with 0 failed rows, exit 0, and <= 60
requests sent during it; an unchanged re-run sends no write. The neighbour runs beside each limiter,
and one more column adds network jitter on the way in (no target: what a sliding log allows then).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.generate import contacts, write
from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.emulator.limiter import ALGORITHMS

LATENCIES_MS = (60, 300, 700)
SPREAD = 0.3  # answers take latency x (1 +- SPREAD), uniformly
# The emulator's latency is the server's: requests reach its limiter when sent. A network adds a
# random delay on the way in too, so requests sent a second apart may arrive closer: one column more.
ARRIVAL = (300, 60)  # answers in 300 ms, and each request on the way in for 0..60 ms
LIMIT = 10


def answers_in(latency_ms: float, arrival_jitter_ms: float = 0.0) -> Faults:
    """``latency_ms`` +-30%: the emulator adds ``latency`` plus a uniform 0..``jitter``; and a uniform
    0..``arrival_jitter_ms`` before a request reaches the limiter."""
    return Faults(latency_ms=latency_ms * (1 - SPREAD), jitter_ms=latency_ms * 2 * SPREAD,
                  arrival_jitter_ms=arrival_jitter_ms)


def run_sync(emulator: LoopsEmulator, folder: Path, source: Path) -> tuple[int, dict[str, Any]]:
    """``bulksync sync SOURCE`` at default settings against ``emulator`` on a socket: exit status, summary."""
    with EmulatorServer(emulator) as server:
        env = {**os.environ, "LOOPS_API_KEY": emulator.api_key, "LOOPS_BASE_URL": server.url}
        done = subprocess.run(
            [sys.executable, "-m", "bulksync", "sync", str(source), "--state", str(folder / "state.db"),
             "--report", str(folder / "report.csv"), "--summary-json", str(folder / "summary.json"), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=1800, check=False,
        )
    if done.returncode not in (0, 1):
        raise SystemExit(f"bulksync exited {done.returncode}:\n{done.stderr}")
    return done.returncode, json.loads((folder / "summary.json").read_text())


def fresh(name: str, work: Path, changes: int) -> tuple[Path, Path]:
    folder = work / f"matrix-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("state.db*"):
        old.unlink()
    return folder, write(contacts(0, changes, 2), folder / "contacts.csv")


def team(algorithm: str, faults: Faults, background_rps: float = 0.0) -> LoopsEmulator:
    emulator = LoopsEmulator(api_key="bench-key", rate_limit=LIMIT, rate_algorithm=algorithm, faults=faults,
                             background_rps=background_rps, seed=1)
    for n in range(2):
        emulator.add_property(f"prop{n}", "string")
    return emulator


def sustained(emulator: LoopsEmulator) -> float:
    """Writes a second between the first and the last write Loops accepted (start-up and plan excluded)."""
    arrivals = [entry["at"] for entry in emulator.request_log()
                if entry["path"].startswith("/v1/contacts/") and "properties" not in entry["path"]
                and entry["status"] < 300]
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


def cell(algorithm: str, latency_ms: int, changes: int, work: Path, arrival_jitter_ms: int = 0) -> dict[str, Any]:
    folder, source = fresh(f"{algorithm}-{latency_ms}-{arrival_jitter_ms}", work, changes)
    emulator = team(algorithm, answers_in(latency_ms, arrival_jitter_ms))
    status, summary = run_sync(emulator, folder, source)
    stats = emulator.stats()
    return {"algorithm": algorithm, "latency_ms": latency_ms, "arrival_jitter_ms": arrival_jitter_ms,
            "changes": changes, "exit": status,
            "failed": summary["failed"], "requests": stats["requests"], "rate_limited": stats["rate_limited"],
            "share_429": round(stats["rate_limited"] / max(1, stats["requests"]), 4),
            "sustained_writes_per_s": round(sustained(emulator), 2)}


def neighbour(changes: int, work: Path, algorithm: str = "sliding-log") -> dict[str, Any]:
    """The team's own product sends 3 requests a second throughout; bulksync should take the rest."""
    folder, source = fresh("neighbour", work, changes)
    emulator = team(algorithm, answers_in(60), background_rps=3.0)
    status, summary = run_sync(emulator, folder, source)
    background = emulator.stats()["background"]
    rate = sustained(emulator)
    return {"algorithm": algorithm, "changes": changes, "exit": status, "failed": summary["failed"],
            "neighbour_requests": background["requests"], "neighbour_429": background["rate_limited"],
            "neighbour_share_429": round(background["rate_limited"] / max(1, background["requests"]), 4),
            "sustained_writes_per_s": round(rate, 2), "share_of_what_is_left": round(rate / (LIMIT - 3.0), 3)}


def outage(changes: int, work: Path, *, after_s: float = 10.0, seconds: float = 40.0) -> dict[str, Any]:
    """Loops answers 500 to everything for ``seconds``, ``after_s`` into the run."""
    folder, source = fresh("outage", work, changes)
    emulator = team("sliding-log", answers_in(60))
    emulator.start_outage(seconds, "500", after=after_s)
    status, summary = run_sync(emulator, folder, source)
    stats = emulator.stats()
    return {"changes": changes, "outage_s": seconds, "exit": status, "failed": summary["failed"],
            "created": summary["created"], "requests_during_outage": stats["outage"],
            "duration_s": summary["duration_s"]}


def rerun(changes: int, work: Path) -> dict[str, Any]:
    """The same source twice: the second run must send no write."""
    folder, source = fresh("rerun", work, changes)
    emulator = team("sliding-log", Faults())
    run_sync(emulator, folder, source)
    before = emulator.stats()["writes"]
    status, summary = run_sync(emulator, folder, source)
    return {"changes": changes, "exit": status, "unchanged": summary["unchanged"],
            "writes": emulator.stats()["writes"] - before}


def run(work: Path, quick: bool) -> dict[str, Any]:
    size = 60 if quick else 300
    return {
        "cells": [cell(algorithm, latency, size, work) for algorithm in ALGORITHMS for latency in LATENCIES_MS]
        + [cell(algorithm, ARRIVAL[0], size, work, ARRIVAL[1]) for algorithm in ALGORITHMS],
        "neighbours": [neighbour(size, work, algorithm) for algorithm in ALGORITHMS],
        "outage": outage(150 if quick else 500, work, seconds=10.0 if quick else 40.0),
        "rerun": rerun(size, work),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = ["**Rate budget** (default settings; 10/s limit; each cell "
             f"{results['cells'][0]['changes']} contacts; answers +-30%)", "",
             "| limiter | " + " | ".join(f"{ms} ms: writes/s, 429s" for ms in LATENCIES_MS)
             + f" | {ARRIVAL[0]} ms, 0-{ARRIVAL[1]} ms on the way in |",
             "|---|" + "---:|" * (len(LATENCIES_MS) + 1)]
    for algorithm in ALGORITHMS:
        row = [c for c in results["cells"] if c["algorithm"] == algorithm]
        lines.append(f"| {algorithm} | " + " | ".join(
            f"{c['sustained_writes_per_s']}, {c['share_429']:.1%}" + (f" ({c['failed']} failed)" if c["failed"] else "")
            for c in row) + " |")
    o, r = results["outage"], results["rerun"]
    lines += ["", "**Beside a neighbour** sending 3 requests/s throughout (60 ms answers)", "",
              "| limiter | its requests answered 429 | bulksync writes/s | share of the 7/s left |",
              "|---|---:|---:|---:|"]
    lines += [f"| {n['algorithm']} | {n['neighbour_429']} of {n['neighbour_requests']} "
              f"({n['neighbour_share_429']:.1%}) | {n['sustained_writes_per_s']} | {n['share_of_what_is_left']:.0%} |"
              for n in results["neighbours"]]
    lines += [
        "",
        f"- **{o['outage_s']:g} s outage** (every request 500) in a {o['changes']}-contact run: exit {o['exit']}, "
        f"{o['failed']} failed rows, {o['requests_during_outage']} requests sent during it, "
        f"{o['created']} created in {o['duration_s']:.0f} s.",
        f"- **Unchanged re-run** of {r['changes']} contacts: {r['writes']} writes.",
    ]
    return "\n".join(lines) + "\n"
