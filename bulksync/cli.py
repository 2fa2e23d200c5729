"""The ``bulksync`` command: flags in, a config out, the library does the work, exit codes at the edge."""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from bulksync import __version__, logs
from bulksync.check import render_check, run_check
from bulksync.config import (
    DEFAULT_BASE_URL,
    DEFAULT_STATE_PATH,
    SOURCE_FORMATS,
    SYNC_OPTIONS,
    RunLimit,
    Runtime,
    SyncConfig,
    delimiter,
    duration,
    positive_number,
    source_location,
    storage_option,
    whole_number,
)
from bulksync.config import sync_config as build_sync_config
from bulksync.emulator import cli as emulator_cli
from bulksync.errors import BulksyncError, ConfigError, ExitStatus, Interrupted, StateError, printable
from bulksync.export import ExportOptions, refuse_export_clashes, run_export
from bulksync.files import refuse_clashes
from bulksync.location import STATE_ENV, StateURL, describe, state_location, state_noun, url_secrets
from bulksync.logs import redact
from bulksync.report.drift import render_verify
from bulksync.report.text import render_preview, render_summary
from bulksync.report.upload import DEFAULT_ROWS_PER_FILE, render_export
from bulksync.source.location import locate
from bulksync.source.mapping_file import PRESETS, mapping_spec
from bulksync.source.read import open_source
from bulksync.state import lock_for, open_state, state_exists
from bulksync.state.lock import LOCK_CLASS, lock_key
from bulksync.sync import SyncResult, apply_plan, check_credentials, record_baseline, run_sync
from bulksync.verify import DEFAULT_SAMPLE, VerifyOptions, run_verify

log = logging.getLogger("bulksync")
STOPPING = "stopping: finishing requests in flight, then saving state (signal again to abort)"
Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _flag_type(parse: Callable[[str], object], name: str) -> Callable[[str], object]:
    """An argparse type from one of the parsers the Python API uses too (one rule for both doors)."""

    def checked(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = name
    return checked


_positive_float = _flag_type(positive_number, "positive_number")
_positive_int = _flag_type(lambda text: whole_number(text, 1), "whole_number")
_non_negative_int = _flag_type(lambda text: whole_number(text, 0), "whole_number")
_delimiter = _flag_type(delimiter, "delimiter")
_duration = _flag_type(duration, "duration")
_storage_option = _flag_type(storage_option, "storage_option")


def _run_limit(text: str) -> RunLimit:
    try:
        return RunLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a count such as 25 or a share such as 5% ({exc})") from None


def _add_state_argument(parser: argparse.ArgumentParser) -> None:
    # A string default goes through the type too: a bad $BULKSYNC_STATE is a usage error, not a crash.
    parser.add_argument("--state", type=_flag_type(state_location, "state"), metavar="PATH|URL",
                        default=os.environ.get(STATE_ENV) or str(DEFAULT_STATE_PATH),
                        help=f"state file, or a postgresql:// URL (default: ${STATE_ENV}, else {DEFAULT_STATE_PATH})")


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=source_location, metavar="SOURCE",
                        help=".csv, .tsv, .jsonl or .ndjson (optionally .gz) or .parquet; - for standard input; "
                             "or an s3://, gs://, az:// or https:// URL")
    parser.add_argument("--format", choices=SOURCE_FORMATS,
                        help="the source's format (default: from its name; standard input needs it)")
    parser.add_argument("--storage-option", type=_storage_option, action="append", metavar="KEY=VALUE",
                        help="a setting for a URL source beyond the environment's (repeatable), "
                             "e.g. aws_region=eu-west-1")
    parser.add_argument("--mapping", type=Path, metavar="FILE.toml", help="map the source's columns (see README)")
    parser.add_argument("--preset", metavar="NAME", help=f"a built-in mapping: {', '.join(PRESETS)}")
    parser.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                        help="CSV separator (default: detected from the header among , ; and tab)")
    parser.add_argument("--encoding", default="utf-8", help="source text encoding (default: utf-8)")


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", type=Path, help="per-row report (default: bulksync-report-<UTC time>.csv)")
    parser.add_argument("--report-dir", type=Path, metavar="DIR",
                        help="keep a history: DIR/<UTC time>-report.csv and DIR/<UTC time>-summary.json per run")
    parser.add_argument("--report-format", choices=["csv", "jsonl"], default="csv", help="per-row report format")
    parser.add_argument("--summary-json", type=Path, help="write the run's counts as JSON here")


