"""JSONL against CSV: the same plan (``sync --dry-run --delete-missing``) from the same rows, once as
CSV and once as JSONL (each value a JSON string, as the CSV's cells are text), its wall time and peak
memory side by side. The issue's goal: JSONL within 1.5 times CSV's time and memory.

BENCH_JSONL_ROWS (default "1000000") picks the sizes; BENCH_LARGE=1 adds 10,000,000.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Plan = Callable[[int, str], dict[str, Any]]  # bench.__main__.plan_speed(rows, fmt)


def sizes(large: bool) -> list[int]:
    chosen = [int(n) for n in os.environ.get("BENCH_JSONL_ROWS", "1000000").split(",")]
    return [*chosen, 10_000_000] if large and 10_000_000 not in chosen else chosen


def run(rows: list[int], plan: Plan) -> list[dict[str, Any]]:
    """For each size, the CSV plan and then the JSONL one, back to back (this machine's speed drifts)."""
    results = []
    for n in rows:
        csv = plan(n, "csv")
        jsonl = plan(n, "jsonl")
        results.append({
            "rows": n, "csv_wall_s": csv["wall_s"], "jsonl_wall_s": jsonl["wall_s"],
            "csv_wall_s_runs": csv["wall_s_runs"], "jsonl_wall_s_runs": jsonl["wall_s_runs"],
            "csv_peak_rss_mib": csv["peak_rss_mib"], "jsonl_peak_rss_mib": jsonl["peak_rss_mib"],
            "time_ratio": round(jsonl["wall_s"] / csv["wall_s"], 2),
            "memory_ratio": round(jsonl["peak_rss_mib"] / csv["peak_rss_mib"], 2),
        })
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["**JSONL against CSV** (the plan above, from the same rows as JSONL; median of three runs)", "",
             "| rows | CSV wall (s) | JSONL wall (s) | time ratio | CSV peak RSS (MiB) | JSONL peak RSS (MiB) "
             "| memory ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['rows']:,} | {r['csv_wall_s']} | {r['jsonl_wall_s']} | {r['time_ratio']} | "
              f"{r['csv_peak_rss_mib']} | {r['jsonl_peak_rss_mib']} | {r['memory_ratio']} |" for r in results]
    return "\n".join(lines) + "\n"
