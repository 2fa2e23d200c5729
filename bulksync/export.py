"""The first load through Loops' CSV upload (``bulksync export``): files to upload, not requests to send.

``run_export`` reads and maps the source as a sync would (the same mapping, validation and rejects;
with a connection, values are typed and list names resolved as the account says), writes the
contacts into DIR in the format of Loops' CSV upload (``report/upload.py``), with ``manifest.json``
and ``UPLOAD.md``, and a report of the rejected rows. It writes no state and sends no contact: the
only write it may make is creating custom properties, when asked to. After the upload, ``bulksync
state baseline`` records the audience, and the next sync sends only what changed.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from bulksync.columns import KEY, ROW, STATE_HASH
from bulksync.config import DEFAULT_STATE_PATH, STDIN, KeyField
from bulksync.errors import ConfigError, Interrupted
from bulksync.files import open_private, os_problem, refuse_clashes, unwritable
from bulksync.location import StateLocation, StateURL
from bulksync.loops.account import Account, custom_fields, fetch_account, mapped_source
from bulksync.loops.properties import ensure_properties
from bulksync.plan.diff import split
from bulksync.plan.index import StateIndex
from bulksync.plan.rejects import Rejects
from bulksync.plan.scan import Scanned, scan
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
    listed_files,
    manifest,
    render_upload_guide,
    upload_files,
    upload_frame,
    verify_command,
    write_upload_file,
)
from bulksync.report.writer import FORMULA_STARTS, ReportWriter, write_json
from bulksync.source.batch import SourceStream
from bulksync.source.location import locate
from bulksync.source.mapping_file import mapping_spec
from bulksync.source.mapping_spec import MappingSpec, target_problem
from bulksync.source.read import open_source

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
    # The state URL came from BULKSYNC_STATE: UPLOAD.md's commands leave --state out, so the variable
    # supplies it with its password (a --state given wins over the variable).
    state_from_environment: bool = False

    def source_options(self) -> dict[str, str | None]:
        """The flags that read the source as this export did, for the baseline command (storage
        options are left out: their values may be secrets)."""
        delimiter = "tab" if self.delimiter == "\t" else self.delimiter
        return {"--preset": self.preset, "--mapping": str(self.mapping) if self.mapping else None,
                "--encoding": None if self.encoding == "utf-8" else self.encoding, "--delimiter": delimiter,
                "--format": self.source_format}

    def inputs(self) -> dict[str, Path | None]:
        """The files export reads or must leave alone, by the flag that names them: the state (and
        the files beside it) is the baseline's, afterwards."""
        return {"SOURCE": self.source if isinstance(self.source, Path) else None, "--mapping": self.mapping,
                "--state": self.state if isinstance(self.state, Path) else None}

    @property
    def report_path(self) -> Path:
        return self.report or self.to / REJECTS


def run_export(
    options: ExportOptions, loops: Connection | None = None, stopping: Callable[[], bool] = lambda: False
) -> ExportResult:
    """Write the upload files, manifest and guide for ``options.source`` into ``options.to``.

    Raises a :class:`BulksyncError` for anything that stops it; nothing is written into the folder
    before every check has passed. ``stopping`` (a signal) is asked while the source is read and
    before each file is written; a folder left without its manifest is no finished export.
    """
    to, report = options.to, options.report_path
    if options.create_properties and loops is None:
        raise ConfigError("--create-properties creates them in Loops: set LOOPS_API_KEY; nothing was read or sent")
    refuse_export_clashes(options)
    earlier = prepare_folder(to, options.force)
    spec = mapping_spec(options.mapping, options.preset)
    stream = open_source(options.source, options.encoding, options.delimiter, fmt=options.source_format,
                         storage_options=options.storage_options)
    account = fetch_account(loops) if loops is not None else None
    frame, contacts = stream.consume(lambda whole: read_contacts(whole, spec, account, options.key, stopping))
    where = f"{stream.header.path}:{stream.header.header_line}"
    filled = [name for name in contacts.fields if frame[name].null_count() < frame.height]
    if account is None:  # with an account, ensure_properties says the same for the properties it lacks
        invalid = [problem for name in custom_fields(filled) if (problem := target_problem(name))]
        if invalid:
            raise ConfigError(f"{where}: {'; '.join(invalid)}; rename the column or map it with --mapping")
    files = upload_files(frame.drop(ROW, KEY), filled, options.rows_per_file)
    _refuse_file_clashes(options, files, earlier)
    types = {name: contacts.types.get(name, "string") for name in custom_fields(filled)}
    missing = sorted((name, types[name]) for name in account.missing(filled)) if account else None
    created = ensure_properties(filled, types, account, loops, None, create=options.create_properties, where=where)
    result = _result(options, rejected=contacts.rejects.height, types=types,
                     missing=[] if options.create_properties else missing,
                     notes=created if options.create_properties else [])
    _stop_if(stopping, "nothing was written")
    for path in earlier:
        path.unlink()
    lists = {list_id: name for name, list_id in account.lists.items()} if account else {}
    for file in files:
        _stop_if(stopping, f"{to} holds no manifest: it is not a finished export; run it again")
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


