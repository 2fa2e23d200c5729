"""``bulksync export``: every preset's sample export as Loops' CSV upload files, checked cell by cell,
then uploaded (as Loops' upload reads them), recorded with the baseline command UPLOAD.md gives, and
synced again without a write; mailing lists per file; bad input refused in one line."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from bulksync.emulator import LoopsEmulator
from bulksync.location import StateURL
from bulksync.report.upload import UPLOAD_COLUMNS, lookup_time
from bulksync.source import csv_reader
from tests.helpers import API_KEY, SAMPLE_DATA, CliResult, writes
from tests.state.conftest import pg_url, postgres  # noqa: F401 (a real PostgreSQL server, for the state URL test)

EXPORTS = SAMPLE_DATA / "exports"
MAILCHIMP = EXPORTS / "mailchimp"
FROM_HEADER = {header: name for name, header in UPLOAD_COLUMNS.items()}

PRESETS = [
    ("kit", EXPORTS / "kit_subscribers.csv",
     "Email,First Name,Subscribed,Source,subscribedAt,confirmedAt,tags,signupSource", 8),
    ("sendgrid", EXPORTS / "sendgrid_contacts_export.csv",
     "Email,First Name,Last Name,Source,city,region,postalCode,country,phone,subscribedAt", 9),
    ("brevo", EXPORTS / "brevo_contacts_export.csv",
     "Email,First Name,Last Name,Subscribed,Source,phone,subscribedAt", 9),
    ("beehiiv", EXPORTS / "beehiiv_subscribers.csv",
     "Email,First Name,Last Name,Subscribed,Source,tier,subscribedAt,utmSource,utmMedium,utmCampaign", 9),
    ("substack", EXPORTS / "email_list.the-weekly-byte.csv",
     "Email,Subscribed,Source,paidSubscriber,subscriptionExpiresAt,plan,subscribedAt,firstPaymentAt", 9),
    ("mailchimp", MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv",
     "Email,First Name,Last Name,Source,phone,company,memberRating,subscribedAt,confirmedAt,tags", 10),
    ("mailchimp", MAILCHIMP / "unsubscribed_members_export_8d1f2a9c3e.csv",
     "Email,First Name,Last Name,Subscribed,Source,company,memberRating,subscribedAt,confirmedAt,tags", 8),
    ("mailchimp", MAILCHIMP / "cleaned_members_export_8d1f2a9c3e.csv",
     "Email,First Name,Last Name,Subscribed,Source,memberRating,subscribedAt,tags", 8),
]
IDS = ["kit", "sendgrid", "brevo", "beehiiv", "substack", "mailchimp-subscribed", "mailchimp-unsubscribed",
       "mailchimp-cleaned"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A file as Loops' upload reads it: the raw header and cells, nothing interpreted."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def planned_sends(cli: Any, *args: str) -> dict[str, dict[str, str]]:
    """What a sync of the same source would send each contact (its dry run's plan), by email."""
    dry = cli("sync", *args, "--state", "oracle.db", "--dry-run", "--plan", "oracle.plan", report=False)
    assert dry.status == 0, dry.err
    lines = (dry.workdir / "oracle.plan").read_text(encoding="utf-8").splitlines()[1:]
    return {line["key"]: {k: v for k, v in line["send"].items() if v is not None}
            for line in map(json.loads, lines)}


def upload(emulator: LoopsEmulator, folder: Path) -> None:
    """Loops' CSV upload of every file of the manifest, as its documentation describes it: columns by
    name, empty cells set nothing, values parsed as each property's type, ``Subscribed`` = ``false``
    unsubscribes, the file's ticked lists for every row, ``CSV Upload`` as the default source."""
    types = {p["name"]: p["type"] for p in _properties(emulator)}
    for entry in json.loads((folder / "manifest.json").read_text())["files"]:
        _, rows = read_csv(folder / entry["path"])
        contacts = []
        for row in rows:
            contact: dict[str, Any] = {"source": "CSV Upload"}
            for header, cell in row.items():
                if cell == "":
                    continue
                name = FROM_HEADER.get(header, header)
                contact[name] = _parsed(cell, "boolean" if name == "subscribed" else types.get(name, "string"))
            assert contact.get("subscribed", False) is False  # never true
            contact["mailingLists"] = dict.fromkeys(entry["mailingLists"], True)
            contacts.append(contact)
        emulator.seed(contacts)


def _properties(emulator: LoopsEmulator) -> list[dict[str, str]]:
    answer = emulator.handle("GET", "/api/v1/contacts/properties?list=custom", {"authorization": f"Bearer {API_KEY}"},
                             b"")
    return [{"name": p["key"], "type": p["type"]} for p in answer.json()]


def _parsed(cell: str, type_: str) -> Any:
    if type_ == "number":
        return json.loads(cell)
    if type_ == "boolean":
        assert cell in ("true", "false"), cell
        return cell == "true"
    return cell


def commands_from_guide(folder: Path) -> list[list[str]]:
    """The commands UPLOAD.md says to run once the upload has finished, as a person would paste them
    (without the leading ``bulksync``): the baseline, then the check."""
    section = (folder / "UPLOAD.md").read_text(encoding="utf-8").split("## 3.", 1)[1]
    commands = [shlex.split(block) for block in section.split("```\n")[1::2]]
    assert [command[:2] for command in commands] == [["bulksync", "state"], ["bulksync", "verify"]], commands
    return [command[1:] for command in commands]


def baseline_from_guide(folder: Path) -> list[str]:
    return commands_from_guide(folder)[0]


@pytest.mark.parametrize(("preset", "path", "header", "contacts"), PRESETS, ids=IDS)
def test_each_sample_export_cell_by_cell(
    cli: Any, emulator: LoopsEmulator, preset: str, path: Path, header: str, contacts: int
) -> None:
    result = cli("export", str(path), "--preset", preset, "--to", "out", "--create-properties")

    assert result.status == 0, result.err
    out = result.workdir / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    _, rejected = read_csv(out / "rejected-rows.csv")
    assert manifest == {"source": str(path), "files": [{"path": "loops-upload-001.csv", "rows": contacts,
                                                        "mailingLists": {}}], "rejected": len(rejected)}
    columns, rows = read_csv(out / "loops-upload-001.csv")
    assert ",".join(columns) == header
    sends = planned_sends(cli, str(path), "--preset", preset)
    assert [row["Email"] for row in rows] == list(sends)  # every contact a sync would create, in source order
    for row in rows:
        send = sends[row["Email"]]
        for column, cell in row.items():
            name = FROM_HEADER.get(column, column)
            expected = send.get(name, "")
            if name == "subscribed":
                expected = "false" if expected == "false" else ""  # never "true"
            assert cell == expected, (row["Email"], column)
        assert not {name for name in send if name not in {FROM_HEADER.get(c, c) for c in columns}}
    assert writes(emulator) == []  # no contact was sent


def test_cells_keep_leading_zeros_unicode_and_formula_looking_text(cli: Any, workdir: Path) -> None:
    (workdir / "odd.csv").write_text(
        "email,firstName,zip,note,handle\n"
        "a@example.com,Zoë,02134,=HYPERLINK(\"http://x\"),@ada\n"
        "b@example.com,Ĳsbrand,00501,+1 555 0100,-5 days\n"
        "c@example.com,\"Smith, Jr.\",\"line\nbreak\",null,\"say \"\"hi\"\"\"\n",
        encoding="utf-8",
    )

    result = cli("export", "odd.csv", "--to", "out", "--create-properties")

    assert result.status == 0, result.err
    columns, rows = read_csv(workdir / "out" / "loops-upload-001.csv")
    assert columns == ["Email", "First Name", "zip", "note", "handle"]
    assert rows == [
        {"Email": "a@example.com", "First Name": "Zoë", "zip": "02134", "note": '=HYPERLINK("http://x")',
         "handle": "@ada"},
        {"Email": "b@example.com", "First Name": "Ĳsbrand", "zip": "00501", "note": "+1 555 0100",
         "handle": "-5 days"},
        {"Email": "c@example.com", "First Name": "Smith, Jr.", "zip": "line\nbreak", "note": "null",
         "handle": 'say "hi"'},
    ]
    raw = (workdir / "out" / "loops-upload-001.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and "Zoë".encode() in raw  # UTF-8, no byte-order mark
    guide = (workdir / "out" / "UPLOAD.md").read_text(encoding="utf-8")
    assert "kept as they are (4 in these files)" in guide
    assert "1 cell(s) hold the text `null`" in guide


def test_rows_are_grouped_so_each_file_has_one_set_of_lists(cli: Any, emulator: LoopsEmulator,
                                                            workdir: Path) -> None:
    emulator.add_list("cm_vip", "VIP customers")
    emulator.add_list("cm_cust", "Customers")
    emulator.add_list("cm_beta", "Beta testers")
    (workdir / "lists.toml").write_text(
        '[columns.TAGS]\nto = "tags"\ntransform = "tags"\n'
        'lists = { VIP = "VIP customers", Customers = "Customers", "Beta testers" = "Beta testers" }\n'
    )
    source = str(MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv")

    result = cli("export", source, "--preset", "mailchimp", "--mapping", "lists.toml", "--to", "out",
                 "--rows-per-file", "2", "--create-properties")

    assert result.status == 0, result.err
    out = workdir / "out"
    files = json.loads((out / "manifest.json").read_text())["files"]
    vip, customers, beta = {"cm_vip": "VIP customers"}, {"cm_cust": "Customers"}, {"cm_beta": "Beta testers"}
    assert [(f["path"], f["rows"], f["mailingLists"]) for f in files] == [  # groups in order of first appearance
        ("loops-upload-001.csv", 2, {**vip, **customers}),
        ("loops-upload-002.csv", 2, customers),
        ("loops-upload-003.csv", 2, {}),
        ("loops-upload-004.csv", 1, {}),
        ("loops-upload-005.csv", 1, {**customers, **beta}),
        ("loops-upload-006.csv", 1, vip),
        ("loops-upload-007.csv", 1, beta),
    ]
    emails = {f["path"]: [row["Email"] for row in read_csv(out / f["path"])[1]] for f in files}
    assert emails == {
        "loops-upload-001.csv": ["ada.lovelace@example.com", "radia.perlman@example.com"],
        "loops-upload-002.csv": ["alan.turing@example.com", "frances.allen@example.com"],
        "loops-upload-003.csv": ["grace.hopper@example.com", "edsger.dijkstra@example.com"],
        "loops-upload-004.csv": ["john.mccarthy@example.com"],
        "loops-upload-005.csv": ["margaret.hamilton@example.com"],
        "loops-upload-006.csv": ["barbara.liskov@example.com"],
        "loops-upload-007.csv": ["ken.thompson@example.com"],
    }
    guide = (out / "UPLOAD.md").read_text(encoding="utf-8")
    assert "| `loops-upload-005.csv` | 1 | Customers (`cm_cust`), Beta testers (`cm_beta`) |" in guide
    assert "| `loops-upload-003.csv` | 2 | none |" in guide


def export_upload_baseline_sync(cli: Any, emulator: LoopsEmulator, *source: str) -> CliResult:
    """The migration the README describes: export, upload, baseline as UPLOAD.md says, then a sync."""
    exported = cli("export", *source, "--to", "out", "--state", "migration.db", "--create-properties")
    assert exported.status == 0, exported.err
    upload(emulator, exported.workdir / "out")
    baseline = cli(*baseline_from_guide(exported.workdir / "out"))
    assert baseline.status == 0, baseline.err
    synced: CliResult = cli("sync", *source, "--state", "migration.db")
    return synced


@pytest.mark.parametrize(("preset", "path", "header", "contacts"), PRESETS, ids=IDS)
def test_after_upload_and_baseline_a_sync_sends_nothing(
    cli: Any, emulator: LoopsEmulator, preset: str, path: Path, header: str, contacts: int
) -> None:
    uploaded = len(emulator.request_log())
    synced = export_upload_baseline_sync(cli, emulator, str(path), "--preset", preset)

    assert synced.status == 0, synced.err
    assert synced.summary()["unchanged"] == contacts == len(emulator.contacts())
    assert writes(emulator, uploaded) == []
    verified = cli("verify", "--state", "migration.db", "--all", "--report", "verify.csv")
    assert verified.status == 0, verified.out
    assert "Loops holds what the state says for every contact checked." in verified.out


def test_the_lists_land_and_the_next_sync_sends_only_the_change(cli: Any, emulator: LoopsEmulator,
                                                                workdir: Path) -> None:
    emulator.add_list("news", "Newsletter")
    rows = [f"p{i}@example.com,P{i},{'true' if i % 3 else ''},{'false' if i % 5 == 0 else 'true'}" for i in range(12)]
    (workdir / "users.csv").write_text("email,firstName,mailingLists.news,subscribed\n" + "\n".join(rows) + "\n")

    first = export_upload_baseline_sync(cli, emulator, "users.csv")

    assert first.status == 0 and first.summary()["unchanged"] == 12
    held = {c["email"]: c for c in emulator.contacts()}
    assert sorted(e for e, c in held.items() if c["mailingLists"].get("news")) == sorted(
        f"p{i}@example.com" for i in range(12) if i % 3)
    assert sorted(e for e, c in held.items() if c["subscribed"] is False) == ["p0@example.com", "p10@example.com",
                                                                                 "p5@example.com"]
    (workdir / "users.csv").write_text((workdir / "users.csv").read_text().replace("P4,", "Pat,"))
    since = len(emulator.request_log())
    second = cli("sync", "users.csv", "--state", "migration.db")
    assert second.summary()["updated"] == 1
    assert [w["json"] for w in writes(emulator, since)] == [{"email": "p4@example.com", "firstName": "Pat"}]


def test_bad_folders_are_refused_in_one_line(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "a-file").write_text("x")
    cases = {
        "a-file": "--to a-file: it is a file, not a directory; nothing was read or sent",
        "a-file/out": "--to a-file/out: cannot write there (a part of the path (a-file) is a file, not a directory)",
    }
    for folder, message in cases.items():
        result = cli("export", "contacts.csv", "--to", folder)
        assert result.status == 2 and result.err.startswith(f"bulksync: error: {message}"), result.err
        assert result.err.count("\n") == 1
    assert emulator.request_log() == []


def test_an_earlier_export_is_kept_unless_forced(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    assert cli("export", "contacts.csv", "--to", "out", "--rows-per-file", "10").status == 0
    assert len(list((workdir / "out").glob("loops-upload-*.csv"))) == 5
    before = (workdir / "out" / "manifest.json").read_text()

    again = cli("export", "contacts_changed.csv", "--to", "out")

    assert again.status == 2 and again.err.count("\n") == 1
    assert again.err == ("bulksync: error: --to out holds an earlier export (out/manifest.json): pass --force to "
                         "replace it, or give another folder; nothing was read or sent\n")
    assert (workdir / "out" / "manifest.json").read_text() == before
    forced = cli("export", "contacts_changed.csv", "--to", "out", "--force")
    assert forced.status == 0, forced.err
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "UPLOAD.md", "loops-upload-001.csv", "manifest.json", "rejected-rows.csv"]  # the stale files are gone
    assert json.loads((workdir / "out" / "manifest.json").read_text())["source"] == "contacts_changed.csv"
    own = cli("export", "out/loops-upload-001.csv", "--to", "out", "--force")  # --force would remove its source
    assert own.status == 2 and own.err == (
        "bulksync: error: --to out/loops-upload-001.csv is SOURCE (out/loops-upload-001.csv): an output must never "
        "overwrite an input; nothing was read or sent. Pass --to another path\n")
    assert (workdir / "out" / "loops-upload-001.csv").exists()


def test_other_bad_input(cli: Any, emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "bad.csv").write_text("email,Internal Notes\na@example.com,vip\n")
    assert cli("export", "bad.csv", "--to", "o1").err == (
        "bulksync: error: bad.csv:1: 'Internal Notes' is not a valid property name; Loops property names are "
        "camelCase, e.g. 'internalNotes'; rename the column or map it with --mapping\n")
    assert cli("export", "missing.csv", "--to", "o2").status == 2
    clash = cli("export", "contacts.csv", "--to", "o3", "--report", "contacts.csv")
    assert clash.status == 2 and "an output must never overwrite an input" in clash.err
    assert cli("export", "contacts.csv", "--to", "o4", "--rows-per-file", "0").status == 2
    same = cli("export", "contacts.csv", "--to", "o7", "--report", "o7/manifest.json")
    assert same.status == 2 and "are the same file" in same.err and not (workdir / "o7" / "manifest.json").exists()
    monkeypatch.delenv("LOOPS_API_KEY")
    no_key = cli("export", "contacts.csv", "--to", "o5", "--create-properties")
    assert no_key.status == 2 and "set LOOPS_API_KEY" in no_key.err
    offline = cli("export", "contacts.csv", "--to", "o6")
    assert offline.status == 0 and "not checked: the export ran without `LOOPS_API_KEY`" in (
        workdir / "o6" / "UPLOAD.md").read_text()
    assert [r["method"] for r in emulator.request_log()] == ["GET"] * len(emulator.request_log())


def test_an_export_reads_the_account_and_writes_no_contact(cli: Any, emulator: LoopsEmulator) -> None:
    emulator.add_property("plan", "string")

    result = cli("export", "contacts.csv", "--to", "out")

    assert result.status == 0, result.err
    assert [f"{r['method']} {r['path']}" for r in emulator.request_log()] == [
        "GET /v1/api-key", "GET /v1/contacts/properties", "GET /v1/lists"]
    guide = (result.workdir / "out" / "UPLOAD.md").read_text()
    assert "Create these custom properties in Loops first" in guide
    assert re.search(r"- `signupDate` \(string\)\n- `zip` \(string\)\n", guide)
    assert "- `plan`" not in guide and "leave **Trigger loops** off" in guide
    _, rows = read_csv(result.workdir / "out" / "loops-upload-001.csv")
    assert sorted(row["Email"] for row in rows if row["Subscribed"] == "false") == [
        "frances.allen@example.com", "guido.vanrossum@example.com", "ida.rhodes@example.com",
        "lynn.conway@example.com", "margaret.hamilton@example.com", "robin.milner@example.com"]
    assert {row["Subscribed"] for row in rows} == {"", "false"}  # the source's true is never written
    assert "Create these properties in Loops before uploading (or pass --create-properties): signupDate (string), " \
           "zip (string)" in result.out


def test_key_user_id(cli: Any, workdir: Path) -> None:
    (workdir / "ids.csv").write_text("email,userId,firstName\na@example.com,u1,Ann\nb@example.com,,Bob\n")

    result = cli("export", "ids.csv", "--to", "out", "--key", "userId", "--state", "ids.db")

    assert result.status == 0, result.err
    assert read_csv(workdir / "out" / "loops-upload-001.csv") == (
        ["Email", "First Name", "User ID"], [{"Email": "a@example.com", "First Name": "Ann", "User ID": "u1"}])
    assert baseline_from_guide(workdir / "out") == ["state", "baseline", "ids.csv", "--state", "ids.db",
                                                    "--key", "userId"]
    assert "missing userId" in (workdir / "out" / "rejected-rows.csv").read_text()


def test_standard_input_and_a_state_url_give_a_command_without_secrets(
    cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (workdir / "contacts.csv").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))

    result = cli("export", "-", "--format", "csv", "--to", "out", "--state", "postgresql://ops:s3cret@db/loops")

    assert result.status == 0, result.err
    assert commands_from_guide(workdir / "out") == [
        ["state", "baseline", "-", "--state", "postgresql://ops@db/loops", "--format", "csv"],
        ["verify", "--state", "postgresql://ops@db/loops", "--sample", "1000"]]
    guide = (workdir / "out" / "UPLOAD.md").read_text()
    assert "It reads standard input: pipe the same data into it." in guide
    assert "The state's URL is shown without its password: give it in `PGPASSWORD` or `~/.pgpass`, or set " \
           "`BULKSYNC_STATE` to the whole URL and leave `--state` out" in guide
    assert "s3cret" not in guide + result.out
    assert json.loads((workdir / "out" / "manifest.json").read_text())["source"] == "<stdin>"
    assert read_csv(workdir / "out" / "loops-upload-001.csv")[1][0]["Email"] == "ada.lovelace@example.com"


def test_no_output_may_overwrite_the_state(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    assert cli("sync", "contacts.csv", "--state", "my.db").status == 0
    (workdir / "bulksync.state.db").write_bytes((workdir / "my.db").read_bytes())  # the default state
    kept = {name: (workdir / name).read_bytes() for name in ("my.db", "bulksync.state.db")}
    cases = [
        (["--to", "o1", "--state", "my.db", "--report", "my.db"], "--report my.db is --state (my.db)"),
        (["--to", "o2", "--report", "bulksync.state.db"], "--report bulksync.state.db is --state (bulksync.state.db)"),
        (["--to", "o3", "--state", "my.db", "--report", "my.db-journal"],
         "--report my.db-journal is a file bulksync keeps beside the state (my.db)"),
        (["--to", ".", "--state", "manifest.json"], "--to manifest.json is --state (manifest.json)"),
        (["--to", ".", "--state", "UPLOAD.md"], "--to UPLOAD.md is --state (UPLOAD.md)"),
        (["--to", "o7", "--state", "o7/loops-upload-001.csv"],  # a state yet to be made by the baseline
         "--to o7/loops-upload-001.csv is --state (o7/loops-upload-001.csv)"),
        (["--to", ".", "--state", "my.db", "--log-file", "my.db"], "--log-file my.db is --state (my.db)"),
        (["--to", "o4", "--log-file", "o4/manifest.json"], "--log-file o4/manifest.json and --to o4/manifest.json"),
        (["--to", "o5", "--log-file", "o5/rejected-rows.csv"],
         "--log-file o5/rejected-rows.csv and --report o5/rejected-rows.csv"),
        (["--to", "o6", "--log-file", "o6/loops-upload-002.csv"],
         "--log-file o6/loops-upload-002.csv is a file export writes into --to o6"),
        (["--to", "o6", "--report", "r.csv", "--log-file", "o6/rejected-rows.csv"],  # --force would remove it
         "--log-file o6/rejected-rows.csv is a file export writes into --to o6"),
        (["--to", "o6", "--report", "o6/loops-upload-001.csv"],
         "--report o6/loops-upload-001.csv is a file export writes into --to o6"),
    ]
    (workdir / "manifest.json").write_bytes(kept["my.db"])  # states, where export would write its files
    (workdir / "UPLOAD.md").write_bytes(kept["my.db"])
    before = sorted(p.name for p in workdir.iterdir())
    for flags, clash in cases:
        refused = cli("export", "contacts.csv", *flags)

        assert refused.status == 2, (flags, refused.err)
        assert refused.err.startswith(f"bulksync: error: {clash}") and refused.err.count("\n") == 1, refused.err
        assert "must never overwrite" in refused.err or "would overwrite the other" in refused.err
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written, not even --to DIR
    assert {name: (workdir / name).read_bytes() for name in kept} == kept
    assert all((workdir / name).read_bytes() == kept["my.db"] for name in ("manifest.json", "UPLOAD.md"))


def test_force_replaces_only_what_an_earlier_export_wrote(cli: Any, workdir: Path) -> None:
    def refused(folder: str, stranger: str, why: str) -> None:
        result = cli("export", "contacts.csv", "--to", folder, "--force")
        assert result.status == 2 and result.err.count("\n") == 1, result.err
        assert result.err == (f"bulksync: error: --to {folder}: {folder}/{stranger} {why}: bulksync replaces only "
                              "files it wrote, even with --force; move it away or give another folder; nothing was "
                              "read or sent\n")

    foreign = {"manifest.json": '{"name": "my-app", "version": "1.0.0"}\n', "UPLOAD.md": "# How we deploy\n",
               "rejected-rows.csv": "id,why\n", "loops-upload-001.csv": "Email\nours@example.com\n"}
    for number, (name, text) in enumerate(foreign.items()):
        (workdir / f"f{number}").mkdir()
        (workdir / f"f{number}" / name).write_text(text)
        if name == "manifest.json":
            refused(f"f{number}", name, "is not the manifest of a bulksync export")
        else:
            refused(f"f{number}", name, "is not listed by a bulksync export's manifest.json (an export stopped "
                    "before its end leaves its files without one)")
        assert [p.name for p in (workdir / f"f{number}").iterdir()] == [name]
        assert (workdir / f"f{number}" / name).read_text() == text
    assert cli("export", "contacts.csv", "--to", "out", "--rows-per-file", "20").status == 0
    (workdir / "out" / "loops-upload-009.csv").write_text("Email\nsomeone-elses@example.com\n")
    refused("out", "loops-upload-009.csv", "is not listed in out/manifest.json")
    (workdir / "out" / "loops-upload-009.csv").unlink()
    forged = json.loads((workdir / "out" / "manifest.json").read_text())
    forged["files"].append({"path": "../contacts.csv", "rows": 1, "mailingLists": {}})
    (workdir / "out" / "manifest.json").write_text(json.dumps(forged))
    refused("out", "manifest.json", "is not the manifest of a bulksync export")  # it lists a file elsewhere
    assert (workdir / "contacts.csv").exists()
    forged["files"].pop()
    (workdir / "out" / "manifest.json").write_text(json.dumps(forged))
    (workdir / "out" / "notes.txt").write_text("mine")

    forced = cli("export", "contacts_changed.csv", "--to", "out", "--force")

    assert forced.status == 0, forced.err
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "UPLOAD.md", "loops-upload-001.csv", "manifest.json", "notes.txt", "rejected-rows.csv"]
    assert (workdir / "out" / "notes.txt").read_text() == "mine"  # not an export's name: left alone


def test_upload_md_recommends_a_sample_and_says_what_all_costs(cli: Any, workdir: Path) -> None:
    (workdir / "big.csv").write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(1_500)))

    assert cli("export", "big.csv", "--to", "out", "--state", "big.db").status == 0
    assert cli("export", "contacts.csv", "--to", "small").status == 0

    guide = (workdir / "out" / "UPLOAD.md").read_text()
    assert "```\nbulksync verify --state big.db --sample 1000\n```\n" in guide and "--all\n" not in guide
    assert "a random sample of 1,000 contacts is looked up in Loops, one request each (about 2 minutes" in guide
    assert "`--all` instead of `--sample 1000` looks up every one of the 1,500 contacts: about 2 minutes" in guide
    small = (workdir / "small" / "UPLOAD.md").read_text()
    assert "each of the 47 contacts is looked up in Loops, one request each (about 5 seconds)" in small
    assert "```\nbulksync verify --state bulksync.state.db --sample 1000\n```\n" in small
    assert (lookup_time(500_000), lookup_time(1_000_000), lookup_time(47)) == ("14 hours", "28 hours", "5 seconds")


