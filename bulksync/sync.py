"""The whole run: read -> normalise -> diff against state -> push (or preview) -> report.

``run_sync`` plans from a source file and either previews (dry run) or executes; ``apply_plan``
executes a plan made earlier. Both execute through the same ``_execute``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
from tqdm import tqdm

from bulksync.client import LoopsClient, check_base_url
from bulksync.config import DeleteLimit, HttpConfig, KeyField, SyncConfig
from bulksync.diff import (
    Action,
    Classified,
    PlanOptions,
    applied,
    classify,
    held_back,
    plan_create,
    plan_delete,
    plan_updates,
)
from bulksync.errors import ApiError, ConfigError, DeleteGuardError, RejectedError, RetriableError, StateError
from bulksync.fingerprint import HASH, with_fingerprint
from bulksync.lock import run_lock
from bulksync.normalise import KEY, Contacts, normalise
from bulksync.plan import PlanHeader, PlanWriter, read_plan
from bulksync.push import Outcome, Pusher, push_all
from bulksync.read import read_source
from bulksync.report import ReportWriter, Summary, write_json
from bulksync.state import Fields, StateStore, utc_now
from bulksync.throttle import Clock, RateLimiter, Sleep

SLICE_ROWS = 5_000
STATE_COMMIT_EVERY = 200
STATE_COMMIT_SECONDS = 1.0
PREVIEW_ACTIONS = 20


@dataclass
class SyncResult:
    summary: Summary
    report_path: Path
    preview: list[Action] = field(default_factory=list)
    rejects_preview: list[tuple[int | None, str | None, str]] = field(default_factory=list)
    plan_path: Path | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class Runtime:
    """What a run needs from its surroundings, injectable for tests."""

    transport: httpx.BaseTransport | None = None
    clock: Clock = time.monotonic
    sleep: Sleep = time.sleep
    stop: threading.Event | None = None


def default_report_path() -> Path:
    return Path(f"bulksync-report-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.csv")


def run_sync(config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Run one sync as configured. Raises a :class:`BulksyncError` for anything that stops the run."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    if not config.dry_run:
        check_credentials(config.http)
    with nullcontext() if config.dry_run else run_lock(config.state_path):
        contacts, frame = load_contacts(config.source, config.key, config.encoding)
        with StateStore.open(config.state_path, readonly=config.dry_run) as state:
            return _sync(config, runtime, started=started, contacts=contacts, frame=frame, state=state)


def _sync(
    config: SyncConfig, runtime: Runtime, *, started: float, contacts: Contacts, frame: pl.DataFrame, state: StateStore
) -> SyncResult:
    state.check_key(config.key)
    known = state.hashes()
    if config.delete_missing and frame.height == 0 and known.height:
        raise DeleteGuardError(
            f"{config.source} has no valid rows: refusing to delete all {known.height:,} contacts in state, "
            "whatever --max-delete says. Nothing was sent. Check the export"
        )
    recheck = state.held_back() if config.resubscribe else []
    classified = classify(frame, known, config.delete_missing, recheck)
    check_delete_limit(len(classified.missing), known.height, config.max_delete)
    options = PlanOptions(config.key, config.delete_missing, config.keep_empty, config.resubscribe)
    summary = Summary(dry_run=config.dry_run, rejected=contacts.rejects.height, unchanged=classified.unchanged)
    with _outputs(config, summary, runtime.clock, started) as report:
        result = SyncResult(summary, report.path)
        for row, key, reason in contacts.rejects.iter_rows():
            report.reject(row, key, reason)
            if len(result.rejects_preview) < PREVIEW_ACTIONS:
                result.rejects_preview.append((row, key, reason))
        actions = iter_actions(classified, state, options)
        if config.dry_run:
            plan = _plan_writer(config, state, contacts, _total(classified))
            result.plan_path = plan.path if plan else None
            _preview(actions, summary, report, result, plan)
        else:
            _execute(config, types=contacts.types, actions=actions, total=_total(classified), state=state,
                     summary=summary, report=report, runtime=runtime, key=config.key)
            result.interrupted = runtime.stop is not None and runtime.stop.is_set()
    return result


def apply_plan(plan_path: Path, config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Carry out exactly the actions of a plan file, if its state has not moved on since."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    check_credentials(config.http)
    header, actions = read_plan(plan_path)
    state_path = Path(header.state)
    with run_lock(state_path), StateStore.open(state_path) as state:
        state.check_key(header.key)
        check_plan_is_current(header, actions, state)
        summary = Summary(rejected=header.rejected)
        with _outputs(config, summary, runtime.clock, started) as report:
            result = SyncResult(summary, report.path, plan_path=plan_path)
            _execute(config, types=header.types, actions=actions, total=len(actions), state=state,
                     summary=summary, report=report, runtime=runtime, key=header.key)
            result.interrupted = runtime.stop is not None and runtime.stop.is_set()
    return result


def check_credentials(http: HttpConfig) -> None:
    if not http.api_key:
        raise ConfigError("no API key: set LOOPS_API_KEY (or use --dry-run to preview without one)")
    check_base_url(http.base_url)


def check_delete_limit(deletes: int, known: int, limit: DeleteLimit) -> None:
    """The guard against mirroring a truncated export: refuse the whole run, send nothing."""
    if deletes and not limit.allows(deletes, known):
        share = 100 * deletes / known if known else 100
        raise DeleteGuardError(
            f"refusing to delete {deletes:,} of the {known:,} contacts in state ({share:.0f}%): more than "
            f"{limit.describe()}. Nothing was sent. If the source is complete, pass --max-delete {deletes} "
            "(or a share such as --max-delete 50%)"
        )


def check_plan_is_current(header: PlanHeader, actions: list[Action], state: StateStore) -> None:
    """A plan is only valid against the state it was made from: say what moved if it is not."""
    generation = state.generation()
    if generation == header.generation:
        return
    now = state.fields_for(action.key for action in actions)
    moved = [action.key for action in actions if now.get(action.key, {}) != action.before]
    detail = (
        f"{len(moved)} planned contact(s) changed: {', '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}"
        if moved else "other contacts changed"
    )
    raise StateError(
        f"{state.path} changed since the plan was made (generation {header.generation} -> {generation}; {detail}); "
        "nothing was sent: make a new plan with 'bulksync sync SOURCE --dry-run --plan PATH'"
    )


def load_contacts(source: Path, key: KeyField, encoding: str) -> tuple[Contacts, pl.DataFrame]:
    """Read and normalise ``source``; the frame carries each row's content hash."""
    contacts = normalise(read_source(source, encoding), key)
    return contacts, with_fingerprint(contacts.frame, contacts.fields, contacts.types)


