"""The whole run, wired: read -> plan against the state -> push (or preview) -> report.

``run_sync`` plans from a source and either previews (dry run) or executes; ``apply_plan`` executes
a plan made earlier; ``record_baseline`` records a source as already synced. The stages do the
work; this module only hands their results on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from bulksync import logs
from bulksync.columns import HASH, KEY, ROW, STATE_HASH, STATE_ROW
from bulksync.config import HttpConfig, KeyField, Runtime, SyncConfig, check_base_url
from bulksync.errors import ConfigError
from bulksync.files import refuse_clashes, unwritable
from bulksync.location import StateLocation, describe, plan_state
from bulksync.loops.account import Account, AskedOnce, account_for, mapped_source, remembered
from bulksync.loops.properties import ensure_properties
from bulksync.loops.push import Outcome, push_all
from bulksync.loops.record import StateRecorder
from bulksync.plan.actions import Action, PlanOptions, iter_actions
from bulksync.plan.diff import Classified, split
from bulksync.plan.first_load import first_load_warning
from bulksync.plan.guards import (
    check_clear_limit,
    check_delete_limit,
    check_plan_is_current,
    count_clears,
    for_mode,
    limited,
    refuse_empty_source,
)
from bulksync.plan.index import StateIndex, hashes_after
from bulksync.plan.normalise import field_names, require_identity
from bulksync.plan.planfile import PlanHeader, PlanWriter, read_plan
from bulksync.plan.scan import Scanned, scan
from bulksync.report.outputs import run_outputs
from bulksync.report.summary import Summary, SyncResult
from bulksync.report.writer import ReportWriter
from bulksync.source.batch import SourceStream
from bulksync.source.location import locate
from bulksync.source.mapping_file import mapping_spec
from bulksync.source.mapping_spec import MappingSpec
from bulksync.source.read import open_source
from bulksync.state import lock_for, open_state
from bulksync.state.store import StateStore, utc_now

if TYPE_CHECKING:
    from bulksync.loops.connection import Connection

log = logging.getLogger("bulksync")
PREVIEW_ACTIONS = 20
OUTAGE_NOT_PROCESSED = "not processed: Loops failed every request for longer than --outage-wait; sent next run"

__all__ = ["SyncResult", "apply_plan", "record_baseline", "run_sync"]


@dataclass
class Run:
    """One run's pieces, handed down instead of loose arguments; functions take what they use."""

    config: SyncConfig
    runtime: Runtime
    state: StateStore
    loops: Connection | None
    started: float
    summary: Summary


