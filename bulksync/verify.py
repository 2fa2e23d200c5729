"""The drift check (``bulksync verify``): does Loops hold what the state says bulksync set?

A random sample of the state's contacts (or all of them) is looked up, one ``GET /v1/contacts/find``
each, paced and retried like any request; each answer is compared with the state's fields
(``plan/drift.py``) and every difference goes to a CSV report. It sends no write and changes no
state; the state is read through the ``StateStore`` interface only. An unsubscribe made in Loops is
reported but is drift (exit 1) only with ``strict``: people leaving is what a list does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulksync.columns import KEY
from bulksync.config import DEFAULT_STATE_PATH, Runtime
from bulksync.errors import Interrupted, StateError
from bulksync.files import refuse_clashes
from bulksync.location import StateLocation, state_noun
from bulksync.loops.account import remembered
from bulksync.plan.drift import compare
from bulksync.report.drift import DriftWriter, VerifyResult
from bulksync.state import open_state, state_exists
from bulksync.state.store import StateStore, batches

if TYPE_CHECKING:
    from bulksync.loops.connection import Connection

DEFAULT_SAMPLE = 100
FIELDS_BATCH = 500  # contacts whose fields are read from the state at a time


@dataclass(frozen=True)
class VerifyOptions:
    state: StateLocation = DEFAULT_STATE_PATH
    sample: int | None = DEFAULT_SAMPLE  # None: every contact
    seed: int | None = None  # None: a new random sample (its seed is shown, to draw it again)
    report: Path | None = None  # None: bulksync-verify-<UTC time>.csv here
    strict: bool = False  # an unsubscribe made in Loops counts as drift (for the exit status) too

    def inputs(self) -> dict[str, Path | None]:
        return {"--state": self.state if isinstance(self.state, Path) else None}

    def outputs(self) -> dict[str, Path | None]:
        return {"--report": self.report}


def run_verify(options: VerifyOptions, loops: Connection, runtime: Runtime | None = None) -> VerifyResult:
    """Compare the chosen contacts of the state with Loops. Raises a BulksyncError for anything that
    stops the check (no such state, no contacts in it, a refused key, Loops not answering)."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    report = options.report or Path(f"bulksync-verify-{_stamp()}.csv")
    refuse_clashes(options.inputs(), {"--report": report})
    if not state_exists(options.state):
        raise StateError(f"{options.state}: no such {state_noun(options.state)}; a sync or 'bulksync state "
                         "baseline' makes it: nothing to verify")
    with open_state(options.state, readonly=True) as state:
        total = state.count()
        if not total:
            raise StateError(f"{options.state} holds no contacts (no sync or 'bulksync state baseline' recorded "
                             "any yet): nothing to verify")
        key_field = state.meta("key") or "email"
        account = remembered(state)
        types = account.properties if account else {}
        sampled = options.sample is not None and options.sample < total
        seed = (options.seed if options.seed is not None else random.SystemRandom().randrange(1_000_000)) \
            if sampled else None
        keys = chosen_keys(state, options.sample if sampled else None, seed)
        result = VerifyResult(options.state, total, seed=seed, report_path=report, strict=options.strict)
        loops.check_key()  # a refused key stops here (exit 4), before the report is written
        with DriftWriter(report) as writer:
            for batch in batches(keys, FIELDS_BATCH):  # in key order: neighbouring index pages
                fields = state.fields_for(batch)
                for key in batch:
                    if runtime.should_stop():
                        raise Interrupted(f"stopped after checking {result.counts.checked:,} of {len(keys):,} "
                                          f"contacts; {report} holds what was found")
                    drifts = compare(key, fields.get(key, {}), find(loops, key_field, key), types)
                    result.counts.add(drifts)
                    writer.write(drifts)
    result.requests = loops.requests
    result.duration_s = runtime.clock() - started
    return result


def chosen_keys(state: StateStore, sample: int | None, seed: int | None) -> list[str]:
    """Every key of the state (``sample`` None), or ``sample`` of them drawn with ``seed``: the same
    state and seed always give the same contacts. In key order. The keys come from the state's hash
    index (a snapshot file read in well under a second for a million contacts), not its fields."""
    keys = state.hashes()[KEY].sort()
    if sample is None or sample >= keys.len():
        return keys.to_list()
    return keys.gather(sorted(random.Random(seed).sample(range(keys.len()), sample))).to_list()


def find(loops: Connection, key_field: str, key: str) -> dict[str, Any] | None:
    """What Loops has for one contact (None: not found), paced and retried like every request."""
    found = loops.read(f"contact {key}", lambda: loops.client.find(**{key_field: key}))
    return found[0] if found else None


def _stamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