def record_baseline(source: Path, state_path: Path, key: KeyField = "email", encoding: str = "utf-8") -> Summary:
    """Record ``source`` as already synced, sending nothing (for an audience already up to date)."""
    contacts, frame = load_contacts(source, key, encoding)
    with run_lock(state_path), StateStore.open(state_path) as state:
        state.check_key(key)
        state.save_frame(frame, KEY, HASH, contacts.fields)
        state.set_meta({"key": key, "last_baseline": utc_now()})
    return Summary(unchanged=frame.height, rejected=contacts.rejects.height)


def iter_actions(classified: Classified, state: StateStore, options: PlanOptions) -> Iterator[Action]:
    """Actions in source order, built a slice at a time so memory holds only one slice of rows."""
    for chunk in classified.new.iter_slices(SLICE_ROWS):
        for row in chunk.iter_rows(named=True):
            yield plan_create(row, options)
    for chunk in classified.changed.iter_slices(SLICE_ROWS):
        previous = state.fields_for(chunk[KEY].to_list())
        yield from plan_updates(chunk.iter_rows(named=True), previous, options)
    for start in range(0, len(classified.missing), SLICE_ROWS):
        keys = classified.missing[start : start + SLICE_ROWS]
        previous = state.fields_for(keys)
        for key in keys:
            yield plan_delete(key, previous.get(key, {}), options)


def _total(classified: Classified) -> int:
    return classified.new.height + classified.changed.height + len(classified.missing)


@contextmanager
def _outputs(config: SyncConfig, summary: Summary, clock: Clock, started: float) -> Iterator[ReportWriter]:
    """The per-row report while the run lasts; the summary JSON whatever way it ends."""
    report = ReportWriter(config.report_path or default_report_path())
    try:
        yield report
    finally:
        report.close()
        summary.duration_s = clock() - started
        if config.summary_json_path:
            write_json(config.summary_json_path, summary.to_json())


