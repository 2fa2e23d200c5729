"""`bulksync emulator`: serve a Loops API emulator on a loopback address until interrupted.

The options added here take their values as text and run() checks them, so that a bad value is one
line on stderr and exit 2, like every other refusal of this command (argparse would add its usage).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bulksync.emulator.core import LoopsEmulator

# (Faults field, help) for the options that inject failures or latency; each becomes --field-name.
_FAULT_OPTIONS = (
    ("latency_ms", "latency added to each request"),
    ("jitter_ms", "plus a random 0..N ms"),
    ("spike_rate", "share of requests with a latency spike"),
    ("spike_ms", "length of a latency spike"),
    ("fail_rate", "share of requests answered 500"),
    ("html_502_rate", "share answered 502 with an HTML body"),
    ("drop_rate", "share whose connection is dropped"),
    ("arrival_jitter_ms", "network jitter on the way in: a request reaches the limiter 0..N ms after it is sent"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to `parser`."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="loopback address to listen on (default %(default)s)")
    add("--port", type=int, default=8787, help="port, 0 for a free one (default %(default)s)")
    add("--api-key", default="test-key", help="API key clients must send (default %(default)s)")
    add("--rate-limit", type=float, default=10.0, help="requests per second, 0 = none (default %(default)s)")
    add("--rate-algorithm", default="sliding-log", metavar="NAME",
        help="token-bucket, sliding-log (default: at most RATE requests in any 1 s), fixed-window or sliding-counter")
    add("--background-rps", type=float, default=0.0, help="the team's other traffic, in requests per second")
    for name, help_text in _FAULT_OPTIONS:
        add(f"--{name.replace('_', '-')}", type=float, default=0.0, help=help_text)
    add("--strict-properties", action="store_true", help="reject unknown custom properties")
    add("--seed", type=int, default=None, help="seed of the random generator (faults and ids)")
    add("--ready-file", type=Path, default=None, help="write the base URL to this file once listening")
    add("--list", action="append", default=[], metavar="ID:NAME", help="start with this mailing list (repeatable)")
    add("--property", action="append", default=[], metavar="NAME:TYPE",
        help="start with this custom property; TYPE: string, number, boolean or date (repeatable)")
    add("--seed-file", type=Path, default=None, metavar="FILE.json",
        help="start with the lists, properties and contacts of this JSON file (see the README)")
    add("--outage-at", default=None, metavar="SECONDS", help="start an outage SECONDS after listening starts")
    add("--outage-for", default=None, metavar="SECONDS",
        help="the outage's length (without --outage-at, it starts at once)")
    add("--outage-kind", default="500", metavar="KIND",
        help="how requests fail in the outage: 500 (default), 502, drop or hang")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a clean stop, 2 for bad options."""
    # Imported here: every bulksync command builds this parser, only this one serves.
    from bulksync.emulator import EmulatorServer  # noqa: PLC0415

    try:
        emulator, outage = _emulator(args)
        server = EmulatorServer(emulator, host=args.host, port=args.port)
    except ValueError as error:
        print(f"bulksync emulator: {error}", file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as error:
        where = f"{args.host}:{args.port}"
        print(f"bulksync emulator: cannot listen on {where}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        if outage is not None:  # counted from the moment it listens, on the emulator's clock
            emulator.start_outage(outage[1], args.outage_kind, after=outage[0])
        print(f"Loops emulator listening on {server.url} (api key: {args.api_key})", flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, server.url + "\n")
        _wait_for_signal()
    finally:
        server.stop()
    return 0


def _emulator(args: argparse.Namespace) -> tuple[LoopsEmulator, tuple[float, float] | None]:
    """The seeded emulator the options describe, and the outage to start (at, for). Raises ValueError."""
    from bulksync.emulator import Faults, LoopsEmulator  # noqa: PLC0415
    from bulksync.emulator.limiter import check_algorithm  # noqa: PLC0415
    from bulksync.emulator.outage import check_kind  # noqa: PLC0415
    from bulksync.emulator.seeding import from_flags, read_seed_file  # noqa: PLC0415

    # Every option is checked before anything is built: the first bad one is the error.
    check_algorithm(args.rate_algorithm)
    outage = _outage(args.outage_at, args.outage_for)
    check_kind(args.outage_kind)
    flag_seed = from_flags(args.list, args.property)
    file_seed = read_seed_file(args.seed_file) if args.seed_file is not None else None
    emulator = LoopsEmulator(
        args.api_key,
        args.rate_limit,
        faults=Faults(**{name: getattr(args, name) for name, _ in _FAULT_OPTIONS}),
        background_rps=args.background_rps,
        strict_properties=args.strict_properties,
        seed=args.seed,
        rate_algorithm=args.rate_algorithm,
    )
    # The flags' lists and properties go first: the file's contacts may use them.
    flag_seed.load_into(emulator, "--property")
    if file_seed is not None:
        file_seed.load_into(emulator, str(args.seed_file))
    return emulator, outage


def _outage(at: str | None, length: str | None) -> tuple[float, float] | None:
    """(start, length) in seconds from --outage-at and --outage-for, or None. Raises ValueError."""
    if at is not None and length is None:
        raise ValueError("--outage-at needs --outage-for SECONDS")
    if length is None:
        return None
    return (0.0 if at is None else _seconds("--outage-at", at)), _seconds("--outage-for", length)


def _seconds(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"{flag} expects seconds (0 or more), not {text!r}")
    return value


def _write_atomically(path: Path, text: str) -> None:
    """Write so that a script polling for the file never reads it half-written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A timed wait lets the main thread run the Python-level signal handler promptly.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
