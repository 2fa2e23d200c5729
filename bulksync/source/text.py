"""Source bytes as text: a byte the encoding does not allow is named by its line, with a hint to pass ``--encoding``."""

from __future__ import annotations

import re

from bulksync.errors import InputError
from bulksync.source.location import SourcePath

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def utf8_text(path: SourcePath, data: bytes, lines_before: int = 0) -> str:
    """``data`` decoded as UTF-8; ``lines_before`` counts the source lines that precede it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise undecodable(path, data, exc.start, "utf-8", lines_before) from None


def undecodable(path: SourcePath, data: bytes, position: int, encoding: str, lines_before: int) -> InputError:
    """The bad byte at ``position`` names its line (any line ends) and suggests ``--encoding``."""
    line = lines_before + len(_LINE_BREAK.findall(data, 0, position)) + 1
    return InputError(
        f"{path}:{line}: byte 0x{data[position]:02x} is not valid {encoding}; "
        "pass the file's encoding, e.g. --encoding latin-1 or --encoding cp1252"
    )