def _add_push_arguments(parser: argparse.ArgumentParser, *, planning: bool = True) -> None:
    parser.add_argument("--rate-limit", type=_positive_float, metavar="RPS",
                        help="requests per second at most (default: just under the limit Loops announces, "
                             "10/s per team, less what the team's other clients use)")
    parser.add_argument("--concurrency", type=_positive_int, default=32, metavar="N",
                        help="requests in flight at most (default: 32); below it, as many as the rate limit "
                             "times the latency measured need")
    parser.add_argument("--max-retries", type=_non_negative_int, default=6, metavar="N",
                        help="retries per request on 429, 5xx and network errors (default: 6)")
    if planning:  # a plan fixes its requests: apply takes them as they are
        parser.add_argument("--create-via", choices=["create", "update"], default="update",
                            help="how to write contacts new to the state: update (default: Loops' upsert, one "
                                 "request each, never re-subscribing) or create (a 409 then falls back to update)")
    parser.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                        help="give up on a response after this long and retry (default: 30)")
    parser.add_argument("--outage-wait", type=_duration, default=900.0, metavar="DURATION",
                        help="when Loops fails every request, hold and probe this long (90s, 15m, 1h) before "
                             "stopping cleanly; rows not sent go next run (default: 15m)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway off a terminal)")
    parser.add_argument("--base-url", help=f"Loops API base URL (default: $LOOPS_BASE_URL or {DEFAULT_BASE_URL})")


