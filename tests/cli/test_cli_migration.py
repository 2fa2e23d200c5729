"""Migrations through the CLI against the emulator: presets on each sample export, a mapping file,
typed values, missing properties, and the preflight check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulksync.emulator import LoopsEmulator
from tests.helpers import SAMPLE_DATA, writes

EXPORTS = SAMPLE_DATA / "exports"
MAILCHIMP = EXPORTS / "mailchimp"


def contacts(emulator: LoopsEmulator) -> dict[str, dict[str, Any]]:
    return {c["email"]: c for c in emulator.contacts()}


@pytest.mark.parametrize(
    ("preset", "path", "created", "unsubscribed"),
    [
        ("kit", EXPORTS / "kit_subscribers.csv", 8, 4),
        ("sendgrid", EXPORTS / "sendgrid_contacts_export.csv", 9, 0),
        ("brevo", EXPORTS / "brevo_contacts_export.csv", 9, 2),
        ("beehiiv", EXPORTS / "beehiiv_subscribers.csv", 9, 3),
        ("substack", EXPORTS / "email_list.the-weekly-byte.csv", 9, 2),
    ],
    ids=["kit", "sendgrid", "brevo", "beehiiv", "substack"],
)
def test_each_preset_end_to_end(
    cli: Any, emulator: LoopsEmulator, preset: str, path: Path, created: int, unsubscribed: int
) -> None:
    result = cli("sync", str(path), "--preset", preset)

    assert result.status == 0, result.err
    held = contacts(emulator)
    assert result.summary()["created"] == created == len(held)
    assert sum(1 for c in held.values() if c["subscribed"] is False) == unsubscribed
    assert all(email == email.strip().lower() for email in held)
    (source,) = {c["source"] for c in held.values()}
    assert source.lower() == f"{preset} import"
    since = len(emulator.request_log())
    assert cli("sync", str(path), "--preset", preset).summary()["unchanged"] == created
    assert writes(emulator, since) == []


def test_mailchimp_three_files_into_one_audience(cli: Any, emulator: LoopsEmulator) -> None:
    for name in ("subscribed", "unsubscribed", "cleaned"):
        result = cli("sync", str(MAILCHIMP / f"{name}_members_export_8d1f2a9c3e.csv"), "--preset", "mailchimp")
        assert result.status == 0, result.err

    held = contacts(emulator)
    assert len(held) == 10 + 8 + 8
    unsubscribed = [c for c in held.values() if c["subscribed"] is False]
    assert len(unsubscribed) == 16  # every unsubscribed and cleaned member, and nobody else
    assert "bjarne.stroustrup@example.com" in {c["email"] for c in unsubscribed}
    tagged = [c for c in held.values() if c.get("tags")]
    assert tagged and all('"' not in c["tags"] for c in tagged)
    dated = [c["subscribedAt"] for c in held.values() if c.get("subscribedAt")]
    assert dated and all(value.endswith("Z") and "T" in value for value in dated)
    assert {c["source"] for c in held.values()} == {"Mailchimp import"}


def test_a_mapping_file_wins_over_the_preset_and_resolves_list_names(
    cli: Any, emulator: LoopsEmulator, workdir: Path
) -> None:
    emulator.add_list("cm_vip", "VIP customers")
    (workdir / "tweaks.toml").write_text(
        '[columns.TAGS]\nto = "tags"\ntransform = "tags"\nlists = { VIP = "VIP customers" }\n\n'
        '[constants]\nsource = "Mailchimp (2024 migration)"\n'
    )

    result = cli("sync", str(MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv"),
                 "--preset", "mailchimp", "--mapping", "tweaks.toml")

    assert result.status == 0, result.err
    held = contacts(emulator)
    assert {c["source"] for c in held.values()} == {"Mailchimp (2024 migration)"}
    assert sum(1 for c in held.values() if c["mailingLists"] == {"cm_vip": True}) == 3


def test_typed_values_from_the_mapping_and_rejections(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    (workdir / "crm.csv").write_text(
        "E-mail,Full Name,Seats,Signed up,Beta\n"
        "ada@example.com,Ada King Lovelace,3,31/01/2024,yes\n"
        "grace@example.com,Grace Hopper,three,01/02/2024,no\n"
        "alan@example.com,Alan Turing,2,2024-02-30,1\n"
    )
    (workdir / "crm.toml").write_text(
        '[columns."E-mail"]\nto = "email"\n\n[columns."Full Name"]\ntransform = "split_name"\n\n'
        '[columns.Seats]\nto = "seats"\ntype = "number"\n\n'
        '[columns."Signed up"]\nto = "signupDate"\ntype = "date"\nformat = "%d/%m/%Y"\n\n'
        '[columns.Beta]\nto = "betaTester"\ntype = "boolean"\n'
    )

    result = cli("sync", "crm.csv", "--mapping", "crm.toml")

    assert result.status == 0, result.err
    ada = emulator.contact("ada@example.com")
    assert ada is not None
    assert (ada["firstName"], ada["lastName"], ada["seats"], ada["signupDate"], ada["betaTester"]) == (
        "Ada", "King Lovelace", 3, "2024-01-31", True
    )
    rejects = [(r["row"], r["key"], r["error"]) for r in result.report() if r["action"] == "reject"]
    assert rejects == [
        ("2", "grace@example.com", "seats value 'three' is not a number"),
        ("3", "alan@example.com", "signupDate value '2024-02-30' is not a date (expected %d/%m/%Y)"),
    ]
    created = {p["name"]: p["type"] for p in (r["json"] for r in emulator.request_log())
               if p and "type" in p and "name" in p}
    assert created == {"seats": "number", "signupDate": "date", "betaTester": "boolean"}


def test_unknown_mapping_key_is_a_one_line_error(cli: Any, workdir: Path, emulator: LoopsEmulator) -> None:
    (workdir / "bad.toml").write_text('[columns.Seats]\nto = "seats"\ntpye = "number"\n')

    result = cli("sync", "contacts.csv", "--mapping", "bad.toml")

    assert result.status == 2
    assert result.err.startswith("bulksync: error: bad.toml: unknown key 'tpye' in [columns.Seats]")
    assert "did you mean 'type'?" in result.err
    assert emulator.stats()["requests"] == 0


def test_missing_properties_stop_the_sync_before_any_write(cli: Any, emulator: LoopsEmulator) -> None:
    result = cli("sync", "contacts.csv", create_properties=False)

    assert result.status == 2
    assert result.err == (
        "bulksync: error: Loops has no custom property plan (string), zip (string), signupDate (string) yet; "
        "nothing was sent. Run 'bulksync check' to review the columns, or pass --create-properties to "
        "create them\n"
    )
    assert writes(emulator) == []

    preview = cli("sync", "contacts.csv", "--dry-run")
    assert preview.status == 0
    assert ("Note: Loops has no property plan (string), zip (string), signupDate (string) yet; "
            "it must exist first: pass --create-properties") in preview.out


def test_account_property_types_type_unmapped_columns(cli: Any, emulator: LoopsEmulator, workdir: Path) -> None:
    emulator.add_property("seats", "number")
    emulator.add_property("trial", "boolean")
    (workdir / "plain.csv").write_text("email,seats,trial\nada@example.com,007,Yes\ngrace@example.com,x,no\n")

    result = cli("sync", "plain.csv")

    assert result.status == 0
    assert emulator.contact("ada@example.com") == {**emulator.contact("ada@example.com"), "seats": 7, "trial": True}  # type: ignore[dict-item]
    assert [(r["row"], r["error"]) for r in result.report() if r["action"] == "reject"] == [
        ("2", "seats value 'x' is not a number")
    ]


def test_check_reports_and_exits_1_then_0(cli: Any, emulator: LoopsEmulator) -> None:
    path = str(MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv")

    first = cli("check", path, "--preset", "mailchimp")

    assert first.status == 1
    assert first.out.startswith("Loops team: Emulated Team\n")
    assert "Properties that do not exist in Loops yet" in first.out
    assert "subscribedAt (date), 1 row: row 4 '0000-00-00 00:00:00'" in first.out
    assert writes(emulator) == []

    for name in ("plan", "zip", "signupDate"):
        emulator.add_property(name, "string")
    clean = cli("check", "contacts_changed.csv")
    assert clean.status == 0, clean.out
    assert clean.out.endswith("OK: a sync would run clean (50 rows).\n\n")


def test_brevo_semicolons_are_detected_and_delimiter_can_be_forced(cli: Any, emulator: LoopsEmulator) -> None:
    path = str(EXPORTS / "brevo_contacts_export.csv")
    assert cli("sync", path, "--preset", "brevo", "--delimiter", ";").status == 0
    wrong = cli("sync", path, "--preset", "brevo", "--delimiter", ",", "--state", "other.db")
    assert wrong.status == 2
    assert "no email column" in wrong.err or "EMAIL" in wrong.err
