"""The whole run: read -> normalise -> diff against state -> push (or preview) -> report."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tqdm import tqdm

from bulksync.client import LoopsClient, check_base_url
from bulksync.config import SyncConfig
from bulksync.diff import Action, Classified, PlanOptions, applied, classify, plan_create, plan_delete, plan_updates
from bulksync.errors import ApiError, ConfigError, RejectedError, RetriableError
from bulksync.fingerprint import fingerprint
from bulksync.normalise import KEY, normalise
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
    interrupted: bool = False


def default_report_path() -> Path:
    return Path(f"bulksync-report-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.csv")


def run_sync(
    config: SyncConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    stop: threading.Event | None = None,
) -> SyncResult:
    """Run one sync as configured. Raises a :class:`BulksyncError` for anything that stops the run."""
    started = clock()
    if not config.dry_run:
        if not config.http.api_key:
            raise ConfigError("no API key: set LOOPS_API_KEY (or use --dry-run to preview without one)")
        check_base_url(config.http.base_url)
    contacts = normalise(read_source(config.source, config.encoding), config.key)
    state = StateStore.open(config.state_path, readonly=config.dry_run)
    try:
        state.check_key(config.key)
        frame = contacts.frame.with_columns(fingerprint(contacts.fields, contacts.types))
        classified = classify(frame, state.hashes(), config.delete_missing)
        options = PlanOptions(config.key, config.delete_missing, config.keep_empty, config.resubscribe)
        summary = Summary(dry_run=config.dry_run, rejected=contacts.rejects.height, unchanged=classified.unchanged)
        report = ReportWriter(config.report_path or default_report_path())
        result = SyncResult(summary, report.path)
        try:
            for row, key, reason in contacts.rejects.iter_rows():
                report.reject(row, key, reason)
                if len(result.rejects_preview) < PREVIEW_ACTIONS:
                    result.rejects_preview.append((row, key, reason))
            actions = iter_actions(classified, state, options)
            if config.dry_run:
                _preview(actions, summary, report, result)
            else:
                _push(config, types=contacts.types, actions=actions, total=_total(classified), state=state,
                      summary=summary, report=report, transport=transport, clock=clock, sleep=sleep, stop=stop)
                result.interrupted = stop is not None and stop.is_set()
        finally:
            report.close()
            summary.duration_s = clock() - started
            if config.summary_json_path:
                write_json(config.summary_json_path, summary.to_json())
        return result
    finally:
        state.close()


def _total(classified: Classified) -> int:
    return classified.new.height + classified.changed.height + len(classified.missing)


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


def _preview(actions: Iterator[Action], summary: Summary, report: ReportWriter, result: SyncResult) -> None:
    for action in actions:
        summary.count(action)
        report.planned(action)
        if action.kind != "refresh" and len(result.preview) < PREVIEW_ACTIONS:
            result.preview.append(action)


class _StateRecorder:
    """Writes confirmed outcomes to state in small transactions: after confirmation, never before."""

    def __init__(self, state: StateStore, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._saves: list[tuple[str, int, Fields]] = []
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
            self._saves.append((action.key, action.row_hash, applied(action.before, outcome.sent)))
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


def _push(
    config: SyncConfig,
    *,
    types: dict[str, str],
    actions: Iterator[Action],
    total: int,
    state: StateStore,
    summary: Summary,
    report: ReportWriter,
    transport: httpx.BaseTransport | None,
    clock: Clock,
    sleep: Sleep,
    stop: threading.Event | None,
) -> None:
    http = config.http
    limiter = RateLimiter(http.rate_limit, clock=clock, sleep=sleep)
    assert http.api_key is not None
    client = LoopsClient(
        http.api_key, http.base_url,
        timeout=httpx.Timeout(http.read_timeout, connect=http.connect_timeout),
        transport=transport, max_connections=max(4, http.concurrency),
        on_response=lambda info: limiter.on_response(*info),
    )
    recorder = _StateRecorder(state, clock)
    progress = tqdm(total=total, unit="contact", disable=not config.progress, dynamic_ncols=True)
    state.set_meta({"key": config.key, "last_run_started": utc_now(), "last_run_outcome": "running"})

    def on_outcome(outcome: Outcome) -> None:
        recorder.add(outcome)
        report.outcome(outcome)
        if outcome.ok:
            summary.count(outcome.action)
        else:
            summary.failed += 1
        progress.update(1)

    try:
        should_stop = stop.is_set if stop else lambda: False
        pusher = Pusher(client, limiter, types, max_retries=http.max_retries, sleep=sleep,
                        create_via=config.create_via, should_stop=should_stop)
        try:
            pusher.check_key()  # a bad key fails here, after one request, before any write
        except (RetriableError, RejectedError) as exc:
            raise ApiError(f"could not check the API key: {exc}", exc.status) from None
        push_all(actions, pusher.execute, http.concurrency, on_outcome, should_stop=should_stop)
    finally:
        recorder.flush()
        summary.requests = client.requests
        progress.close()
        client.close()
        interrupted = stop is not None and stop.is_set()
        outcome = "interrupted" if interrupted else ("failed rows" if summary.failed else "ok")
        state.set_meta({"last_run_finished": utc_now(), "last_run_outcome": outcome})

