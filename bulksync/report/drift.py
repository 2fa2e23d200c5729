"""What ``bulksync verify`` found, for people: the counts with first examples, and a CSV line per difference."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulksync.errors import printable
from bulksync.files import open_private
from bulksync.location import StateLocation
from bulksync.plan.drift import DIFFERENT, MISSING, PROBLEMS, UNSUBSCRIBED, Drift, DriftCounts, loops_text
from bulksync.report.writer import safe_cell

DRIFT_COLUMNS = ("key", "problem", "field", "state_value", "loops_value")
_TITLES = {MISSING: "Missing in Loops, deleted there", UNSUBSCRIBED: "Unsubscribed in Loops",
           DIFFERENT: "Different fields"}


@dataclass
class VerifyResult:
    """One check of the state against Loops: what was looked at, and what was found."""

    state: StateLocation  # its str() never shows a password
    contacts: int  # in the state
    counts: DriftCounts = field(default_factory=DriftCounts)
    seed: int | None = None  # the sample's seed; None when every contact was checked
    report_path: Path | None = None
    requests: int = 0
    duration_s: float = 0.0
    strict: bool = False  # an unsubscribe made in Loops is drift too (--strict)

    @property
    def drifted(self) -> bool:
        """Whether Loops differs from the state: what makes ``verify`` exit 1."""
        return self.counts.drifted(strict=self.strict)


def state_text(value: str | None) -> str:
    return "(not set)" if value is None else json.dumps(value, ensure_ascii=False)


def loops_shown(value: Any) -> str:
    """Loops' value as its JSON shows it; a field it does not have is ``(empty)``."""
    return "(empty)" if value is None else json.dumps(value, ensure_ascii=False)


def describe_drift(drift: Drift) -> str:
    """``firstName: state "Ada" / Loops "Augusta"``; a contact gone from Loops is just that."""
    if drift.field is None:
        return "not found in Loops"
    return f"{drift.field}: state {state_text(drift.state)} / Loops {loops_shown(drift.loops)}"


def render_verify(result: VerifyResult) -> str:
    """The counts, then the first contacts with each problem and their differences, then the verdict."""
    counts = result.counts
    checked = f"{counts.checked:,} of {result.contacts:,}"
    how = f"a random sample, --seed {result.seed} draws it again; --all checks every one" if result.seed is not None \
        else "all of them"
    lines = [f"Verified {checked} contacts of {result.state} against Loops in {result.duration_s:.1f}s ({how})",
             f"  {'matching':<22} {counts.matching:>9,}"]
    lines += [f"  {problem:<22} {counts.counts[problem]:>9,}" for problem in PROBLEMS]
    lines.append(f"  {'requests':<22} {result.requests:>9,}")
    for problem in PROBLEMS:
        if counts.examples[problem]:
            shown = len(counts.examples[problem])
            more = f", first {shown}" if counts.counts[problem] > shown else ""
            lines.append(f"{_TITLES[problem]} ({counts.counts[problem]:,}{more}):")
            for drifts in counts.examples[problem]:
                details = "" if problem == MISSING else "  " + "; ".join(describe_drift(d) for d in drifts)
                lines.append(f"  {drifts[0].key}{details}")
    if result.report_path is not None:
        lines.append(f"Report: {result.report_path} (one line per difference)")
    drifted, unsubscribed = counts.drifted_contacts(strict=result.strict), counts.unsubscribed_only
    not_drift = "which is no drift (--strict counts it)"
    if drifted:
        lines.append(f"{drifted:,} of {counts.checked:,} contacts differ from the state"
                     + (f"; {unsubscribed:,} more only unsubscribed in Loops, {not_drift}." if unsubscribed
                        and not result.strict else "."))
    elif unsubscribed:
        lines.append(f"Loops holds what the state says for every contact checked but {unsubscribed:,} who "
                     f"unsubscribed in Loops, {not_drift}.")
    else:
        lines.append("Loops holds what the state says for every contact checked.")
    return "\n".join(printable(line) for line in lines)  # values come from Loops and the source


class DriftWriter:
    """Streams one CSV line per difference: key, problem, field, state value, Loops value (safe to open
    in a spreadsheet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open_private(path)
        self._csv = csv.writer(self._file)
        self._csv.writerow(DRIFT_COLUMNS)

    def write(self, drifts: list[Drift]) -> None:
        for drift in drifts:
            loops = "" if drift.loops is None else loops_text(drift.loops)
            self._csv.writerow((safe_cell(drift.key), drift.problem, drift.field or "", safe_cell(drift.state),
                                safe_cell(loops)))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DriftWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
