"""``make bench``: plan speed, push efficiency and the client's ceiling; a Markdown table and JSON.

Environment: BENCH_ROWS (default "100000,1000000") picks the plan sizes (and the PostgreSQL state's), BENCH_LARGE=1 adds
10,000,000; BENCH_JSONL_ROWS (default "1000000") the sizes of the JSONL-against-CSV plans (bench/jsonl.py);
BENCH_QUICK=1 shrinks the push runs (for a quick look, not for the README).
Results go to .bench/results.md and .bench/results.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import jsonl, matrix, pgstate
from bench.generate import Shape, contacts, versions, write
from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator
from bulksync.sync import record_baseline

WORK = Path(".bench")
API_KEY = "bench-key"
QUICK = os.environ.get("BENCH_QUICK") == "1"
WARM_RUNS = 1 if QUICK else 3
BENCH_START, BENCH_END = "<!-- bench -->", "<!-- /bench -->"


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command run as its own process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "w = time.perf_counter() - t\n"
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode)\n"
        "sys.stderr.write(p.stdout + p.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, env=env, check=True)
    wall, rss, code = done.stdout.split()
    if code not in ("0", "1"):
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n{done.stderr}")
    return float(wall), float(rss)


def bulksync(*args: str) -> list[str]:
    return [sys.executable, "-m", "bulksync", *args]


def plan_speed(rows: int, fmt: str = "csv") -> dict[str, Any]:
    """A dry run with deletes against a state holding the previous version of the file (as csv or jsonl)."""
    folder = WORK / f"plan-{rows}"
    previous, current = versions(Shape(rows=rows, changed=0.01, new=0.005, missing=0.005))
    write(previous, folder / "previous.csv")
    source = write(current, folder / f"current.{fmt}")
    state = folder / "state.db"
    for old in folder.glob("state.db*"):
        old.unlink()
    record_baseline(folder / "previous.csv", state)
    argv = bulksync("sync", str(source), "--dry-run", "--delete-missing", "--max-delete", "100%", "--state",
                    str(state), "--report", str(folder / "report.csv"), "--summary-json", str(folder / "summary.json"))
    # This machine's timings vary by a third from run to run: the median of three, and the highest peak.
    runs = sorted(measure(argv) for _ in range(WARM_RUNS))
    warm_s, warm_rss = runs[len(runs) // 2][0], max(rss for _, rss in runs)
    for snapshot in folder.glob("state.db.hashes-*"):
        snapshot.unlink()  # as after a run that changed more than the snapshot tracks
    cold_s, cold_rss = measure(argv)
    summary = json.loads((folder / "summary.json").read_text())
    return {"rows": rows, "wall_s": round(warm_s, 2), "wall_s_runs": [round(wall, 2) for wall, _ in runs],
            "peak_rss_mib": round(warm_rss),
            "cold_wall_s": round(cold_s, 2), "cold_peak_rss_mib": round(cold_rss),
            **{k: summary[k] for k in ("created", "updated", "deleted", "unchanged")}}


def push(name: str, changes: int, *, rate_limit: float, faults: Faults | None = None, concurrency: int = 32,
         create_via: str = "update", preseed: float = 0.0) -> dict[str, Any]:
    """Sync ``changes`` contacts into an emulator (``rate_limit`` 0: unlimited), ``preseed`` of them already there."""
    folder = WORK / f"push-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    source = write(contacts(0, changes, 4), folder / "contacts.csv")
    for old in folder.glob("state.db*"):
        old.unlink()
    emulator = LoopsEmulator(api_key=API_KEY, rate_limit=rate_limit, faults=faults or Faults(), seed=1,
                             rate_algorithm="token-bucket")  # the limiter these results were measured on
    for n in range(4):
        emulator.add_property(f"prop{n}", "string")
    emulator.seed({"email": f"user{i}@example.com", "subscribed": i % 5 != 0} for i in range(int(changes * preseed)))
    with EmulatorServer(emulator) as server:
        env = {**os.environ, "LOOPS_API_KEY": API_KEY, "LOOPS_BASE_URL": server.url}
        measure(bulksync("sync", str(source), "--state", str(folder / "state.db"), "--report",
                         str(folder / "report.csv"), "--summary-json", str(folder / "summary.json"),
                         "--rate-limit", f"{rate_limit or 100_000:g}", "--concurrency", str(concurrency),
                         "--create-via", create_via, "--no-progress"), env=env)
        stats = emulator.stats()
        arrivals = [r["at"] for r in emulator.request_log() if r["path"].startswith("/v1/contacts/")
                    and "properties" not in r["path"] and r["status"] != 429]
    summary = json.loads((folder / "summary.json").read_text())
    # Sustained: writes between the first and the last write's arrival, start-up and planning excluded.
    sustained = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    writes = summary["created"] + summary["updated"]
    write_requests = sum(n for endpoint, n in stats["by_endpoint"].items() if "/contacts/" in endpoint
                         and "properties" not in endpoint and "find" not in endpoint)
    return {"name": name, "changes": changes, "rate_limit": rate_limit, "concurrency": concurrency,
            "create_via": create_via, "preseeded": preseed, "writes": writes, "failed": summary["failed"],
            "requests": summary["requests"], "write_requests": write_requests,
            "requests_per_contact": round(write_requests / changes, 3), "rate_limited": stats["rate_limited"],
            "share_429": round(stats["rate_limited"] / max(1, summary["requests"]), 4),
            "duration_s": summary["duration_s"], "writes_per_s": round(writes / summary["duration_s"], 2),
            "sustained_writes_per_s": round(sustained, 2)}


def markdown(results: dict[str, Any]) -> str:
    lines = ["**Plan** (`sync --dry-run --delete-missing`; 1% changed, 0.5% new, 0.5% missing; 9 columns)", "",
             "| rows | wall (s), median | runs (s) | peak RSS (MiB) | wall without hash snapshot (s) | creates "
             "| updates | deletes |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in results["plan"]:
        runs = ", ".join(f"{wall}" for wall in r["wall_s_runs"])
        lines.append(f"| {r['rows']:,} | {r['wall_s']} | {runs} | {r['peak_rss_mib']} | {r['cold_wall_s']} | "
                     f"{r['created']:,} | {r['updated']:,} | {r['deleted']:,} |")
    lines += ["", "**Push** (emulator on loopback; duration includes start-up, read and plan)", "",
              "| run | changes | limit (rps) | sustained writes/s | writes/s incl. start | requests per contact "
              "| 429s | share 429 | failed |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["push"]:
        limit = f"{r['rate_limit']:g}" if r["rate_limit"] else "none"
        lines.append(f"| {r['name']} | {r['changes']:,} | {limit} | {r['sustained_writes_per_s']} | "
                     f"{r['writes_per_s']} | "
                     f"{r['requests_per_contact']} | {r['rate_limited']} | {r['share_429']:.2%} | {r['failed']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    WORK.mkdir(exist_ok=True)
    sizes = [int(n) for n in os.environ.get("BENCH_ROWS", "100000,1000000").split(",")]
    if os.environ.get("BENCH_LARGE") == "1":
        sizes.append(10_000_000)
    scale = 10 if QUICK else 1
    latency = Faults(latency_ms=50, jitter_ms=250)  # 50-300 ms per request
    results: dict[str, Any] = {"plan": [plan_speed(n) for n in sizes], "push": [
        push("10 rps, 50-300 ms latency", 1000 // scale, rate_limit=10, faults=latency),
        push("migration re-run, 80% already in Loops, --create-via update", 2000 // scale, rate_limit=0,
             preseed=0.8),
        push("migration re-run, 80% already in Loops, --create-via create", 2000 // scale, rate_limit=0,
             preseed=0.8, create_via="create"),
        push("client ceiling: no limit, no latency", 20000 // scale, rate_limit=0, concurrency=8),
    ], "matrix": matrix.run(WORK, QUICK), "postgres_state": pgstate.run(sizes),
        "jsonl": jsonl.run(jsonl.sizes(os.environ.get("BENCH_LARGE") == "1"), plan_speed)}
    table = (markdown(results) + "\n" + matrix.markdown(results["matrix"]) + "\n"
             + pgstate.markdown(results["postgres_state"]) + "\n" + jsonl.markdown(results["jsonl"]))
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (WORK / "results.md").write_text(table)
    if not QUICK and "BENCH_ROWS" not in os.environ:  # the README shows the standard run only
        readme = Path("README.md")
        text = readme.read_text()
        start, end = text.index(BENCH_START) + len(BENCH_START), text.index(BENCH_END)
        readme.write_text(text[:start] + "\n" + table + text[end:])
    print(table)


if __name__ == "__main__":
    main()
