"""The ``bulksync`` command: flags in, a config out, the library does the work, exit codes at the edge."""

from __future__ import annotations

import gc
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from bulksync import logs
from bulksync.cli.commands import Command, refuse_log_file_clash, sync_config
from bulksync.cli.parser import build_parser
from bulksync.errors import BulksyncError, ExitStatus, printable
from bulksync.location import STATE_ENV, url_secrets
from bulksync.logs import redact

__all__ = ["build_parser", "console", "main", "sync_config"]


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