def _plan_writer(config: SyncConfig, state: StateStore, contacts: Contacts, total: int) -> PlanWriter | None:
    if config.plan_path is None:
        return None
    header = PlanHeader(
        source=str(config.source), state=str(config.state_path.resolve()), key=config.key,
        generation=state.generation(), created_at=utc_now(), types=contacts.types, actions=total,
        rejected=contacts.rejects.height,
    )
    return PlanWriter(config.plan_path, header)


def _preview(
    actions: Iterable[Action], summary: Summary, report: ReportWriter, result: SyncResult, plan: PlanWriter | None
) -> None:
    try:
        for action in actions:
            summary.count(action)
            report.planned(action)
            if plan:
                plan.write(action)
            if action.kind != "refresh" and len(result.preview) < PREVIEW_ACTIONS:
                result.preview.append(action)
    finally:
        if plan:
            plan.close()


class _StateRecorder:
    """Writes confirmed outcomes to state in small transactions: after confirmation, never before."""

    def __init__(self, state: StateStore, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._saves: list[tuple[str, int, Fields, bool]] = []
        self._forgets: list[str] = []
        self._last_flush = clock()

    def add(self, outcome: Outcome) -> None:
        action = outcome.action
        if not outcome.ok or outcome.sent is None:
            return
        if action.kind == "delete":
            self._forgets.append(action.key)
        else:
            assert action.row_hash is not None
            after = applied(action.before, outcome.sent)
            self._saves.append((action.key, action.row_hash, after, held_back(action, outcome.sent)))
        pending = len(self._saves) + len(self._forgets)
        if pending >= STATE_COMMIT_EVERY or self._clock() - self._last_flush >= STATE_COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._saves:
            self._state.save(self._saves)
            self._saves = []
        if self._forgets:
            self._state.forget(self._forgets)
            self._forgets = []
        self._last_flush = self._clock()


def _execute(
    config: SyncConfig,
    *,
    types: dict[str, str],
    actions: Iterable[Action],
    total: int,
    state: StateStore,
    summary: Summary,
    report: ReportWriter,
    runtime: Runtime,
    key: str,
) -> None:
    """Push ``actions`` to Loops, recording each confirmed one in state and every one in the report."""
    http = config.http
    assert http.api_key is not None
    limiter = RateLimiter(http.rate_limit, clock=runtime.clock, sleep=runtime.sleep)
    client = LoopsClient(
        http.api_key, http.base_url,
        timeout=httpx.Timeout(http.read_timeout, connect=http.connect_timeout),
        transport=runtime.transport, max_connections=max(4, http.concurrency),
        on_response=lambda info: limiter.on_response(*info),
    )
    stop = runtime.stop
    should_stop = stop.is_set if stop else lambda: False
    pusher = Pusher(client, limiter, types, max_retries=http.max_retries, sleep=runtime.sleep,
                    create_via=config.create_via, should_stop=should_stop)
    recorder = _StateRecorder(state, runtime.clock)
    progress = tqdm(total=total, unit="contact", disable=not config.progress, dynamic_ncols=True)
    state.set_meta({"key": key, "last_run_started": utc_now(), "last_run_outcome": "running"})

    def on_outcome(outcome: Outcome) -> None:
        recorder.add(outcome)
        report.outcome(outcome)
        if outcome.ok:
            summary.count(outcome.action)
        else:
            summary.failed += 1
        progress.update(1)

    outcome = "failed"
    try:
        try:
            pusher.check_key()  # a bad key fails here, after one request, before any write
        except (RetriableError, RejectedError) as exc:
            raise ApiError(f"could not check the API key: {exc}", exc.status) from None
        push_all(actions, pusher.execute, http.concurrency, on_outcome, should_stop=should_stop)
        outcome = "interrupted" if should_stop() else ("failed rows" if summary.failed else "ok")
    finally:
        recorder.flush()
        summary.requests = client.requests
        progress.close()
        client.close()
        state.set_meta({"last_run_finished": utc_now(), "last_run_outcome": outcome})
