"""The whole run: read -> normalise -> diff against state -> push (or preview) -> report.

``run_sync`` plans from a source file and either previews (dry run) or executes; ``apply_plan``
executes a plan made earlier. Both execute through the same ``_execute``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from bulksync import logs
from bulksync.columns import HASH, KEY, ROW, STATE_HASH, STATE_ROW
from bulksync.config import Clock, DeleteLimit, HttpConfig, KeyField, Mode, Runtime, SyncConfig, check_base_url
from bulksync.errors import ConfigError, DeleteGuardError, StateError
from bulksync.loops.account import Account, custom_fields, fetch_account, remember, remembered
from bulksync.loops.push import Outcome, push_all
from bulksync.plan.diff import (
    Action,
    Classified,
    PlanOptions,
    StateIndex,
    applied,
    held_back,
    kept_positions,
    plan_create,
    plan_delete,
    plan_updates,
    split,
)
from bulksync.plan.normalise import field_names, require_identity
from bulksync.plan.planfile import PlanHeader, PlanWriter, read_plan
from bulksync.plan.scan import Scanned, scan
from bulksync.report.writer import ReportWriter, Summary, write_json
from bulksync.source.mapping import (
    MappingSpec,
    apply_mapping,
    identity_mapping,
    load_mapping,
    load_preset,
    merge,
    target_problem,
)
from bulksync.source.read import Source, SourceStream, open_source
from bulksync.state.lock import run_lock
from bulksync.state.sqlite import Fields, StateStore, hashes_after, utc_now

if TYPE_CHECKING:
    from bulksync.loops.connection import Connection

log = logging.getLogger("bulksync")
SLICE_ROWS = 5_000
STATE_COMMIT_EVERY = 200
STATE_COMMIT_SECONDS = 1.0
PREVIEW_ACTIONS = 20
SNAPSHOT_TRACK_LIMIT = 200_000


@dataclass
class SyncResult:
    summary: Summary
    report_path: Path
    preview: list[Action] = field(default_factory=list)
    rejects_preview: list[tuple[int | None, str | None, str]] = field(default_factory=list)
    plan_path: Path | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def run_sync(config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Run one sync as configured. Raises a :class:`BulksyncError` for anything that stops the run."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    if not config.dry_run:
        check_credentials(config.http)
    spec = mapping_spec(config.mapping_path, config.preset)
    with nullcontext() if config.dry_run else run_lock(config.state_path):
        stream = open_source(config.source, config.encoding, config.delimiter)  # a bad header creates no state
        with (
            StateStore.open(config.state_path, readonly=config.dry_run) as state,
            _connect(config, runtime) as loops,
        ):
            state.check_key(config.key)
            index = StateIndex.of(state.hashes())
            recheck = pl.Series(state.held_back_keys(), dtype=pl.String) if config.resubscribe else None
            scanned, account = load_contacts(stream, spec, config.key, state, loops, index=index, recheck=recheck)
            return _sync(config, runtime, started=started, scanned=scanned, index=index, state=state,
                         loops=loops, account=account)


def _connect(config: SyncConfig, runtime: Runtime) -> Connection | nullcontext[None]:
    """A connection when there is a key (a dry run may have none: it then plans offline)."""
    if not config.http.api_key:
        return nullcontext()
    check_base_url(config.http.base_url)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (httpx is 60 ms of start-up a dry run may not need)

    return Connection(config.http, runtime, config.create_via)


def mapping_spec(mapping_path: Path | None, preset: str | None) -> MappingSpec | None:
    """The preset, the mapping file, or both (the file's entries win)."""
    base = load_preset(preset) if preset else None
    override = load_mapping(mapping_path) if mapping_path else None
    if base and override:
        return merge(base, override)
    return override or base


def _mapped(source: Source, spec: MappingSpec | None, account: Account | None) -> Source:
    if spec is not None:
        lists = account.lists if account and spec.list_refs() else None
        return apply_mapping(source, spec, lists, account_types=account.properties if account else None)
    if account is not None:
        return identity_mapping(source, account_types=account.properties)
    return source


def load_contacts(
    stream: SourceStream,
    spec: MappingSpec | None,
    key: KeyField,
    state: StateStore,
    loops: Connection | None,
    *,
    index: StateIndex,
    recheck: pl.Series | None = None,
) -> tuple[Scanned, Account | None]:
    """Map (typing values as the account's properties say), normalise and mark every batch.

    The account's properties and lists come from the state's remembered copy; Loops is asked
    again only when the source names something that copy does not know.
    """
    account = remembered(state)
    header = _mapped(stream.header, spec, account)
    names = field_names(header)
    require_identity(header, names, key)  # a file that cannot work fails before any request
    list_refs = spec.list_refs() if spec else []
    if loops is not None and _needs_account(account, names, list_refs):
        account = fetch_account(loops)
        remember(state, account)
    return scan(stream, key, index, lambda batch: _mapped(batch, spec, account), recheck), account


def _needs_account(account: Account | None, fields: list[str], list_refs: list[str]) -> bool:
    if not custom_fields(fields) and not list_refs:
        return False  # nothing to type, nothing to check
    return account is None or not account.knows(fields, list_refs)


def sent_fields(classified: Classified, fields: list[str]) -> list[str]:
    """The fields that a row this run sends (a new or changed contact) gives a value."""
    rows = [classified.new, classified.changed]
    return [name for name in fields if any(name in f.columns and f[name].null_count() < f.height for f in rows)]


def ensure_properties(
    filled: list[str],
    types: dict[str, str],
    account: Account | None,
    loops: Connection | None,
    state: StateStore,
    *,
    create: bool,
    where: str,
) -> list[str]:
    """Custom properties the run fills must exist in Loops: create them if asked, else stop.

    Returns notes for a dry run (which creates nothing).
    """
    if account is None:
        if not custom_fields(filled):
            return []
        return ["the account's properties are unknown (no API key): missing properties are not checked"]
    missing = account.missing(filled)
    if not missing:
        return []
    listed = ", ".join(f"{name} ({types.get(name, 'string')})" for name in missing)
    invalid = [problem for name in missing if (problem := target_problem(name))]
    if invalid:
        raise ConfigError(f"{where}: {'; '.join(invalid)}; rename the column or map it with --mapping")
    if state.readonly:  # a dry run creates nothing
        verb = "will be created (--create-properties)" if create else "must exist first: pass --create-properties"
        return [f"Loops has no property {listed} yet; it {verb}"]
    if not create:
        raise ConfigError(
            f"Loops has no custom property {listed} yet; nothing was sent. Run 'bulksync check' to review "
            "the columns, or pass --create-properties to create them"
        )
    assert loops is not None
    created = {name: types.get(name, "string") for name in missing}
    for name, type_ in created.items():
        loops.create_property(name, type_)
    remember(state, Account({**account.properties, **created}, account.lists))
    return [f"created property {listed}"]


def _sync(
    config: SyncConfig,
    runtime: Runtime,
    *,
    started: float,
    scanned: Scanned,
    index: StateIndex,
    state: StateStore,
    loops: Connection | None,
    account: Account | None,
) -> SyncResult:
    if config.delete_missing and scanned.contacts.height == 0 and index.height:
        raise DeleteGuardError(
            f"{config.source} has no valid rows: refusing to delete all {index.height:,} contacts in state, "
            "whatever --max-delete says. Nothing was sent. Check the export"
        )
    processed, unprocessed = limited(scanned.contacts, config.limit)
    rejects = scanned.rejects
    unreadable = rejects[KEY].null_count()
    deleting = config.delete_missing and not (unreadable and index.height)
    # Rows past --limit and rejected rows are still in the source: their contacts are never missing.
    present = [unprocessed[STATE_ROW], kept_positions(index, rejects[KEY].drop_nulls())]
    classified = split(processed, scanned.rows, index, deleting, present)
    check_delete_limit(len(classified.missing), index.height, config.max_delete)
    classified, skipped = for_mode(classified, config.mode)
    # After every check that can refuse the run: creating a property is the run's first write.
    notes = ensure_properties(
        sent_fields(classified, scanned.fields), scanned.types, account, loops, state,
        create=config.create_properties,
        where=f"{config.source}:{scanned.header_line}",
    )
    options = PlanOptions(config.key, config.keep_empty, config.resubscribe)
    summary = Summary(dry_run=config.dry_run, rejected=rejects.height, unchanged=classified.unchanged,
                      skipped=unprocessed.height + sum(rows.height for _, rows, _ in skipped))
    with _outputs(config, summary, runtime.clock, started) as report:
        result = SyncResult(summary, report.path, notes=notes)
        if config.delete_missing and not deleting:
            result.notes.append(
                f"{unreadable} row(s) could not be read (see the report), so their contacts are unknown: "
                "no contact is deleted this run"
            )
            log.warning(result.notes[-1])
        for row, key, reason in rejects.iter_rows():
            report.reject(row, key, reason)
            if len(result.rejects_preview) < PREVIEW_ACTIONS:
                result.rejects_preview.append((row, key, reason))
        for action_name, rows, reason in skipped:
            for row, key in rows.select(ROW, KEY).iter_rows():
                report.skipped(row, key, action_name, reason)
        for row, key in zip(unprocessed[ROW], scanned.keys(unprocessed), strict=True):
            report.skipped(row, key, "none", f"not processed (--limit {config.limit})")
        actions = iter_actions(classified, state, options, delete_details=config.plan_path is not None)
        if config.dry_run:
            plan = _plan_writer(config, state, scanned, _total(classified), classified.unchanged)
            result.plan_path = plan.path if plan else None
            _preview(actions, summary, report, result, plan)
        else:
            assert loops is not None
            changes = _execute(config, loops, types=scanned.types, actions=actions, total=_total(classified),
                               state=state, summary=summary, report=report, key=config.key,
                               create_only=config.mode == "create-only")
            # The next run's plan reads this snapshot instead of every hash in SQLite (~1 s per million).
            hashes = hashes_after(index.frame, changes) if changes is not None else state.hashes()
            state.save_snapshot(StateIndex.of(hashes).frame)
            result.interrupted = runtime.should_stop()
        summary.requests = loops.requests if loops else 0
    return result


def limited(frame: pl.DataFrame, limit: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first ``limit`` valid rows of the source, and the rest (a trial run processes only those)."""
    if limit is None or frame.height <= limit:
        return frame, frame.clear()
    ordered = frame.sort(ROW)
    return ordered.head(limit), ordered.slice(limit)


def for_mode(classified: Classified, mode: Mode) -> tuple[Classified, list[tuple[str, pl.DataFrame, str]]]:
    """Drop what the sync mode forbids; returns what was dropped as (action, rows, reason)."""
    if mode == "create-only" and classified.changed.height:
        reason = "changed, but --mode create-only never updates an existing contact"
        return replace(classified, changed=classified.changed.clear()), [("update", classified.changed, reason)]
    if mode == "update-only" and classified.new.height:
        reason = "new to the state: --mode update-only only updates contacts bulksync synced before"
        return replace(classified, new=classified.new.clear()), [("create", classified.new, reason)]
    return classified, []


def apply_plan(plan_path: Path, config: SyncConfig, runtime: Runtime | None = None) -> SyncResult:
    """Carry out exactly the actions of a plan file, if its state has not moved on since."""
    runtime = runtime or Runtime()
    started = runtime.clock()
    check_credentials(config.http)
    header, actions = read_plan(plan_path)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see _connect)
    state_path = Path(header.state)
    with (
        run_lock(state_path),
        StateStore.open(state_path) as state,
        Connection(config.http, runtime, "create" if header.create_via == "create" else "update") as loops,
    ):
        state.check_key(header.key)
        check_plan_is_current(header, actions, state)
        filled = sorted({name for action in actions for name, value in action.send.items() if value is not None})
        account = remembered(state)
        if _needs_account(account, filled, []):
            account = fetch_account(loops)
            remember(state, account)
        notes = ensure_properties(filled, header.types, account, loops, state, create=config.create_properties,
                                  where=f"{plan_path}:1")
        summary = Summary(rejected=header.rejected, unchanged=header.unchanged)
        with _outputs(config, summary, runtime.clock, started) as report:
            result = SyncResult(summary, report.path, plan_path=plan_path, notes=notes)
            _execute(config, loops, types=header.types, actions=actions, total=len(actions), state=state,
                     summary=summary, report=report, key=header.key, create_only=header.mode == "create-only")
            result.interrupted = runtime.should_stop()
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


def record_baseline(
    source_path: Path,
    state_path: Path,
    key: KeyField = "email",
    encoding: str = "utf-8",
    *,
    spec: MappingSpec | None = None,
    delimiter: str | None = None,
    loops: Connection | None = None,
) -> Summary:
    """Record ``source`` as already synced, writing nothing to Loops (for an audience already up to date).

    With a connection, the account's property types are read first, so values are recorded as a
    sync would type them (otherwise the first sync would re-send every typed value once).
    """
    with run_lock(state_path):
        stream = open_source(source_path, encoding, delimiter)
        with StateStore.open(state_path) as state:
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


def iter_actions(
    classified: Classified, state: StateStore, options: PlanOptions, *, delete_details: bool = True
) -> Iterator[Action]:
    """Actions in source order, built a slice at a time so memory holds only one slice of rows.

    A delete's ``before`` (what Loops has from us) shows in no report: it is read from the state
    only when ``delete_details`` (a plan file records it).
    """
    for chunk in classified.new.iter_slices(SLICE_ROWS):
        for row in chunk.iter_rows(named=True):
            yield plan_create(row, options)
    for chunk in classified.changed.iter_slices(SLICE_ROWS):
        previous = state.fields_for(chunk[KEY].to_list())
        yield from plan_updates(chunk.iter_rows(named=True), previous, options)
    for start in range(0, len(classified.missing), SLICE_ROWS):
        keys = classified.missing[start : start + SLICE_ROWS]
        previous = state.fields_for(keys) if delete_details else {}
        for key in keys:
            yield plan_delete(key, previous.get(key, {}), options)


def _total(classified: Classified) -> int:
    return classified.new.height + classified.changed.height + len(classified.missing)


@contextmanager
def _outputs(config: SyncConfig, summary: Summary, clock: Clock, started: float) -> Iterator[ReportWriter]:
    """The per-row report while the run lasts; the summary JSON whatever way it ends."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"  # two runs a second apart differ
    extension = "jsonl" if config.report_format == "jsonl" else "csv"
    if config.report_path:
        path = config.report_path
    elif config.report_dir:
        path = config.report_dir / f"{stamp}-report.{extension}"
    else:
        path = Path(f"bulksync-report-{stamp}.{extension}")
    report = ReportWriter(path, config.report_format)
    try:
        yield report
    finally:
        report.close()
        summary.duration_s = clock() - started
        summaries = [config.summary_json_path, config.report_dir and config.report_dir / f"{stamp}-summary.json"]
        for target in filter(None, summaries):
            write_json(target, summary.to_json())


def _plan_writer(
    config: SyncConfig, state: StateStore, scanned: Scanned, total: int, unchanged: int
) -> PlanWriter | None:
    if config.plan_path is None:
        return None
    header = PlanHeader(
        source=str(config.source), state=str(config.state_path.resolve()), key=config.key,
        generation=state.generation(), created_at=utc_now(), types=scanned.types, actions=total,
        rejected=scanned.rejects.height, mode=config.mode, unchanged=unchanged,
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


class _StateRecorder:
    """Writes confirmed outcomes to state in small transactions: after confirmation, never before."""

    def __init__(self, state: StateStore, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._saves: list[tuple[str, int, Fields, bool]] = []
        self._forgets: list[str] = []
        self._last_flush = clock()
        # Every key written and its new hash (None: forgotten), to refresh the hash snapshot at the end;
        # after a run writing very many contacts the snapshot is read back from the database instead.
        self.changes: dict[str, int | None] | None = {}

    def add(self, outcome: Outcome) -> None:
        action = outcome.action
        if not outcome.ok or outcome.sent is None:
            return
        if action.kind == "delete":
            self._forgets.append(action.key)
            self._track(action.key, None)
        else:
            assert action.row_hash is not None
            after = applied(action.before, outcome.sent)
            self._saves.append((action.key, action.row_hash, after, held_back(action, outcome.sent)))
            self._track(action.key, action.row_hash)
        pending = len(self._saves) + len(self._forgets)
        if pending >= STATE_COMMIT_EVERY or self._clock() - self._last_flush >= STATE_COMMIT_SECONDS:
            self.flush()

    def _track(self, key: str, row_hash: int | None) -> None:
        if self.changes is not None:
            self.changes[key] = row_hash
            if len(self.changes) > SNAPSHOT_TRACK_LIMIT:
                self.changes = None

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
    loops: Connection,
    *,
    types: dict[str, str],
    actions: Iterable[Action],
    total: int,
    state: StateStore,
    summary: Summary,
    report: ReportWriter,
    key: str,
    create_only: bool = False,
) -> dict[str, int | None] | None:
    """Push ``actions`` to Loops, recording each confirmed one in state and every one in the report.

    Returns the keys whose state changed with their new hashes (None for deleted), if not too many.
    """
    runtime = loops.runtime
    pusher = loops.pusher(types, create_only=create_only)
    recorder = _StateRecorder(state, runtime.clock)
    from tqdm import tqdm  # noqa: PLC0415 (only a run that sends shows progress)

    progress = tqdm(total=total, unit="contact", disable=not config.progress, dynamic_ncols=True)
    state.set_meta({"key": key, "last_run_started": utc_now(), "last_run_outcome": "running"})

    def on_outcome(outcome: Outcome) -> None:
        recorder.add(outcome)
        report.outcome(outcome)
        if outcome.exists:
            summary.exists += 1
        elif outcome.ok:
            summary.count(outcome.action)
        else:
            summary.failed += 1
            action = outcome.action
            log.warning("%s of %s failed: %s", action.kind, action.key, outcome.error,
                        extra=logs.context(action.row, action.key, outcome.http_status, outcome.attempts))
        progress.update(1)

    outcome = "failed"
    try:
        loops.check_key()  # a bad key fails here, after one request, before any write
        push_all(actions, pusher.execute, config.http.concurrency, on_outcome, should_stop=runtime.should_stop)
        outcome = "interrupted" if runtime.should_stop() else ("failed rows" if summary.failed else "ok")
    finally:
        recorder.flush()
        summary.requests = loops.requests
        progress.close()
        state.set_meta({"last_run_finished": utc_now(), "last_run_outcome": outcome})
    return recorder.changes