def _logging_parent() -> argparse.ArgumentParser:
    """Logging flags, accepted before or after the command."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also log one line per HTTP request")
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors (never the API key)")
    parent.add_argument("--log-file", type=Path, metavar="PATH", default=argparse.SUPPRESS,
                        help="append the log lines to this file too")
    parent.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS,
                        help="log lines as text (default) or JSON objects")
    return parent


def _add_reading_commands(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """The commands that send no contact: ``check`` (the preflight), ``export`` (files for Loops' CSV
    upload) and ``verify`` (the state against Loops). Their requests go one at a time."""
    reads = {"concurrency": 1, "max_retries": 6, "timeout": 30.0,
             "stopping": "stopping: finishing the request in flight (signal again to abort)"}
    check = add_command("check", help="preflight: would a sync of SOURCE run clean? (sends no write)")
    _add_source_arguments(check)
    check.add_argument("--base-url", help=f"Loops API base URL (default: $LOOPS_BASE_URL or {DEFAULT_BASE_URL})")
    check.set_defaults(run=_run_check, rate_limit=None, **reads)
    export = add_command("export", help="write SOURCE as files for Loops' CSV upload, for a first load that "
                                        "starts no loop (sends no contact)")
    _add_source_arguments(export)
    export.add_argument("--to", type=Path, required=True, metavar="DIR",
                        help="the folder for the upload files, manifest.json and UPLOAD.md")
    export.add_argument("--key", choices=["email", "userId"], default="email", help="what identifies a contact")
    export.add_argument("--rows-per-file", type=_positive_int, default=DEFAULT_ROWS_PER_FILE, metavar="N",
                        help=f"rows per upload file at most (default: {DEFAULT_ROWS_PER_FILE:,})")
    export.add_argument("--force", action="store_true",
                        help="replace an earlier export in DIR: only the files its manifest.json lists, with its "
                             "UPLOAD.md and rejected-rows.csv")
    export.add_argument("--create-properties", action="store_true",
                        help="create the custom properties the files fill that Loops does not have yet")
    export.add_argument("--report", type=Path, help="the rejected rows (default: DIR/rejected-rows.csv)")
    _add_state_argument(export)  # named in UPLOAD.md's baseline command: export itself writes no state
    export.add_argument("--base-url", help="with LOOPS_API_KEY set, the account's properties and lists are read "
                                           "(no write) to type values and resolve list names")
    export.set_defaults(run=_run_export, rate_limit=None, **reads)
    verify = add_command("verify", help="compare the state with what Loops holds (sends no write)")
    _add_state_argument(verify)
    chosen = verify.add_mutually_exclusive_group()
    chosen.add_argument("--sample", type=_positive_int, default=DEFAULT_SAMPLE, metavar="N",
                        help=f"check a random sample of N contacts (default: {DEFAULT_SAMPLE})")
    chosen.add_argument("--all", action="store_true",
                        help="check every contact in the state: one request each, about 28 hours per million")
    verify.add_argument("--seed", type=_non_negative_int, metavar="N", help="draw the same sample again")
    verify.add_argument("--report", type=Path,
                        help="one CSV line per difference (default: bulksync-verify-<UTC time>.csv)")
    verify.add_argument("--rate-limit", type=_positive_float, metavar="RPS",
                        help="requests per second at most (default: paced like a sync)")
    verify.add_argument("--strict", action="store_true",
                        help="count contacts who unsubscribed in Loops as drift too (exit 1; by default they are "
                             "listed but are no drift)")
    verify.add_argument("--base-url", help=f"Loops API base URL (default: $LOOPS_BASE_URL or {DEFAULT_BASE_URL})")
    verify.set_defaults(run=_run_verify, **reads)
    verify.set_defaults(stopping="stopping: finishing the lookup in flight; the report keeps what was found "
                                 "(signal again to abort)")


def build_parser() -> argparse.ArgumentParser:
    logging_flags = _logging_parent()
    parser = argparse.ArgumentParser(
        prog="bulksync", description="Keep a Loops.so audience in sync with a CSV or JSONL file of contacts.",
        parents=[logging_flags],
    )
    parser.add_argument("--version", action="version", version=f"bulksync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_command = functools.partial(commands.add_parser, parents=[logging_flags])

    sync = add_command("sync", help="sync a CSV/JSONL file into Loops")
    _add_source_arguments(sync)
    sync.add_argument("--dry-run", action="store_true", help="plan and report, send no write, leave state alone")
    sync.add_argument("--plan", type=Path, metavar="PATH", help="with --dry-run: write the full plan as JSONL")
    _add_state_argument(sync)
    sync.add_argument("--key", choices=["email", "userId"], default="email", help="what identifies a contact")
    _add_output_arguments(sync)
    sync.add_argument("--delete-missing", action="store_true", help="delete synced contacts absent from SOURCE")
    sync.add_argument("--max-delete", type=_run_limit, default=RunLimit(), metavar="N|N%",
                      help="most deletions a run may make (default: refuse more than 10 and more than 10%%)")
    sync.add_argument("--max-clear", type=_run_limit, default=RunLimit(), metavar="N|N%",
                      help="most contacts a run may clear a field of (default: refuse more than 10 and more "
                           "than 10%%)")
    sync.add_argument("--keep-empty", action="store_true", help="empty cells leave Loops' value alone")
    sync.add_argument("--resubscribe", action="store_true",
                      help="send subscribed=true to existing contacts (re-subscribes people)")
    sync.add_argument("--create-properties", action="store_true",
                      help="create the custom properties the source needs that Loops does not have yet")
    sync.add_argument("--mode", choices=["upsert", "create-only", "update-only"], default="upsert",
                      help="upsert (default): create and update; create-only: never touch an existing contact; "
                           "update-only: only contacts bulksync synced before")
    sync.add_argument("--limit", type=_positive_int, metavar="N",
                      help="process only the first N valid rows (a trial run); the rest stays unsynced")
    _add_push_arguments(sync)
    sync.set_defaults(run=_run_sync)

    apply = add_command("apply", help="carry out a plan made by 'sync --dry-run --plan'")
    apply.add_argument("plan", type=Path, metavar="PLAN", help="the plan file (JSONL)")
    _add_output_arguments(apply)
    _add_push_arguments(apply, planning=False)
    apply.add_argument("--create-properties", action="store_true",
                       help="create the custom properties the plan needs that Loops does not have yet")
    apply.set_defaults(run=_run_apply)

    state = add_command("state", help="look at or prepare the state file")
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    baseline = state_commands.add_parser(
        "baseline", parents=[logging_flags], help="record SOURCE as already synced, sending nothing"
    )
    _add_source_arguments(baseline)
    _add_state_argument(baseline)
    baseline.add_argument("--key", choices=["email", "userId"], default="email", help="what identifies a contact")
    baseline.add_argument("--base-url", help="with LOOPS_API_KEY set, the account's property types are read "
                                             "(no write) so values are recorded as a sync types them")
    baseline.set_defaults(run=_run_baseline)
    show = state_commands.add_parser("show", parents=[logging_flags], help="counts, key, last run and its outcome")
    _add_state_argument(show)
    show.set_defaults(run=_run_show)
    drop = state_commands.add_parser(
        "drop-tombstone", parents=[logging_flags],
        help="forget that KEY was deleted unsubscribed: if it comes back it is created as any new contact",
    )
    drop.add_argument("tombstone_key", metavar="KEY", help="the email (or userId) of the deleted contact")
    _add_state_argument(drop)
    drop.set_defaults(run=_run_drop_tombstone)

    _add_reading_commands(add_command)
    emulator = add_command("emulator", help="run the bundled Loops API emulator on loopback")
    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(run=lambda args, out, err: emulator_cli.run(args))
    return parser


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


def _run_sync(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = sync_config(args, dict(os.environ), err)
    with _runtime(args) as (runtime, signals):
        result = run_sync(config, runtime)
    if config.dry_run:
        out.write(render_preview(result) + "\n")
    return _finish(result, signals, out)


def _run_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = sync_config(args, dict(os.environ), err)
    with _runtime(args) as (runtime, signals):
        result = apply_plan(args.plan, config, runtime)
    return _finish(result, signals, out)


def _run_baseline(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


def _run_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    check_credentials(http)
    spec = mapping_spec(args.mapping, args.preset)
    source = open_source(args.source, args.encoding, args.delimiter, fmt=args.format,
                         storage_options=args.storage_option)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see _run_baseline)

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


def _run_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    options = _export_options(args)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see _run_baseline)

    with _runtime(args) as (runtime, _), (Connection(http, runtime) if http.api_key else nullcontext()) as loops:
        result = run_export(options, loops)
    out.write(render_export(result) + "\n")
    return ExitStatus.OK


def _run_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    http = sync_config(args, dict(os.environ), err).http
    if not http.api_key:
        raise ConfigError("verify looks contacts up in Loops: set LOOPS_API_KEY")
    options = _verify_options(args)
    from bulksync.loops.connection import Connection  # noqa: PLC0415 (see _run_baseline)

    with _runtime(args) as (runtime, _), Connection(http, runtime) as loops:
        result = run_verify(options, loops, runtime)
    out.write(render_verify(result) + "\n")
    return ExitStatus.ROWS_FAILED if result.drifted else ExitStatus.OK


def _verify_options(args: argparse.Namespace) -> VerifyOptions:
    return VerifyOptions(args.state, None if args.all else args.sample, args.seed, args.report, strict=args.strict)


def _run_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


def _run_drop_tombstone(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not state_exists(args.state):
        raise StateError(f"{args.state}: no such {state_noun(args.state)}")
    key = args.tombstone_key.strip().lower() if "@" in args.tombstone_key else args.tombstone_key.strip()
    with lock_for(args.state), open_state(args.state) as state:
        if not state.drop_tombstone(key):
            raise StateError(f"{args.state} holds no tombstone for {key}; 'bulksync state show' counts them")
    out.write(f"Dropped the tombstone of {key}: if it comes back, it is created as any new contact.\n")
    return ExitStatus.OK


def console() -> int:
    """The ``bulksync`` command (and ``python -m bulksync``): :func:`main` for a process of its own."""
    # Everything imported so far lives until exit: frozen, the collector never scans it again, and
    # the interpreter's last collection at exit is 0.15 s shorter. Not in main(): tests call it.
    gc.freeze()
    return main()


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] | None = None,
    transport: Any = None,
) -> int:
    """Entry point; returns the exit status.

    ``out``/``err`` default to the process's streams; ``sleep`` (for tests) replaces every wait
    of the throttle and the retries; ``transport`` (for tests) is the httpx transport every request
    goes through, such as the emulator's in-process one.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.sleep, args.transport = sleep, transport
    raw_key = os.environ.get("LOOPS_API_KEY", "")
    # The key, and each line of a key that holds line breaks (refused, but never to be echoed either).
    secrets = sorted({part for part in (raw_key.strip(), *raw_key.split()) if len(part) >= 8 or part == raw_key.strip()}
                     - {""}, key=len, reverse=True)
    secrets += url_secrets(getattr(args, "state", None), os.environ.get(STATE_ENV))  # a state URL's password
    secrets += [value for _, value in getattr(args, "storage_option", None) or [] if len(value) >= 8]  # keys, tokens
    debug, verbose = getattr(args, "debug", False), getattr(args, "verbose", False)
    verbosity = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    run: Command = args.run
    try:
        log_file = getattr(args, "log_file", None)
        if log_file is not None:
            refuse_log_file_clash(args, log_file, dict(os.environ), err)  # before the log file is opened
        logs.configure(err, level=verbosity, secrets=secrets, log_file=log_file,
                       fmt=getattr(args, "log_format", "text"))
        return int(run(args, out, err))
    except BulksyncError as exc:
        if getattr(args, "debug", False):
            err.write(redact(traceback.format_exc(), secrets))
        err.write(redact(f"bulksync: error: {exc}\n", secrets))
        return int(exc.exit_status)
    except KeyboardInterrupt:
        err.write("bulksync: aborted\n")
        return int(ExitStatus.INTERRUPTED)
    except SystemExit:
        raise
    except BaseException as exc:  # a bug (polars panics are BaseException): still one line, no secret
        if getattr(args, "debug", False):
            err.write(redact(traceback.format_exc(), secrets))
        detail = printable(f"{type(exc).__name__}: {exc}")
        err.write(redact(f"bulksync: internal error: {detail} (rerun with --debug for the traceback, "
                         "and please report it)\n", secrets))
        return int(ExitStatus.ROWS_FAILED)