def _stop_if(stopping: Callable[[], bool], left: str) -> None:
    if stopping():
        raise Interrupted(f"stopped: {left}")


def read_contacts(stream: SourceStream, spec: MappingSpec | None, account: Account | None,
                  key: KeyField, stopping: Callable[[], bool] = lambda: False) -> tuple[pl.DataFrame, Scanned]:
    """The valid contacts of ``stream`` (one per key: its last row, ``ROW``, ``KEY`` and the fields),
    read as a sync reads it against an empty state. Each batch is mapped and checked as it is read,
    so only the checked fields are held, never the source's text."""
    nobody = StateIndex.of(pl.DataFrame(schema={KEY: pl.String, STATE_HASH: pl.Int64}))
    scanned = scan(stream, key, nobody, lambda batch: mapped_source(batch, spec, account), stopping=stopping)
    frame = split(scanned.contacts, scanned.rows, nobody, delete_missing=False).new
    return frame.select(ROW, KEY, *scanned.fields), scanned


def refuse_export_clashes(options: ExportOptions, others: Mapping[str, Path] | None = None) -> None:
    """Before anything is read or written: no file export writes may be an input (SOURCE, --mapping,
    the state or a file beside it) or another output. ``others`` are the run's other outputs (the
    CLI's --log-file). The upload files' names are known only once the source is read, so an input
    or another output must not bear any name export may write into DIR."""
    others = dict(others or {})
    inputs, to = options.inputs(), options.to
    for name in (MANIFEST, GUIDE):  # one at a time: a refusal names each as --to
        refuse_clashes(inputs, {"--report": options.report_path, "--to": to / name, **others})
    for path in inputs.values():
        if path is not None and _export_name(path, to):
            refuse_clashes(inputs, {"--to": path})
    for flag, output in {"--report": options.report, **others}.items():  # DIR/rejected-rows.csv: the report's own
        if output is not None and _export_name(output, to) and not (flag == "--report" and output.name == REJECTS):
            raise ConfigError(f"{flag} {output} is a file export writes into --to {to}: an output must never "
                              f"overwrite another; nothing was read or sent. Pass {flag} another path")


def _export_name(path: Path, to: Path) -> bool:
    """Whether ``path`` is in ``to`` under a name an export gives its files."""
    return path.resolve().parent == to.resolve() and (
        path.name in EXPORT_NAMES or fnmatch.fnmatchcase(path.name, UPLOAD_GLOB))


def _refuse_file_clashes(options: ExportOptions, files: list[UploadFile], earlier: list[Path]) -> None:
    """Once the upload files are known: none of them, and none of the earlier export's files that
    ``--force`` removes, may be an input or the report."""
    to, report, inputs = options.to, options.report_path, options.inputs()
    new = [to / file.name for file in files]
    for path in dict.fromkeys((*new, *earlier)):  # one at a time: a refusal names each as --to
        refuse_clashes(inputs, {"--report": report if path in new else None, "--to": path})