def run_sync(config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Run one sync as configured. Raises a :class:`BulksyncError` for anything that stops the run."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    refuse_clashes(config.inputs(), config.outputs())
    if config.report_dir is not None and (problem := unwritable(config.report_dir, directory=True)):
        raise ConfigError(f"--report-dir {config.report_dir}: {problem}; nothing was read or sent")
    if not config.dry_run:
        check_credentials(config.http)
    spec = mapping_spec(config.mapping_path, config.preset)
    with nullcontext() if config.dry_run else lock_for(config.state_path):
        stream = open_source(config.source, config.encoding, config.delimiter, fmt=config.source_format,
                             storage_options=config.storage_options)  # a bad header creates no state
        with (
            open_state(config.state_path, readonly=config.dry_run) as state,
            _connect(config, runtime) as loops,
        ):
            run = Run(config, runtime, state, loops, started, Summary(dry_run=config.dry_run))
            state.check_key(config.key)
            index = StateIndex.of(state.hashes())
            recheck = pl.Series(state.held_back_keys(), dtype=pl.String) if config.resubscribe else None
            scanned, account = load_contacts(stream, spec, config.key, state, loops, index=index, recheck=recheck,
                                             stopping=runtime.should_stop)
            return _sync(run, scanned, index, account)


def _connect(config: SyncConfig, runtime: Runtime) -> Connection | nullcontext[None]:
    """A connection when there is a key (a dry run may have none: it then plans offline)."""
    if not config.http.api_key:
        return nullcontext()
    check_base_url(config.http.base_url)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (httpx is 60 ms of start-up a dry run may not need)

    return Connection(config.http, runtime, config.create_via)


def load_contacts(
    stream: SourceStream,
    spec: MappingSpec | None,
    key: KeyField,
    state: StateStore,
    loops: Connection | None,
    *,
    index: StateIndex,
    recheck: pl.Series | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> tuple[Scanned, Account | None]:
    """Map (typing values as the account's properties say), normalise and mark every batch.

    The account's properties and lists come from the state's remembered copy; Loops is asked
    again only when the source names something that copy does not know. A JSONL source whose later
    batch changes its header is scanned again (``SourceStream.consume``): nothing is sent before.
    """
    remembered_account = remembered(state)
    reader = AskedOnce(loops) if loops is not None else None

    def load(stream: SourceStream) -> tuple[Scanned, Account | None]:
        header = mapped_source(stream.header, spec, remembered_account)
        names = field_names(header)
        require_identity(header, names, key)  # a file that cannot work fails before any request
        account = account_for(state, reader, names, spec.list_refs() if spec else [])
        return scan(stream, key, index, lambda batch: mapped_source(batch, spec, account), recheck,
                    stopping=stopping), account

    return stream.consume(load)


def _sync(run: Run, scanned: Scanned, index: StateIndex, account: Account | None) -> SyncResult:
    config, state, summary = run.config, run.state, run.summary
    if config.delete_missing:
        refuse_empty_source(str(locate(config.source)), scanned.contacts.height, index.height)
    processed, unprocessed = limited(scanned.contacts, config.limit)
    rejects = scanned.rejects
    unreadable = rejects.unreadable
    deleting = config.delete_missing and not (unreadable and index.height)
    # Rows past --limit and rejected rows are still in the source: their contacts are never missing.
    present = [unprocessed[STATE_ROW], rejects.kept]
    classified = split(processed, scanned.rows, index, deleting, present)
    check_delete_limit(len(classified.missing), index.height, config.max_delete)
    if not config.keep_empty and classified.changed.height:
        check_clear_limit(count_clears(classified.changed, state), index.height, config.max_clear)
    classified, skipped = for_mode(classified, config.mode)
    warn = _first_load_warner(classified.new.height)
    # After every check that can refuse the run: creating a property is the run's first write.
    notes = ensure_properties(classified.filled(scanned.fields), scanned.types, account, run.loops, state,
                              create=config.create_properties, where=f"{locate(config.source)}:{scanned.header_line}",
                              before_create=warn)
    if not config.dry_run:
        warn()
    summary.rejected, summary.unchanged = rejects.height, classified.unchanged
    summary.skipped = unprocessed.height + sum(rows.height for _, rows, _ in skipped)
    with run_outputs(config, summary, run.runtime.clock, run.started) as report:
        result = SyncResult(summary, report.path, notes=notes)
        if config.delete_missing and not deleting:
            result.notes.append(
                f"{unreadable} row(s) could not be read (see the report), so their contacts are unknown: "
                "no contact is deleted this run"
            )
            log.warning(result.notes[-1])
        for lines in rejects.frames():
            report.rejects(lines.iter_rows())
            result.rejects_preview += lines.head(max(PREVIEW_ACTIONS - len(result.rejects_preview), 0)).iter_rows()
        for action_name, rows, reason in skipped:
            for row, key in rows.select(ROW, KEY).iter_rows():
                report.skipped(row, key, action_name, reason)
        for row, key in zip(unprocessed[ROW], scanned.keys(unprocessed), strict=True):
            report.skipped(row, key, "none", f"not processed (--limit {config.limit})")
        create_via = "create" if config.mode == "create-only" else config.create_via  # as the pusher does
        options = PlanOptions(config.key, config.keep_empty, config.resubscribe, create_via)
        details = config.plan_path is not None or not config.dry_run
        actions = iter_actions(classified, state, options, delete_details=details)
        if config.dry_run:
            plan = _plan_writer(run, scanned, classified)
            result.plan_path = plan.path if plan else None
            _preview(actions, summary, report, result, plan)
            warn()  # a dry run's creates are known once it is planned
        else:
            changes = _execute(run, report, actions, classified.total, types=scanned.types,
                               create_only=config.mode == "create-only")
            # The next run's plan reads this snapshot instead of every hash in SQLite (~1 s per million).
            hashes = hashes_after(index.frame, changes) if changes is not None else state.hashes()
            state.save_snapshot(StateIndex.of(hashes).frame)
            result.interrupted = run.runtime.should_stop()
        summary.requests = run.loops.requests if run.loops else 0
    return result


def apply_plan(plan_path: Path, config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Carry out exactly the actions of a plan file, if its state has not moved on since."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    check_credentials(config.http)
    header, actions = read_plan(plan_path)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see _connect)

    state_path = plan_state(header.state, os.environ)
    refuse_clashes({"PLAN": plan_path, "--state": state_path if isinstance(state_path, Path) else None},
                   config.outputs())
    with (
        lock_for(state_path),
        open_state(state_path) as state,
        Connection(config.http, runtime, "create" if header.create_via == "create" else "update") as loops,
    ):
        state.check_key(header.key)
        check_plan_is_current(header.generation, actions, state)
        warn = _first_load_warner(sum(1 for action in actions if action.kind == "create"))
        filled = sorted({name for action in actions for name, value in action.send.items() if value is not None})
        account = account_for(state, loops, filled, [])
        notes = ensure_properties(filled, header.types, account, loops, state, create=config.create_properties,
                                  where=f"{plan_path}:1", before_create=warn)
        warn()
        summary = Summary(rejected=header.rejected, unchanged=header.unchanged)
        run = Run(config, runtime, state, loops, started, summary)
        with run_outputs(config, summary, runtime.clock, started) as report:
            result = SyncResult(summary, report.path, plan_path=plan_path, notes=notes)
            _execute(run, report, actions, len(actions), types=header.types, key=header.key,
                     create_only=header.mode == "create-only")
            result.interrupted = runtime.should_stop()
    return result


def _first_load_warner(creates: int) -> Callable[[], None]:
    """Says, the first time it is called, that a first load through the API starts every welcome
    loop (if ``creates`` is one). Called once the run can no longer be refused, before its first write."""
    pending = [warning] if (warning := first_load_warning(creates)) is not None else []

    def warn() -> None:
        while pending:
            log.warning(pending.pop())

    return warn


def check_credentials(http: HttpConfig) -> None:
    if not http.api_key:
        raise ConfigError("no API key: set LOOPS_API_KEY (or use --dry-run to preview without one)")
    check_base_url(http.base_url)


def record_baseline(
    source_path: Path | str,
    state_path: StateLocation,
    key: KeyField = "email",
    encoding: str = "utf-8",
    *,
    spec: MappingSpec | None = None,
    delimiter: str | None = None,
    loops: Connection | None = None,
    fmt: str | None = None,
    storage_options: Iterable[tuple[str, str]] | None = None,
) -> Summary:
    """Record ``source`` as already synced, writing nothing to Loops (for an audience already up to date).

    With a connection, the account's property types are read first, so values are recorded as a
    sync would type them (otherwise the first sync would re-send every typed value once).
    """
    with lock_for(state_path):
        stream = open_source(source_path, encoding, delimiter, fmt=fmt, storage_options=storage_options)
        with open_state(state_path) as state:
            state.check_key(key)
            known = state.hashes()
            everyone = StateIndex.of(known.clear())  # against no state, every row is new: all are recorded
            scanned, _ = load_contacts(stream, spec, key, state, loops, index=everyone)
            frame = split(scanned.contacts, scanned.rows, everyone, delete_missing=False).new
            state.save_frame(frame, KEY, HASH, scanned.fields)
            recorded = frame.select(pl.col(KEY), pl.col(HASH).alias(STATE_HASH))
            kept = known.join(recorded, on=KEY, how="anti").select(KEY, STATE_HASH)
            state.save_snapshot(StateIndex.of(pl.concat([kept, recorded])).frame)
            state.set_meta({"key": key, "last_baseline": utc_now()})
    return Summary(unchanged=frame.height, rejected=scanned.rejects.height)


def _plan_writer(run: Run, scanned: Scanned, classified: Classified) -> PlanWriter | None:
    config = run.config
    if config.plan_path is None:
        return None
    header = PlanHeader(
        source=str(locate(config.source)), state=describe(config.state_path), key=config.key,
        generation=run.state.generation(), created_at=utc_now(), types=scanned.types, actions=classified.total,
        rejected=scanned.rejects.height, mode=config.mode, unchanged=classified.unchanged,
        create_via="create" if config.mode == "create-only" else config.create_via,
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


def _execute(
    run: Run,
    report: ReportWriter,
    actions: Iterable[Action],
    total: int,
    *,
    types: dict[str, str],
    key: str | None = None,
    create_only: bool = False,
) -> dict[str, int | None] | None:
    """Push ``actions`` to Loops, recording each confirmed one in state and every one in the report.

    Returns the keys whose state changed with their new hashes (None for deleted), if not too many.
    """
    loops, state, summary = run.loops, run.state, run.summary
    assert loops is not None
    state.stop_on(run.runtime.stop)  # a signal ends a wait on a stalled state too
    pusher = loops.pusher(types, create_only=create_only, before_send=state.check_alive)
    recorder = StateRecorder(state, run.runtime.clock)
    from tqdm import tqdm  # noqa: PLC0415 (only a run that sends shows progress)

    progress = tqdm(total=total, unit="contact", disable=not run.config.progress, dynamic_ncols=True)

    state_failed: list[Exception] = []  # the state took no more (a full disk, its connection and lock gone)
    late = [0]  # confirmed after that: in Loops, not in the state

    def on_outcome(outcome: Outcome) -> None:
        if state_failed:
            late[0] += outcome.ok and outcome.sent is not None
        else:
            try:
                recorder.add(outcome)
            except Exception as exc:  # stop sending now; what is in flight is still reported
                pusher.halt()
                state_failed.append(exc)
        report.outcome(outcome)
        summary.record(outcome)
        if not outcome.ok:
            action = outcome.action
            log.warning("%s of %s failed: %s", action.kind, action.key, outcome.error,
                        extra=logs.context(action.row, action.key, outcome.http_status, outcome.attempts))
        progress.update(1)

    state.set_meta({"key": key or run.config.key, "last_run_started": utc_now(), "last_run_outcome": "running"})
    outcome = "failed"
    try:
        loops.check_key()  # a bad key fails here, after one request, before any write
        pending = iter(actions)
        stopping = lambda: run.runtime.should_stop() or loops.breaker.gave_up or bool(state_failed)  # noqa: E731
        push_all(pending, pusher.execute, loops.workers, on_outcome, should_stop=stopping)
        if state_failed:
            raise state_failed[0]
        if loops.breaker.gave_up:  # what was never tried is in the report, and goes out next run
            for action in pending:
                report.skipped(action.row, action.key, action.kind, OUTAGE_NOT_PROCESSED)
                summary.skipped += 1
            outcome = "stopped: Loops did not answer"
        else:
            outcome = "interrupted" if run.runtime.should_stop() else ("failed rows" if summary.failed else "ok")
    finally:
        try:
            recorder.flush()
        finally:  # a state that took no more (a full disk): the summary says how much it lacks
            summary.not_recorded = recorder.unsaved + late[0]
            summary.requests = loops.requests
            progress.close()
        state.set_meta({"last_run_finished": utc_now(), "last_run_outcome": outcome})
    return recorder.changes
