"""The ``bulksync`` command line: every command's flags, parsed by the same rules as the Python API's options."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from pathlib import Path

from bulksync import __version__
from bulksync.cli.commands import (
    apply_command,
    baseline_command,
    check_command,
    drop_tombstone_command,
    export_command,
    show_command,
    sync_command,
    verify_command,
)
from bulksync.config import (
    DEFAULT_BASE_URL,
    DEFAULT_STATE_PATH,
    SOURCE_FORMATS,
    RunLimit,
    delimiter,
    duration,
    positive_number,
    source_location,
    storage_option,
    whole_number,
)
from bulksync.emulator import cli as emulator_cli
from bulksync.location import STATE_ENV, state_location
from bulksync.report.upload import DEFAULT_ROWS_PER_FILE
from bulksync.source.mapping_file import PRESETS
from bulksync.verify import DEFAULT_SAMPLE


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
    check.set_defaults(run=check_command, rate_limit=None, **reads)
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
    export.set_defaults(run=export_command, rate_limit=None, **reads)
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
    verify.set_defaults(run=verify_command, **reads)
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
    sync.set_defaults(run=sync_command)

    apply = add_command("apply", help="carry out a plan made by 'sync --dry-run --plan'")
    apply.add_argument("plan", type=Path, metavar="PLAN", help="the plan file (JSONL)")
    _add_output_arguments(apply)
    _add_push_arguments(apply, planning=False)
    apply.add_argument("--create-properties", action="store_true",
                       help="create the custom properties the plan needs that Loops does not have yet")
    apply.set_defaults(run=apply_command)

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
    baseline.set_defaults(run=baseline_command)
    show = state_commands.add_parser("show", parents=[logging_flags], help="counts, key, last run and its outcome")
    _add_state_argument(show)
    show.set_defaults(run=show_command)
    drop = state_commands.add_parser(
        "drop-tombstone", parents=[logging_flags],
        help="forget that KEY was deleted unsubscribed: if it comes back it is created as any new contact",
    )
    drop.add_argument("tombstone_key", metavar="KEY", help="the email (or userId) of the deleted contact")
    _add_state_argument(drop)
    drop.set_defaults(run=drop_tombstone_command)

    _add_reading_commands(add_command)
    emulator = add_command("emulator", help="run the bundled Loops API emulator on loopback")
    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(run=lambda args, out, err: emulator_cli.run(args))
    return parser