def test_batches_give_the_same_files_as_one_read(cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (workdir / "contacts.csv").read_text()
    (workdir / "twice.csv").write_text(text + text.split("\n", 1)[1].replace("Ada,", "Augusta,"))  # every row again
    assert cli("export", "twice.csv", "--to", "whole").status == 0
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 300)  # a few rows a batch: duplicates span batches

    result = cli("export", "twice.csv", "--to", "batched")

    assert result.status == 0, result.err
    for name in ("loops-upload-001.csv", "rejected-rows.csv", "manifest.json"):
        assert (workdir / "batched" / name).read_bytes() == (workdir / "whole" / name).read_bytes(), name
    _, rows = read_csv(workdir / "batched" / "loops-upload-001.csv")
    assert {row["First Name"] for row in rows if row["Email"] == "ada.lovelace@example.com"} == {"Augusta"}


def test_upload_md_commands_run_against_a_postgresql_state(
    cli: Any, emulator: LoopsEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url: StateURL = request.getfixturevalue("pg_url")
    password = request.getfixturevalue("postgres").password
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("BULKSYNC_STATE", url.url)  # the state, password and all, as a CI secret gives it

    from_env = cli("export", "contacts.csv", "--to", "env", "--create-properties")

    assert from_env.status == 0, from_env.err
    guide = (workdir / "env" / "UPLOAD.md").read_text()
    assert commands_from_guide(workdir / "env") == [["state", "baseline", "contacts.csv"],
                                                    ["verify", "--sample", "1000"]]
    assert "The commands name no `--state`: run them with `BULKSYNC_STATE` set as it was for the export" in guide
    upload(emulator, workdir / "env")
    for command in commands_from_guide(workdir / "env"):
        ran = cli(*command)
        assert ran.status == 0, ran.err
    assert "Loops holds what the state says for every contact checked." in ran.out

    monkeypatch.delenv("BULKSYNC_STATE")
    given = cli("export", "contacts.csv", "--to", "flag", "--state", url.url)

    assert given.status == 0, given.err
    baseline, verify = commands_from_guide(workdir / "flag")
    assert baseline == ["state", "baseline", "contacts.csv", "--state", str(url)]
    assert verify == ["verify", "--state", str(url), "--sample", "1000"]
    unsupplied = cli(*baseline)
    assert unsupplied.status == 2 and "no password supplied" in unsupplied.err
    monkeypatch.setenv("PGPASSWORD", password)  # one of the ways UPLOAD.md names
    for command in (baseline, verify):
        ran = cli(*command)
        assert ran.status == 0, ran.err
    shown = [from_env.out, given.out, guide, (workdir / "flag" / "UPLOAD.md").read_text(),
             (workdir / "env" / "manifest.json").read_text(), (workdir / "flag" / "manifest.json").read_text()]
    assert password not in "".join(shown)
