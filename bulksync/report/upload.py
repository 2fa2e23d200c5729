"""Files for Loops' CSV upload (Audience -> Import -> CSV): the contacts, a manifest for scripts, and
UPLOAD.md, the steps for the person who uploads them.

Loops' upload reads a header of its own column names for the default fields (``Email``, ``First
Name``, ...) and custom properties by name; empty cells change nothing, ``Subscribed`` = ``false``
unsubscribes and nothing re-subscribes, and the mailing lists are ticked once for a whole file on its
review page. So the rows are grouped into one file per set of lists, and each file has only the
columns that hold a value in it. Values are the text a sync sends (numbers, ``true``/``false``,
ISO 8601 dates in UTC) and are written as they are: the files are for Loops, not a spreadsheet.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bulksync.fields import LIST_PREFIX, STANDARD_FIELDS, is_list_field
from bulksync.files import open_private_fd
from bulksync.loops.throttle import DEFAULT_LIMIT

# Loops' upload column for each default field, in the order its sample file has them.
UPLOAD_COLUMNS = {"email": "Email", "firstName": "First Name", "lastName": "Last Name", "userId": "User ID",
                  "subscribed": "Subscribed", "userGroup": "User Group", "source": "Source"}
# Loops documents no size limit: 50,000 rows is a few MB, which its upload and review page handle
# comfortably, and keeps a file that fails small enough to look into and upload again.
DEFAULT_ROWS_PER_FILE = 50_000
MANIFEST, GUIDE, REJECTS = "manifest.json", "UPLOAD.md", "rejected-rows.csv"
UPLOAD_GLOB = "loops-upload-*.csv"
UPLOAD_NAME = re.compile(r"loops-upload-\d{3,}\.csv")  # what file_name() makes
EXPORT_NAMES = (MANIFEST, GUIDE, REJECTS)  # with UPLOAD_GLOB: the names an export writes into its folder
# After the upload, verify looks up a sample this big: under 2 minutes at 10/s, where every contact of
# 500,000 takes 14 hours; it misses a failed file holding 1% of the contacts once in 20,000 (0.99 ** 1000).
VERIFY_SAMPLE = 1_000
CLEARS = "null"  # a cell Loops' upload reads as "clear this field"
_LISTS = "__upload_lists"


@dataclass(frozen=True)
class UploadFile:
    """One file to upload: its name in the export folder, the lists to tick for it, its rows."""

    name: str
    lists: tuple[str, ...]  # list ids
    frame: pl.DataFrame  # the contacts' fields (canonical text), in source order

    @property
    def rows(self) -> int:
        return self.frame.height


def file_name(number: int) -> str:
    return f"loops-upload-{number:03d}.csv"


def upload_files(frame: pl.DataFrame, fields: Sequence[str], rows_per_file: int) -> list[UploadFile]:
    """The rows of ``frame`` in files of at most ``rows_per_file``, every file's rows on the same
    mailing lists (those their ``mailingLists.<id>`` field says ``true``), groups in source order."""
    lists = [name for name in fields if is_list_field(name)]
    membership = pl.concat_str(
        [pl.when(pl.col(name) == "true").then(pl.lit(name[len(LIST_PREFIX):])) for name in lists],
        separator="\x1f", ignore_nulls=True,
    ) if lists else pl.lit("")
    keyed = frame.with_columns(membership.fill_null("").alias(_LISTS))
    files: list[UploadFile] = []
    for group in keyed.partition_by(_LISTS, maintain_order=True):
        ids = tuple(part for part in group[_LISTS][0].split("\x1f") if part)
        for start in range(0, group.height, rows_per_file):
            files.append(UploadFile(file_name(len(files) + 1), ids, group.slice(start, rows_per_file).drop(_LISTS)))
    return files


def upload_frame(file: UploadFile, fields: Sequence[str]) -> pl.DataFrame:
    """The file as Loops' upload reads it: its column names, ``Subscribed`` ``false`` or empty (never
    ``true``: an upload re-subscribes nobody anyway), and only the columns that hold a value."""
    standard = [name for name in UPLOAD_COLUMNS if name in fields]
    custom = [name for name in fields if name not in STANDARD_FIELDS and not is_list_field(name)]
    columns = [
        (pl.when(pl.col(name) == "false").then(pl.lit("false")) if name == "subscribed" else pl.col(name))
        .alias(UPLOAD_COLUMNS.get(name, name))
        for name in (*standard, *custom)
    ]
    shaped = file.frame.select(columns)
    return shaped.select(name for name in shaped.columns if shaped[name].null_count() < shaped.height)


def write_upload_file(path: Path, frame: pl.DataFrame) -> None:
    """Write one upload file, created private: UTF-8 without a byte-order mark, quoted where needed."""
    with os.fdopen(open_private_fd(path, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
        frame.write_csv(fh)


def cells_starting(frame: pl.DataFrame, starts: Sequence[str]) -> int:
    """How many cells of ``frame`` begin like a spreadsheet formula (``=``, ``+``, ``-``, ``@`` ...)."""
    pattern = "^[" + "".join("\\" + char if char in "-\\^]" else char for char in starts) + "]"
    return int(frame.select(pl.sum_horizontal(pl.col(pl.String).str.contains(pattern).sum())).item() or 0) \
        if frame.width else 0


def cells_equal(frame: pl.DataFrame, text: str) -> int:
    return int(frame.select(pl.sum_horizontal((pl.col(pl.String) == text).sum())).item() or 0) if frame.width else 0


@dataclass
class ExportResult:
    """What an export wrote, and what the person uploading it must know."""

    source: str  # as messages show it
    to: Path
    files: list[tuple[str, int, dict[str, str]]]  # name, rows, lists ticked (id -> name)
    columns: dict[str, list[str]]  # each file's header
    rejected: int
    report: Path
    properties: list[tuple[str, str]]  # the custom properties the files fill: name, type
    missing_properties: list[tuple[str, str]] | None  # to create first; None: not known (no API key)
    baseline: list[str]  # the command to run once every upload has finished
    verify: list[str]  # the command that checks the upload landed, after the baseline
    workdir: Path | None = None  # where to run it from, when it names relative paths
    caveats: list[str] = field(default_factory=list)  # what the command cannot say (a URL's secrets ...)
    formula_cells: int = 0
    null_cells: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def contacts(self) -> int:
        return sum(rows for _, rows, _ in self.files)


def manifest(result: ExportResult) -> dict[str, Any]:
    """``manifest.json``: the files with their rows and mailing lists, for scripts."""
    return {
        "source": str(result.source),
        "files": [{"path": name, "rows": rows, "mailingLists": lists} for name, rows, lists in result.files],
        "rejected": result.rejected,
    }


def listed_files(data: Any) -> list[str] | None:
    """The upload files a ``manifest.json`` (parsed) lists, or None if it is not the manifest of a
    bulksync export: the files of an earlier export are the only ones ``--force`` may replace."""
    if not isinstance(data, dict) or not {"source", "files", "rejected"} <= set(data):
        return None
    files = data["files"]
    if not isinstance(files, list) or not all(isinstance(entry, dict) for entry in files):
        return None
    names = [entry.get("path") for entry in files]
    if not all(isinstance(name, str) and UPLOAD_NAME.fullmatch(name) for name in names):
        return None  # bulksync writes plain names in its folder: never a path elsewhere
    return [str(name) for name in names]


def state_arguments(state: str | None) -> list[str]:
    """``--state STATE``, or nothing when the state comes from ``BULKSYNC_STATE`` (None)."""
    return [] if state is None else ["--state", state]


def baseline_command(source: str, state: str | None, key: str, options: Mapping[str, str | None]) -> list[str]:
    """``bulksync state baseline`` with the export's own source options, as one would type it
    (``state`` None: from ``BULKSYNC_STATE``)."""
    command = ["bulksync", "state", "baseline", source, *state_arguments(state)]
    if key != "email":
        command += ["--key", key]
    for flag, value in options.items():
        if value is not None:
            command += [flag, value]
    return command


def verify_command(state: str | None) -> list[str]:
    return ["bulksync", "verify", *state_arguments(state), "--sample", str(VERIFY_SAMPLE)]


def lookup_time(contacts: int) -> str:
    """How long looking ``contacts`` up takes at Loops' 10 requests a second, roughly, in words."""
    seconds = contacts / DEFAULT_LIMIT
    if seconds < 90:
        return f"{max(round(seconds), 1)} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600)} hours"


