"""A faithful, in-memory emulator of the Loops contacts API, in-process or on a loopback socket.

Its names load on first use (PEP 562): every bulksync command imports this package to build the
``emulator`` subcommand's options, and only that command needs the emulator (and httpx).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulksync.emulator.core import LoopsEmulator
    from bulksync.emulator.faults import Faults
    from bulksync.emulator.server import EmulatorServer
    from bulksync.emulator.wire import EmulatorResponse

_HOMES = {"EmulatorResponse": "wire", "Faults": "faults", "LoopsEmulator": "core", "EmulatorServer": "server"}
__all__ = ["EmulatorResponse", "EmulatorServer", "Faults", "LoopsEmulator"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
