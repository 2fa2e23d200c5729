"""Where a source's bytes come from: a local file (a ``Path``), standard input, or a URL.

A URL is object storage (``s3://bucket/key``, ``gs://bucket/key``, ``az://container/key``) or a web
server (``https://``; plain ``http://`` to loopback only, as for the Loops base URL). ``str()`` of a
:class:`Location` is what messages show: ``<stdin>``, or the URL without its query string or user
info, where a presigned URL keeps its signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from bulksync.config import SOURCE_FORMATS, STDIN, is_loopback
from bulksync.errors import ConfigError, InputError

STORE_SCHEMES = ("s3", "gs", "az")  # object storage, read through obstore (polars' own object_store crate)
WEB_SCHEMES = ("https", "http")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True, repr=False)
class Location:
    """A source that is no local file: standard input (``given`` is ``-``) or a URL, as typed."""

    given: str

    @property
    def kind(self) -> Literal["stdin", "url"]:
        return "stdin" if self.given == STDIN else "url"

    @property
    def scheme(self) -> str:
        return urlsplit(self.given).scheme.lower()

    @property
    def name(self) -> str:
        """The last segment of the URL's path (what a preset's file-name patterns look at)."""
        return PurePosixPath(urlsplit(self.given).path).name if self.kind == "url" else ""

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.name).suffixes

    def __str__(self) -> str:
        if self.kind == "stdin":
            return "<stdin>"
        parts = urlsplit(self.given)
        host = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"


SourcePath = Path | Location  # how readers and messages name a source


def locate(source: Path | str | Location) -> SourcePath:
    """A local file's Path, or the :class:`Location` of standard input or a URL (checked here)."""
    if isinstance(source, Path | Location):
        return source
    if source != STDIN and "://" not in source:
        return Path(source)
    location = Location(source)
    if location.kind == "url":
        scheme, host = location.scheme, urlsplit(source).hostname or ""
        if scheme not in STORE_SCHEMES + WEB_SCHEMES:
            raise InputError(
                f"{location}: a source URL starts with s3://, gs://, az:// or https://, not {scheme}://; "
                "for a local file give its path"
            )
        if scheme == "http" and not is_loopback(host):
            raise InputError(f"refusing {location}: contacts are only read over https (plain http is allowed "
                             "for 127.0.0.1/localhost only)")
        if not host or (scheme in STORE_SCHEMES and not urlsplit(source).path.strip("/")):
            raise InputError(f"{location}: name the object too, as in {scheme}://bucket/path/contacts.csv")
    return location


def source_format(where: SourcePath, given: str | None) -> tuple[str, bool]:
    """The source's format (csv, tsv, jsonl or parquet) and whether its name says gzip (``.gz``).

    ``given`` (``--format``) wins over the name; standard input has no name, so it needs ``--format``.
    """
    suffixes = [s.lower() for s in where.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if given is not None:
        if given not in SOURCE_FORMATS:
            raise ConfigError(f"--format {given!r}: expected one of {', '.join(SOURCE_FORMATS)}")
        return given, gzipped
    if isinstance(where, Location) and where.kind == "stdin":
        raise ConfigError("reading standard input (-) needs --format csv, tsv or jsonl: it has no name to tell by "
                          "(gzip is recognised from the bytes)")
    extension = suffixes[-2 if gzipped else -1] if len(suffixes) > gzipped else ""
    if extension not in EXTENSIONS:
        shown = extension or "(no extension)"
        raise InputError(
            f"{where}: unknown source format {shown!r}; name the file .csv, .tsv, .jsonl, .ndjson (optionally .gz) "
            "or .parquet, or pass --format"
        )
    return EXTENSIONS[extension], gzipped
