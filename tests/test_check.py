"""The preflight against the emulator: missing properties, mismatches with example rows, unknown lists, ok."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bulksync.check import CheckResult, ColumnCheck, TypeMismatch, render_check, run_check
from bulksync.emulator import LoopsEmulator
from bulksync.errors import AuthError
from bulksync.loops.client import LoopsClient
from bulksync.source.mapping_file import load_preset, parse_mapping
from bulksync.source.mapping_spec import MappingSpec, merge
from bulksync.source.read import read_source

MAILCHIMP = Path(__file__).resolve().parent.parent / "sample_data" / "exports" / "mailchimp"
SUBSCRIBED = MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv"


@pytest.fixture
def emu() -> LoopsEmulator:
    return LoopsEmulator(api_key="k", rate_limit=0)


@pytest.fixture
def client(emu: LoopsEmulator) -> Iterator[LoopsClient]:
    with LoopsClient("k", "https://loops.test/api", transport=emu.transport()) as loops:
        yield loops


def check(tmp_path: Path, csv: str, spec: MappingSpec | None, client: LoopsClient, name: str = "in.csv") -> CheckResult:
    path = tmp_path / name
    path.write_text(csv, encoding="utf-8")
    return run_check(read_source(path), spec, client)


def test_a_clean_source_is_ok(tmp_path: Path, emu: LoopsEmulator, client: LoopsClient) -> None:
    emu.add_property("plan", "string")
    emu.add_property("seats", "number")
    emu.add_list("cm_news", "Newsletter")
    result = check(tmp_path, "Email,firstName,plan,seats,mailingLists.cm_news\na@x.io,Ada,pro,3,yes\n", None, client)
    assert result.ok
    assert result.team == "Emulated Team"
    assert result.columns == [
        ColumnCheck("Email", "email", "string", "passed"),
        ColumnCheck("firstName", "firstName", "string", "passed"),
        ColumnCheck("plan", "plan", "string", "passed"),
        ColumnCheck("seats", "seats", "number", "passed"),
        ColumnCheck("mailingLists.cm_news", "mailingLists.cm_news", "boolean", "passed"),
    ]
    assert render_check(result) == (
        "Loops team: Emulated Team\n"
        f"Source: {tmp_path / 'in.csv'} (1 row)\n"
        "Mapping: none (columns named like Loops fields)\n"
        "\n"
        "Columns:\n"
        "  Email                    -> email                    string\n"
        "  firstName                -> firstName                string\n"
        "  plan                     -> plan                     string\n"
        "  seats                    -> seats                    number\n"
        "  mailingLists.cm_news     -> mailingLists.cm_news     boolean\n"
        "\n"
        "OK: a sync would run clean (1 row).\n"
    )


def test_mailchimp_preset_with_a_file_reports_every_problem(emu: LoopsEmulator, client: LoopsClient) -> None:
    emu.add_property("memberRating", "number")
    emu.add_property("tags", "string")
    emu.add_property("subscribedAt", "string")
    emu.add_list("cm_vip", "VIP customers")
    tweaks = parse_mapping(
        {"columns": {"TAGS": {"to": "tags", "transform": "tags",
                              "lists": {"VIP": "vip customers", "Beta testers": "Beta"}}}},
        "tweaks.toml",
    )
    result = run_check(read_source(SUBSCRIBED), merge(load_preset("mailchimp"), tweaks), client)
    assert not result.ok
    assert result.missing_properties == [("phone", "string"), ("company", "string"), ("confirmedAt", "date")]
    assert result.type_mismatches == [TypeMismatch("subscribedAt", "date", [(4, "0000-00-00 00:00:00")], 1)]
    assert result.unknown_lists == ["Beta"]
    assert result.type_conflicts == [("subscribedAt", "date", "string")]
    assert (result.invalid_names, result.missing_columns, result.has_email) == ([], [], True)
    assert result.problems == 6
    assert render_check(result) == (
        "Loops team: Emulated Team\n"
        f"Source: {SUBSCRIBED} (12 rows)\n"
        "Mapping: preset 'mailchimp' + tweaks.toml\n"
        "\n"
        "Columns:\n"
        "  Email Address            -> email                    string\n"
        "  First Name               -> firstName                string    transform trim\n"
        "  Last Name                -> lastName                 string    transform trim\n"
        "  Phone Number             -> phone                    string    new property\n"
        "  Company                  -> company                  string    new property\n"
        "  MEMBER_RATING            -> memberRating             number\n"
        "  OPTIN_TIME               -> subscribedAt             date\n"
        "  CONFIRM_TIME             -> confirmedAt              date      new property\n"
        "  TAGS                     -> tags                     string    transform tags; "
        "lists VIP->'vip customers', Beta testers->'Beta'\n"
        "  TAGS                     -> mailingLists.cm_vip      boolean\n"
        "  TAGS                     -> mailingLists.Beta        boolean\n"
        "  (constant)               -> source                   string    = 'Mailchimp import'\n"
        "  Dropped (not in the mapping): Address, OPTIN_IP, CONFIRM_IP, LATITUDE, LONGITUDE, GMTOFF, DSTOFF,\n"
        "    TIMEZONE, CC, REGION, LAST_CHANGED, LEID, EUID, NOTES\n"
        "\n"
        "Problems:\n"
        "  Properties that do not exist in Loops yet (3; create them first):\n"
        "    phone                    string\n"
        "    company                  string\n"
        "    confirmedAt              date\n"
        "  Types that differ from the property in Loops:\n"
        "    subscribedAt: the mapping says date, Loops has string\n"
        "  Values that do not fit their type (these rows would be rejected):\n"
        "    subscribedAt (date), 1 row: row 4 '0000-00-00 00:00:00'\n"
        "  Mailing lists Loops does not have: 'Beta'\n"
        "    (lists in Loops: VIP customers (cm_vip))\n"
        "\n"
        "6 problems: a sync would not run clean.\n"
    )


def test_unsubscribed_export_is_announced(emu: LoopsEmulator, client: LoopsClient) -> None:
    for name, type_ in [("memberRating", "number"), ("subscribedAt", "date"), ("confirmedAt", "date"),
                        ("tags", "string"), ("company", "string"), ("phone", "string")]:
        emu.add_property(name, type_)
    cleaned = read_source(MAILCHIMP / "cleaned_members_export_8d1f2a9c3e.csv")
    result = run_check(cleaned, load_preset("mailchimp"), client)
    assert result.ok
    assert result.unsubscribed_reason == "it has a CLEAN_TIME column"
    text = render_check(result)
    assert "Unsubscribed export (it has a CLEAN_TIME column): every row gets subscribed = false\n" in text
    assert "  (constant)               -> subscribed               boolean   false: an unsubscribed export" in text
    assert text.endswith("OK: a sync would run clean (8 rows).\n")


def test_account_types_check_values_and_examples_are_capped(
    tmp_path: Path, emu: LoopsEmulator, client: LoopsClient
) -> None:
    emu.add_property("seats", "number")
    emu.add_property("trial", "boolean")
    csv = "email,seats,trial\n" + "".join(f"u{i}@x.io,{seat},{trial}\n" for i, (seat, trial) in enumerate(
        [("1", "yes"), ("two", "no"), ("3", "maybe"), ("four", ""), ("5", ""), ("six", ""), ("seven", "")]
    ))
    result = check(tmp_path, csv, None, client)
    assert result.type_mismatches == [
        TypeMismatch("seats", "number", [(2, "two"), (4, "four"), (6, "six")], 4),
        TypeMismatch("trial", "boolean", [(3, "maybe")], 1),
    ]
    text = render_check(result)
    assert "    seats (number), 4 rows: row 2 'two', row 4 'four', row 6 'six', ... (4 rows)\n" in text
    assert "    trial (boolean), 1 row: row 3 'maybe'\n" in text
    assert text.endswith("\n2 problems: a sync would not run clean.\n")


def test_loops_shaped_file_with_bad_names_unknown_list_ids_and_no_email(
    tmp_path: Path, emu: LoopsEmulator, client: LoopsClient
) -> None:
    emu.add_list("cm_news", "Newsletter")
    result = check(tmp_path, "mail,Company Name,mailingLists.cm_gone,mailingLists.cm_news\na@x.io,AE,yes,no\n",
                   None, client)
    assert result.has_email is False
    assert result.unknown_lists == ["cm_gone"]
    assert result.invalid_names == [
        ("Company Name", "'Company Name' is not a valid property name; Loops property names are camelCase, "
                         "e.g. 'companyName'"),
    ]
    assert result.missing_properties == [("mail", "string")]
    text = render_check(result)
    assert "  No column maps to email: map one (to = \"email\") or name a column 'email'.\n" in text
    assert "  Mailing lists Loops does not have: 'cm_gone'\n    (lists in Loops: Newsletter (cm_news))\n" in text
    assert result.problems == 4 and not result.ok


def test_mapping_columns_missing_from_the_file_are_reported(
    tmp_path: Path, emu: LoopsEmulator, client: LoopsClient
) -> None:
    spec = parse_mapping({"columns": {"E-mail": {"to": "email"}, "Plan": {"to": "plan"}}, "unmapped": "drop"}, "m.toml")
    emu.add_property("plan", "string")
    result = check(tmp_path, "E-mail,Other\na@x.io,1\n", spec, client)
    assert result.missing_columns == ["Plan"]
    assert result.columns == [
        ColumnCheck("E-mail", "email", "string", "mapped"),
        ColumnCheck("Other", None, None, "dropped"),
    ]
    assert (
        "  Columns of the mapping missing from the file (fix the name or mark them optional = true):\n    Plan\n"
        in render_check(result)
    )


def test_a_refused_key_stops_the_check(tmp_path: Path, emu: LoopsEmulator) -> None:
    with LoopsClient("wrong", "https://loops.test/api", transport=emu.transport()) as loops, pytest.raises(AuthError):
        check(tmp_path, "email\na@x.io\n", None, loops)
    assert [entry["path"] for entry in emu.request_log()] == ["/v1/api-key"]


def test_the_docs_show_real_output(emu: LoopsEmulator, client: LoopsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "mapping.md"
    relative = "sample_data/exports/mailchimp/subscribed_members_export_8d1f2a9c3e.csv"
    command = f"$ bulksync check {relative} --preset mailchimp\n"
    shown = docs.read_text(encoding="utf-8").split(command, 1)[1].split("```", 1)[0]
    for name, type_ in [("memberRating", "number"), ("tags", "string"), ("subscribedAt", "date")]:
        emu.add_property(name, type_)
    monkeypatch.chdir(docs.parent.parent)
    source = read_source(Path(relative))
    assert render_check(run_check(source, load_preset("mailchimp"), client)) == shown
