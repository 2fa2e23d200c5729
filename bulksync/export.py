"""The first load through Loops' CSV upload (``bulksync export``): files to upload, not requests to send.

``run_export`` reads and maps the source as a sync would (the same mapping, validation and rejects;
with a connection, values are typed and list names resolved as the account says), writes the
contacts into DIR in the format of Loops' CSV upload (``report/upload.py``), with ``manifest.json``
and ``UPLOAD.md``, and a report of the rejected rows. It writes no state and sends no contact: the
only write it may make is creating custom properties, when asked to. After the upload, ``bulksync
state baseline`` records the audience, and the next sync sends only what changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from bulksync.columns import KEY, ROW
from bulksync.config import DEFAULT_STATE_PATH, STDIN, KeyField
from bulksync.errors import ConfigError
from bulksync.files import open_private, os_problem, refuse_clashes, unwritable
from bulksync.location import StateLocation
from bulksync.loops.account import custom_fields, fetch_account, mapped_source
from bulksync.loops.properties import ensure_properties
from bulksync.plan.normalise import normalise
from bulksync.report.upload import (
    CLEARS,
    DEFAULT_ROWS_PER_FILE,
    EXPORT_NAMES,
    GUIDE,
    MANIFEST,
    REJECTS,
    UPLOAD_GLOB,
    ExportResult,
    UploadFile,
    baseline_command,
    cells_equal,
    cells_starting,
    manifest,
    render_upload_guide,
    upload_files,
    upload_frame,
    write_upload_file,
)
from bulksync.report.writer import FORMULA_STARTS, ReportWriter, write_json
from bulksync.source.location import locate
from bulksync.source.mapping_file import mapping_spec
from bulksync.source.mapping_spec import target_problem
from bulksync.source.read import read_source

if TYPE_CHECKING:
    from bulksync.loops.connection import Connection

PROBE = ".bulksync-write-check"


@dataclass(frozen=True)
class ExportOptions:
    """What ``bulksync export`` was asked: the source as a sync reads it, and where the files go."""

    source: Path | str  # a file, or (as given) - for standard input or a URL
    to: Path
    mapping: Path | None = None
    preset: str | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    source_format: str | None = None
    storage_options: list[tuple[str, str]] | None = None
    key: KeyField = "email"
    rows_per_file: int = DEFAULT_ROWS_PER_FILE
    force: bool = False
    create_properties: bool = False
    report: Path | None = None  # default: DIR/rejected-rows.csv
    state: StateLocation = DEFAULT_STATE_PATH  # the state UPLOAD.md's baseline command records into

    def source_options(self) -> dict[str, str | None]:
        """The flags that read the source as this export did, for the baseline command (storage
        options are left out: their values may be secrets)."""
        delimiter = "tab" if self.delimiter == "\t" else self.delimiter
        return {"--preset": self.preset, "--mapping": str(self.mapping) if self.mapping else None,
                "--encoding": None if self.encoding == "utf-8" else self.encoding, "--delimiter": delimiter,
                "--format": self.source_format}


def run_export(options: ExportOptions, loops: Connection | None = None) -> ExportResult:
    """Write the upload files, manifest and guide for ``options.source`` into ``options.to``.

    Raises a :class:`BulksyncError` for anything that stops it; nothing is written into the folder
    before every check has passed.
    """
    to = options.to
    if options.create_properties and loops is None:
        raise ConfigError("--create-properties creates them in Loops: set LOOPS_API_KEY; nothing was read or sent")
    prepare_folder(to, options.force)
    spec = mapping_spec(options.mapping, options.preset)
    source = read_source(options.source, options.encoding, options.delimiter, fmt=options.source_format,
                         storage_options=options.storage_options)
    account = fetch_account(loops) if loops is not None else None
    mapped = mapped_source(source, spec, account)
    contacts = normalise(mapped, options.key)
    frame, where = contacts.frame, f"{source.path}:{source.header_line}"
    filled = [name for name in contacts.fields if frame[name].null_count() < frame.height]
    if account is None:  # with an account, ensure_properties says the same for the properties it lacks
        invalid = [problem for name in custom_fields(filled) if (problem := target_problem(name))]
        if invalid:
            raise ConfigError(f"{where}: {'; '.join(invalid)}; rename the column or map it with --mapping")
    files = upload_files(frame.drop(ROW, KEY), filled, options.rows_per_file)
    report = options.report or to / REJECTS
    replaced = _refuse_clashes(options, files, report)
    types = {name: contacts.types.get(name, "string") for name in custom_fields(filled)}
    missing = sorted((name, types[name]) for name in account.missing(filled)) if account else None
    created = ensure_properties(filled, types, account, loops, None, create=options.create_properties, where=where)
    result = _result(options, rejected=contacts.rejects.height, report=report, types=types,
                     missing=[] if options.create_properties else missing,
                     notes=created if options.create_properties else [])
    for path in replaced:
        path.unlink()
    lists = {list_id: name for name, list_id in account.lists.items()} if account else {}
    for file in files:
        shaped = upload_frame(file, filled)
        write_upload_file(to / file.name, shaped)
        result.files.append((file.name, file.rows, {list_id: lists.get(list_id, list_id) for list_id in file.lists}))
        result.columns[file.name] = shaped.columns
        result.formula_cells += cells_starting(shaped, FORMULA_STARTS)
        result.null_cells += cells_equal(shaped, CLEARS)
    _write_rejects(report, contacts.rejects)
    with open_private(to / GUIDE) as guide:
        guide.write(render_upload_guide(result))
    write_json(to / MANIFEST, manifest(result))  # last: a folder without it holds no finished export
    return result


def _refuse_clashes(options: ExportOptions, files: list[UploadFile], report: Path) -> list[Path]:
    """No file export writes (or, with ``--force``, removes) may be an input or another output.
    Returns the earlier export's files that ``--force`` replaces."""
    to = options.to
    replaced = earlier_export(to) if options.force else []
    inputs = {"SOURCE": options.source if isinstance(options.source, Path) else None, "--mapping": options.mapping}
    refuse_clashes(inputs, {"--report": report})
    new = [to / MANIFEST, to / GUIDE, *(to / file.name for file in files)]
    for path in dict.fromkeys((*new, *replaced)):  # one at a time: a refusal names each as --to
        refuse_clashes(inputs, {"--report": report if path in new else None, "--to": path})
    return replaced