def render_upload_guide(result: ExportResult) -> str:
    """UPLOAD.md: what to create, which file to upload with which lists, and what to run afterwards."""
    baseline = shlex.join(result.baseline)
    lines = [f"# Uploading {result.source} to Loops", "",
             f"`bulksync export` wrote {result.contacts:,} contacts into {len(result.files)} file(s) for Loops' CSV "
             f"upload ({result.rejected:,} rows rejected, with the reason for each, in `{result.report}`). "
             "Nothing was sent to Loops" + (" but the custom properties named below." if result.notes else "."), "",
             "Loops starts its \"Contact added\" loops (welcome, onboarding) for contacts added through the API, "
             "and not for contacts added by its CSV upload unless \"Trigger loops\" is ticked: so a first load "
             "goes through the upload, and bulksync takes over for the changes after it.", "",
             "## 1. Before you upload", ""]
    lines += _properties_step(result)
    lines += ["", "Upload the files exactly as they are: do not open and save them in a spreadsheet. A spreadsheet "
              "drops leading zeros (`02134`), re-encodes accented letters and runs cells that begin with `=`, `+`, "
              "`-` or `@` as formulas. Loops reads every cell as plain text, so such cells are kept as they are"
              + (f" ({result.formula_cells:,} in these files)." if result.formula_cells else ".")]
    if result.null_cells:
        lines += ["", f"{result.null_cells:,} cell(s) hold the text `null`, which Loops' upload reads as \"clear "
                  "this field\": those contacts get that field empty, and `bulksync verify` reports each one it "
                  "looks up as different after the baseline."]
    lines += ["", "## 2. Upload each file", "",
              "In Loops: Audience -> Import -> CSV -> Upload CSV. For each file below, on the review page:", "",
              "- map every column to the property of the same name (the default fields map themselves);",
              "- tick exactly the mailing lists named for that file (none: tick none);",
              "- leave **Trigger loops** off: ticked, every contact of the file would start your \"Contact "
              "added\" loops.", "",
              "| file | rows | mailing lists to tick | columns |", "|---|---:|---|---|"]
    for name, rows, lists in result.files:
        ticked = ", ".join(f"{list_name} (`{list_id}`)" for list_id, list_name in lists.items()) or "none"
        lines.append(f"| `{name}` | {rows:,} | {ticked} | {', '.join(result.columns[name])} |")
    if not result.files:
        lines.append("| (no valid contacts: nothing to upload) | 0 | | |")
    lines += ["", "`Subscribed` is `false` for contacts who unsubscribed (they are added unsubscribed) and empty "
              "for everyone else, never `true`: new contacts are subscribed by Loops' default, and a contact "
              "already in Loops keeps its subscription (an upload never re-subscribes anyone). Loops matches rows "
              "on `User ID`, then on `Email`; an empty cell leaves what Loops has.", "",
              "## 3. Once every upload has finished", "",
              "Record the audience as synced, sending nothing. Run it with `LOOPS_API_KEY` set, as every sync "
              "is: it reads the account's property types (no write), so values are recorded as a sync types "
              "them and the next sync finds nothing changed:", "",
              "```", baseline, "```", ""]
    if result.workdir is not None:
        lines += [f"Run it from the folder the export ran in: `{result.workdir}`.", ""]
    lines += [*(f"{caveat}" for caveat in result.caveats), *([""] if result.caveats else [])]
    lines += _verify_step(result)
    lines += ["From then on, `bulksync sync` of the same source, with the same options and state, sends only "
              "what changed since."]
    return "\n".join(lines) + "\n"


