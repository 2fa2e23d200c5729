"""A faithful, in-memory emulator of the Loops contacts API, in-process or on a loopback socket."""

from bulksync.emulator.core import EmulatorResponse, Faults, LoopsEmulator
from bulksync.emulator.server import EmulatorServer

__all__ = ["EmulatorResponse", "EmulatorServer", "Faults", "LoopsEmulator"]