def _write_rejects(report: Path, rejects: Rejects) -> None:
    writer = ReportWriter(report)
    try:
        for lines in rejects.frames():
            writer.rejects(lines.iter_rows())
    finally:
        writer.close()


def _result(options: ExportOptions, *, rejected: int, types: dict[str, str],
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
    state = _state_shown(options, caveats)
    given = str(where_from) if isinstance(where_from, Path) or where_from.kind == "url" else STDIN
    return ExportResult(
        source=str(where_from), to=options.to, files=[], columns={}, rejected=rejected, report=options.report_path,
        properties=sorted(types.items()), missing_properties=missing,
        baseline=baseline_command(given, state, options.key, options.source_options()),
        verify=verify_command(state), workdir=Path.cwd() if relative else None, notes=notes, caveats=caveats,
    )


def _state_shown(options: ExportOptions, caveats: list[str]) -> str | None:
    """The ``--state`` of UPLOAD.md's commands (None: left out, for BULKSYNC_STATE to give), and
    how a password the commands cannot show is to be given."""
    state = options.state
    if not isinstance(state, StateURL):
        return str(state)
    if options.state_from_environment:
        caveats.append("The commands name no `--state`: run them with `BULKSYNC_STATE` set as it was for the "
                       "export (it names the state, with its password).")
        return None
    if state.secrets:
        caveats.append("The state's URL is shown without its password: give it in `PGPASSWORD` or `~/.pgpass`, or "
                       "set `BULKSYNC_STATE` to the whole URL and leave `--state` out (a `--state` given wins "
                       "over `BULKSYNC_STATE`).")
    return str(state)


def prepare_folder(to: Path, force: bool) -> list[Path]:
    """Make sure ``to`` is a folder bulksync can write, holding no earlier export unless ``force``.
    Returns the earlier export's files, which ``force`` replaces."""
    if problem := unwritable(to, directory=True):
        raise ConfigError(f"--to {to}: {problem}; nothing was read or sent")
    earlier = earlier_export(to)
    if earlier and not force:
        raise ConfigError(
            f"--to {to} holds an earlier export ({to / MANIFEST}): pass --force to replace it, or give another "
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
    return earlier


def earlier_export(to: Path) -> list[Path]:
    """The files of an earlier bulksync export in ``to``: its manifest, the upload files it lists,
    its guide and rejects. A file of an export's name that no bulksync manifest accounts for is
    someone else's: refused, since an export would overwrite it (even ``--force`` replaces only what
    bulksync wrote)."""
    if not to.is_dir():
        return []
    named = [to / name for name in EXPORT_NAMES if (to / name).exists()] + sorted(to.glob(UPLOAD_GLOB))
    if not named:
        return []
    listed = _manifest_files(to / MANIFEST)
    if listed is None:
        stranger = to / MANIFEST if (to / MANIFEST).exists() else named[0]
        what = "is not the manifest of a bulksync export" if stranger.name == MANIFEST else \
            "is not listed by a bulksync export's manifest.json (an export stopped before its end leaves its files " \
            "without one)"
        raise ConfigError(f"--to {to}: {stranger} {what}: bulksync replaces only files it wrote, even with --force; "
                          "move it away or give another folder; nothing was read or sent")
    ours = {to / MANIFEST, to / GUIDE, to / REJECTS, *(to / name for name in listed)}
    if unlisted := next((path for path in named if path not in ours), None):
        raise ConfigError(f"--to {to}: {unlisted} is not listed in {to / MANIFEST}: bulksync replaces only files it "
                          "wrote, even with --force; move it away or give another folder; nothing was read or sent")
    return [path for path in named if path.is_file() or path.is_symlink()]


def _manifest_files(path: Path) -> list[str] | None:
    """The upload files ``path`` lists, or None if it is no manifest a bulksync export wrote."""
    try:
        return listed_files(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError):  # missing, unreadable, not JSON
        return None
