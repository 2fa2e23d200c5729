"""`bulksync emulator`: serve a Loops API emulator on a loopback address until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

# (Faults field, help) for the options that inject failures or latency; each becomes --field-name.
_FAULT_OPTIONS = (
    ("latency_ms", "latency added to each request"),
    ("jitter_ms", "plus a random 0..N ms"),
    ("spike_rate", "share of requests with a latency spike"),
    ("spike_ms", "length of a latency spike"),
    ("fail_rate", "share of requests answered 500"),
    ("html_502_rate", "share answered 502 with an HTML body"),
    ("drop_rate", "share whose connection is dropped"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to `parser`."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="loopback address to listen on (default %(default)s)")
    add("--port", type=int, default=8787, help="port, 0 for a free one (default %(default)s)")
    add("--api-key", default="test-key", help="API key clients must send (default %(default)s)")
    add("--rate-limit", type=float, default=10.0, help="requests per second, 0 = none (default %(default)s)")
    add("--background-rps", type=float, default=0.0, help="the team's other traffic, in requests per second")
    for name, help_text in _FAULT_OPTIONS:
        add(f"--{name.replace('_', '-')}", type=float, default=0.0, help=help_text)
    add("--strict-properties", action="store_true", help="reject unknown custom properties")
    add("--seed", type=int, default=None, help="seed of the random generator (faults and ids)")
    add("--ready-file", type=Path, default=None, help="write the base URL to this file once listening")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a clean stop, 2 for bad options."""
    # Imported here: every bulksync command builds this parser, only this one serves.
    from bulksync.emulator import EmulatorServer, Faults, LoopsEmulator  # noqa: PLC0415

    try:
        faults = Faults(**{name: getattr(args, name) for name, _ in _FAULT_OPTIONS})
        emulator = LoopsEmulator(
            args.api_key,
            args.rate_limit,
            faults=faults,
            background_rps=args.background_rps,
            strict_properties=args.strict_properties,
            seed=args.seed,
        )
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
        print(f"Loops emulator listening on {server.url} (api key: {args.api_key})", flush=True)
        if args.ready_file is not None:
            _write_atomically(args.ready_file, server.url + "\n")
        _wait_for_signal()
    finally:
        server.stop()
    return 0


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
