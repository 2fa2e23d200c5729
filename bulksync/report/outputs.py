"""Where a run's outputs go, and keeping them open for the run: the per-row report while it lasts,
the summary JSON however it ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulksync.config import Clock, SyncConfig
from bulksync.report.summary import Summary
from bulksync.report.writer import ReportWriter, write_json


@dataclass(frozen=True)
class OutputPaths:
    """The files one run writes besides the state."""

    report: Path
    summaries: tuple[Path, ...]


def output_paths(config: SyncConfig, now: datetime) -> OutputPaths:
    """``--report`` (or ``--report-dir``'s history, or a timestamped file here) and the summary JSONs."""
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"  # two runs a second apart differ
    extension = "jsonl" if config.report_format == "jsonl" else "csv"
    if config.report_path:
        report = config.report_path
    elif config.report_dir:
        report = config.report_dir / f"{stamp}-report.{extension}"
    else:
        report = Path(f"bulksync-report-{stamp}.{extension}")
    summaries = [config.summary_json_path, config.report_dir and config.report_dir / f"{stamp}-summary.json"]
    return OutputPaths(report, tuple(filter(None, summaries)))


@contextmanager
def run_outputs(config: SyncConfig, summary: Summary, clock: Clock, started: float) -> Iterator[ReportWriter]:
    """The per-row report while the run lasts; the summary JSON whatever way it ends."""
    paths = output_paths(config, datetime.now(UTC))
    report = ReportWriter(paths.report, config.report_format)
    try:
        yield report
    finally:
        report.close()
        summary.duration_s = clock() - started
        for target in paths.summaries:
            write_json(target, summary.to_json())