def _write_rejects(report: Path, rejects: pl.DataFrame) -> None:
    writer = ReportWriter(report)
    try:
        for row, key, reason in rejects.iter_rows():
            writer.reject(row, key, reason)
    finally:
        writer.close()


def _result(options: ExportOptions, *, rejected: int, report: Path, types: dict[str, str],
            missing: list[tuple[str, str]] | None, notes: list[str]) -> ExportResult:
    where_from = locate(options.source)
    paths = (where_from, options.state, options.mapping)
    relative = any(isinstance(path, Path) and not path.is_absolute() for path in paths)
    caveats = []
    if not isinstance(where_from, Path):
        caveats.append("It reads standard input: pipe the same data into it." if where_from.kind == "stdin" else
                       "The source's URL is shown without its query or credentials: give it as you gave it to "
                       "the export.")
    if options.storage_options:
        caveats.append("Add the export's --storage-option settings too (their values are left out here).")
    given = str(where_from) if isinstance(where_from, Path) or where_from.kind == "url" else STDIN
    return ExportResult(
        source=str(where_from), to=options.to, files=[], columns={}, rejected=rejected, report=report,
        properties=sorted(types.items()), missing_properties=missing,
        baseline=baseline_command(given, str(options.state), options.key, options.source_options()),
        state=str(options.state), workdir=Path.cwd() if relative else None, notes=notes, caveats=caveats,
    )


def prepare_folder(to: Path, force: bool) -> None:
    """Make sure ``to`` is a folder bulksync can write, holding no earlier export unless ``force``."""
    if problem := unwritable(to, directory=True):
        raise ConfigError(f"--to {to}: {problem}; nothing was read or sent")
    earlier = earlier_export(to)
    if earlier and not force:
        raise ConfigError(
            f"--to {to} holds an earlier export ({earlier[0]}): pass --force to replace it, or give another "
            "folder; nothing was read or sent"
        )
    probe = to / PROBE
    try:
        to.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        probe.unlink()
    except OSError as exc:
        problem = os_problem(probe, exc)
        raise ConfigError(f"--to {to}: cannot write there ({problem}); nothing was read or sent") from None


def earlier_export(to: Path) -> list[Path]:
    """The files of an earlier export in ``to`` (its manifest, guide, rejects and upload files)."""
    if not to.is_dir():
        return []
    named = [to / name for name in EXPORT_NAMES if (to / name).exists()]
    return sorted(named) + sorted(to.glob(UPLOAD_GLOB))
