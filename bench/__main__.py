"""``make bench``: measure plan speed and push efficiency, print a Markdown table, save JSON.

Set BENCH_ROWS (default "100000,1000000") to choose plan sizes; BENCH_SKIP_PUSH=1 to measure plans only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.generate import Shape, contacts, versions, write
from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.sync import record_baseline

WORK = Path(".bench")


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one bulksync command run as its own process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode)\n"
        "sys.stderr.write(p.stdout + p.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True,
                          env=env, check=True)
    wall, rss, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n{done.stderr}")
    return float(wall), float(rss), done.stderr


def plan_speed(rows: int) -> dict[str, float | int]:
    folder = WORK / f"plan-{rows}"
    shape = Shape(rows=rows, changed=0.01, new=0.005, missing=0.005)
    previous, current = versions(shape)
    write(previous, folder / "previous.csv")
    source = write(current, folder / "current.csv")
    state = folder / "state.db"
    state.unlink(missing_ok=True)
    started = time.perf_counter()
    record_baseline(folder / "previous.csv", state)
    baseline_s = time.perf_counter() - started
    wall, rss, _ = measure([
        sys.executable, "-m", "bulksync", "sync", str(source), "--dry-run", "--delete-missing",
        "--max-delete", "100%", "--state", str(state), "--report", str(folder / "report.csv"),
        "--summary-json", str(folder / "summary.json"),
    ])
    summary = json.loads((folder / "summary.json").read_text())
    return {"rows": rows, "wall_s": round(wall, 2), "peak_rss_mib": round(rss), "baseline_s": round(baseline_s, 2),
            "created": summary["created"], "updated": summary["updated"], "deleted": summary["deleted"],
            "unchanged": summary["unchanged"]}


def push_efficiency(changes: int, rate_limit: float, *, latency_ms: float = 0.0, jitter_ms: float = 0.0,
                    concurrency: int = 4, create_via: str = "create") -> dict[str, float | int]:
    """Push ``changes`` new contacts into an emulator limited to ``rate_limit`` (0: unlimited)."""
    folder = WORK / f"push-{changes}-{rate_limit:g}-{latency_ms:g}"
    source = write(contacts(0, changes, 4), folder / "contacts.csv")
    state = folder / "state.db"
    state.unlink(missing_ok=True)
    emulator = LoopsEmulator(api_key="bench-key", rate_limit=rate_limit,
                             faults=Faults(latency_ms=latency_ms, jitter_ms=jitter_ms))
    with EmulatorServer(emulator) as server:
        env = {**os.environ, "LOOPS_API_KEY": "bench-key", "LOOPS_BASE_URL": server.url}
        client_rate = rate_limit if rate_limit > 0 else 100_000
        wall, _, _ = measure([
            sys.executable, "-m", "bulksync", "sync", str(source), "--state", str(state),
            "--report", str(folder / "report.csv"), "--summary-json", str(folder / "summary.json"),
            "--rate-limit", f"{client_rate:g}", "--concurrency", str(concurrency), "--create-via", create_via,
            "--create-properties",
        ], env=env)
        stats = emulator.stats()
    summary = json.loads((folder / "summary.json").read_text())
    writes = summary["created"] + summary["updated"]
    return {"changes": changes, "rate_limit": rate_limit, "latency_ms": latency_ms, "jitter_ms": jitter_ms,
            "concurrency": concurrency, "writes": writes, "requests": summary["requests"],
            "rate_limited": stats["rate_limited"], "share_429": round(stats["rate_limited"] / summary["requests"], 4),
            "duration_s": summary["duration_s"], "writes_per_s": round(writes / summary["duration_s"], 2),
            "wall_s": round(wall, 2)}


def main() -> None:
    WORK.mkdir(exist_ok=True)
    sizes = [int(n) for n in os.environ.get("BENCH_ROWS", "100000,1000000").split(",")]
    results: dict[str, object] = {"plan": [plan_speed(n) for n in sizes]}
    lines = ["| rows | plan wall (s) | peak RSS (MiB) | creates | updates | deletes | unchanged |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["plan"]:  # type: ignore[union-attr]
        lines.append(f"| {r['rows']:,} | {r['wall_s']} | {r['peak_rss_mib']} | {r['created']:,} | "
                     f"{r['updated']:,} | {r['deleted']:,} | {r['unchanged']:,} |")
    table = "\n".join(lines)
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    (WORK / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