def _verify_step(result: ExportResult) -> list[str]:
    """Check the upload with a sample: looking everyone up costs an hour of the API per 36,000 contacts."""
    command = ["```", shlex.join(result.verify), "```", ""]
    if result.contacts <= VERIFY_SAMPLE:
        return [f"Then check that everything landed: each of the {result.contacts:,} contacts is looked up in Loops, "
                f"one request each (about {lookup_time(result.contacts)}), reading only:", "", *command]
    return [f"Then check that everything landed: a random sample of {VERIFY_SAMPLE:,} contacts is looked up in Loops, "
            f"one request each (about {lookup_time(VERIFY_SAMPLE)} at Loops' 10 requests a second), reading only. "
            "A column mapped to the wrong property shows in any sample; a file that did not load, if it holds 1% "
            "of the contacts or more, in all but 1 sample in 20,000:", "", *command,
            f"`--all` instead of `--sample {VERIFY_SAMPLE}` looks up every one of the {result.contacts:,} contacts: "
            f"about {lookup_time(result.contacts)} of the API's budget, worth it only to list every contact that "
            "differs.", ""]


def _properties_step(result: ExportResult) -> list[str]:
    if not result.properties:
        return ["These files fill no custom property: nothing to create."]
    if result.missing_properties is None:
        listed = [f"- `{name}` ({type_})" for name, type_ in result.properties]
        return ["The files fill these custom properties; make sure each exists in Loops (Settings -> "
                "Contact properties) with this type (not checked: the export ran without `LOOPS_API_KEY`):",
                "", *listed]
    if not result.missing_properties:
        return ["Every custom property these files fill exists in Loops already."]
    listed = [f"- `{name}` ({type_})" for name, type_ in result.missing_properties]
    return ["Create these custom properties in Loops first (Settings -> Contact properties), with these types, "
            "or run the export again with `--create-properties` (and `--force`):", "", *listed]


def render_export(result: ExportResult) -> str:
    """What ``bulksync export`` prints: the files, and what to do next."""
    lines = [f"Exported {result.contacts:,} contacts of {result.source} into {len(result.files)} file(s) in "
             f"{result.to} ({result.rejected:,} rows rejected: {result.report}); nothing was sent"
             + (" but the properties noted below." if result.notes else ".")]
    for name, rows, lists in result.files:
        ticked = ", ".join(lists.values()) or "none"
        lines.append(f"  {name:<22} {rows:>9,} rows   lists: {ticked}")
    if result.missing_properties:
        names = ", ".join(f"{name} ({type_})" for name, type_ in result.missing_properties)
        lines.append(f"Create these properties in Loops before uploading (or pass --create-properties): {names}")
    lines += [f"Note: {note}" for note in result.notes]
    lines.append(f"Next: follow {result.to / GUIDE}; once every upload has finished, run:")
    lines.append(f"  {shlex.join(result.baseline)}")
    lines += [f"  {caveat}" for caveat in result.caveats]
    return "\n".join(lines)

