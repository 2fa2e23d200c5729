"""What each ``bulksync`` command does with its parsed flags: a config, the library call, the output,
and the signals that stop it gracefully."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import TextIO

from bulksync.check import render_check, run_check
from bulksync.config import (
    DEFAULT_STATE_PATH,
    SYNC_OPTIONS,
    Runtime,
    SyncConfig,
)
from bulksync.config import sync_config as build_sync_config
from bulksync.errors import ConfigError, ExitStatus, Interrupted, StateError
from bulksync.export import ExportOptions, refuse_export_clashes, run_export
from bulksync.files import refuse_clashes
from bulksync.location import STATE_ENV, StateURL, describe, state_noun
from bulksync.report.drift import render_verify
from bulksync.report.text import render_preview, render_summary
from bulksync.report.upload import render_export
from bulksync.source.location import locate
from bulksync.source.mapping_file import mapping_spec
from bulksync.source.read import open_source
from bulksync.state import lock_for, open_state, state_exists
from bulksync.state.lock import LOCK_CLASS, lock_key
from bulksync.sync import SyncResult, apply_plan, check_credentials, record_baseline, run_sync
from bulksync.verify import VerifyOptions, run_verify

log = logging.getLogger("bulksync")
STOPPING = "stopping: finishing requests in flight, then saving state (signal again to abort)"
Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


def sync_config(args: argparse.Namespace, environ: dict[str, str], stderr: TextIO) -> SyncConfig:
    """Flags and environment -> :class:`SyncConfig`, through the same builder as ``bulksync.sync()``."""
    given = vars(args)
    options = {name: given[name] for name in SYNC_OPTIONS if name in given}
    if args.command != "sync":
        options.pop("plan", None)  # apply's PLAN is the file to carry out, not a plan to write
    return build_sync_config(
        given.get("source", Path()), given.get("state", DEFAULT_STATE_PATH),
        base_url=given.get("base_url"), dry_run=given.get("dry_run", False), report=given.get("report"),
        progress=not given.get("no_progress", True) and stderr.isatty(), environ=environ, **options,
    )


def refuse_log_file_clash(args: argparse.Namespace, log_file: Path, environ: dict[str, str], err: TextIO) -> None:
    """``--log-file`` must not be the source, the state, a file beside it, or another output."""
    given = vars(args)
    if args.command == "export":  # its outputs include the files it writes into --to DIR
        refuse_export_clashes(_export_options(args), {"--log-file": log_file})
        return
    if args.command == "verify":
        verify = _verify_options(args)
        inputs, outputs = verify.inputs(), verify.outputs()
    elif "source" in given or args.command == "apply":
        config = sync_config(args, environ, err)
        inputs, outputs = config.inputs(), config.outputs()
        if args.command == "apply":
            inputs["PLAN"] = args.plan
    else:
        state = given.get("state")
        inputs, outputs = {"--state": state if isinstance(state, Path) else None}, {}
    refuse_clashes(inputs, {**outputs, "--log-file": log_file})


class _Signals:
    """First SIGINT/SIGTERM asks the run to stop gracefully; the exit status remembers which."""

    def __init__(self, stopping: str = STOPPING) -> None:
        self.stopping = stopping  # what the command does once asked to stop
        self.stop = threading.Event()
        self.status = ExitStatus.INTERRUPTED
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.stop.is_set()
        self.status = ExitStatus.TERMINATED if signum == signal.SIGTERM else ExitStatus.INTERRUPTED
        if again:
            raise KeyboardInterrupt  # _runtime turns it into the exit status of this signal
        self.stop.set()
        log.warning(self.stopping)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


@contextmanager
def _runtime(args: argparse.Namespace) -> Iterator[tuple[Runtime, _Signals]]:
    """Signals stop the run gracefully; every wait is on the stop event so a signal cuts it short."""
    with _Signals(getattr(args, "stopping", STOPPING)) as signals:
        sleep: Callable[[float], None] = args.sleep or (lambda seconds: _ignore(signals.stop.wait(seconds)))
        try:
            yield Runtime(transport=args.transport, sleep=sleep, stop=signals.stop), signals
        except Interrupted as exc:  # stopped before the push (the account fetch): 130 or 143 as signalled
            exc.exit_status = signals.status
            raise
        except KeyboardInterrupt:
            if not signals.stop.is_set():
                raise
            raise Interrupted("aborted by a second signal: requests in flight were abandoned; the next run "
                              "settles them", signals.status) from None


def _ignore(_: object) -> None:
    return None


def _finish(result: SyncResult, signals: _Signals, out: TextIO) -> int:
    out.write(render_summary(result.summary, result.report_path) + "\n")
    for note in result.notes:
        out.write(f"Note: {note}\n")
    if result.plan_path and result.summary.dry_run:
        out.write(f"Plan: {result.plan_path} (carry it out with: bulksync apply {result.plan_path})\n")
    if result.interrupted:
        return signals.status
    return ExitStatus.ROWS_FAILED if result.summary.failed else ExitStatus.OK


def sync_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = sync_config(args, dict(os.environ), err)
    with _runtime(args) as (runtime, signals):
        result = run_sync(config, runtime)
    if config.dry_run:
        out.write(render_preview(result) + "\n")
    return _finish(result, signals, out)


def apply_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = sync_config(args, dict(os.environ), err)
    with _runtime(args) as (runtime, signals):
        result = apply_plan(args.plan, config, runtime)
    return _finish(result, signals, out)


def baseline_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec = mapping_spec(args.mapping, args.preset)
    http = sync_config(args, dict(os.environ), err).http
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (httpx: start-up only the commands that talk pay)

    with _runtime(args) as (runtime, _), (Connection(http, runtime) if http.api_key else nullcontext()) as loops:
        summary = record_baseline(args.source, args.state, args.key, args.encoding, spec=spec,
                                  delimiter=args.delimiter, loops=loops, fmt=args.format,
                                  storage_options=args.storage_option)
    out.write(
        f"Recorded {summary.unchanged:,} contacts of {locate(args.source)} as already synced in {args.state} "
        f"({summary.rejected:,} rows rejected); nothing was sent.\n"
    )
    return ExitStatus.OK


def check_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    check_credentials(http)
    spec = mapping_spec(args.mapping, args.preset)
    source = open_source(args.source, args.encoding, args.delimiter, fmt=args.format,
                         storage_options=args.storage_option)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see baseline_command)

    with _runtime(args) as (runtime, _), Connection(http, runtime) as loops:
        result = run_check(source, spec, loops)
    out.write(render_check(result) + "\n")
    return ExitStatus.OK if result.ok else ExitStatus.ROWS_FAILED


def _export_options(args: argparse.Namespace) -> ExportOptions:
    return ExportOptions(
        args.source, args.to, mapping=args.mapping, preset=args.preset, encoding=args.encoding,
        delimiter=args.delimiter, source_format=args.format, storage_options=args.storage_option, key=args.key,
        rows_per_file=args.rows_per_file, force=args.force,
        create_properties=args.create_properties, report=args.report, state=args.state,
        state_from_environment=isinstance(args.state, StateURL) and args.state.url == os.environ.get(STATE_ENV),
    )


def export_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    options = _export_options(args)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see baseline_command)

    with _runtime(args) as (runtime, _), (Connection(http, runtime) if http.api_key else nullcontext()) as loops:
        result = run_export(options, loops, runtime.should_stop)
    out.write(render_export(result) + "\n")
    return ExitStatus.OK


def verify_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    if not http.api_key:
        raise ConfigError("verify looks contacts up in Loops: set LOOPS_API_KEY")
    options = _verify_options(args)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see baseline_command)

    with _runtime(args) as (runtime, _), Connection(http, runtime) as loops:
        result = run_verify(options, loops, runtime)
    out.write(render_verify(result) + "\n")
    return ExitStatus.ROWS_FAILED if result.drifted else ExitStatus.OK


def _verify_options(args: argparse.Namespace) -> VerifyOptions:
    return VerifyOptions(args.state, None if args.all else args.sample, args.seed, args.report, strict=args.strict)


def show_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not state_exists(args.state):
        raise StateError(f"{args.state}: no such {state_noun(args.state)}; a first sync (or 'bulksync state "
                         "baseline') makes it")
    with open_state(args.state, readonly=True) as state:
        rows = [
            (state_noun(args.state), describe(args.state)),
            *([("schema", f"{args.state.schema} (its lock in pg_locks: classid {LOCK_CLASS}, objid "
                          f"{lock_key(args.state.schema)})")] if isinstance(args.state, StateURL) else []),
            ("contacts", f"{state.count():,}"),
            ("key", state.meta("key") or "(not set yet)"),
            ("last run started", state.meta("last_run_started") or "never"),
            ("last run finished", state.meta("last_run_finished") or "never"),
            ("last run outcome", state.meta("last_run_outcome") or "none"),
            ("last baseline", state.meta("last_baseline") or "never"),
            ("tombstones", f"{state.tombstone_count():,} (deleted contacts kept unsubscribed if they come back)"),
        ]
    out.write("\n".join(f"{name:<18} {value}" for name, value in rows) + "\n")
    return ExitStatus.OK


def drop_tombstone_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not state_exists(args.state):
        raise StateError(f"{args.state}: no such {state_noun(args.state)}")
    key = args.tombstone_key.strip().lower() if "@" in args.tombstone_key else args.tombstone_key.strip()
    with lock_for(args.state), open_state(args.state) as state:
        if not state.drop_tombstone(key):
            raise StateError(f"{args.state} holds no tombstone for {key}; 'bulksync state show' counts them")
    out.write(f"Dropped the tombstone of {key}: if it comes back, it is created as any new contact.\n")
    return ExitStatus.OK


