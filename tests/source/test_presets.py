"""Every preset on its sample export in sample_data/exports/: the exact contacts Loops would get, and the rejects."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bulksync.fields import payload_from_fields
from bulksync.plan.normalise import normalise
from bulksync.source.mapping import MappedSource, apply_mapping
from bulksync.source.mapping_file import PRESETS, load_mapping, load_preset
from bulksync.source.mapping_spec import merge
from bulksync.source.read import read_source

EXPORTS = Path(__file__).resolve().parents[2] / "sample_data" / "exports"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "mapping.md"
MAILCHIMP = EXPORTS / "mailchimp"
DATE_HINT = "(use ISO 8601 such as 2024-01-31, or set a format in the mapping)"


def run(path: Path, preset: str, **kwargs: Any) -> tuple[dict[int, dict[str, Any]], list[tuple[int, str]]]:
    """Each mapped row's Loops request body by row number (fields without a value left out), and the rejects."""
    mapped = apply_mapping(read_source(path, **kwargs), load_preset(preset))
    return bodies(mapped), mapped.rejects.select("__row", "__reason").rows()


def bodies(mapped: MappedSource) -> dict[int, dict[str, Any]]:
    found = {}
    for row in mapped.frame.to_dicts():
        number = row.pop("__row")
        body = payload_from_fields(row, {name: mapped.types.get(name, "string") for name in row})
        found[number] = {name: value for name, value in body.items() if value is not None}
    return found


def contacts(source: str, rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Expected bodies: every row also carries the preset's source constant."""
    return {number: {**fields, "source": source} for number, fields in rows.items()}


def test_every_preset_file_is_listed_and_loads() -> None:
    shipped = sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files("bulksync.source.presets").iterdir()
        if entry.name.endswith(".toml")
    )
    assert shipped == sorted(PRESETS)
    for name in PRESETS:
        spec = load_preset(name)
        assert spec.description and spec.unmapped == "drop"


def test_mailchimp_subscribed() -> None:
    got, rejects = run(MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv", "mailchimp")
    assert got == contacts("Mailchimp import", {
        1: {"email": "ada.lovelace@example.com", "firstName": "Ada", "lastName": "Lovelace",
            "phone": "+44 20 7946 0001", "company": "Analytical Engines Ltd", "memberRating": 5,
            "subscribedAt": "2018-02-12T10:54:27Z", "confirmedAt": "2018-02-12T10:55:03Z", "tags": "Customers, VIP"},
        2: {"email": "ALAN.TURING@EXAMPLE.COM", "firstName": "Alan", "lastName": "Turing", "company": "Bletchley Labs",
            "memberRating": 4, "subscribedAt": "2018-03-01T09:12:44Z", "confirmedAt": "2018-03-01T09:13:10Z",
            "tags": "Customers"},
        3: {"email": "grace.hopper@example.com", "firstName": "Grace", "lastName": "Hopper", "company": "US Navy",
            "memberRating": 3, "confirmedAt": "2019-06-20T14:02:11Z"},
        5: {"email": "margaret.hamilton@example.com", "firstName": "Margaret", "lastName": "Hamilton",
            "memberRating": 4, "subscribedAt": "2020-01-15T16:45:00Z", "confirmedAt": "2020-01-15T16:47:21Z",
            "tags": "Customers, Beta testers"},
        6: {"email": "linus.torvalds@example", "firstName": "Linus", "lastName": "Torvalds", "memberRating": 3,
            "subscribedAt": "2020-05-05T11:11:11Z", "confirmedAt": "2020-05-05T11:12:00Z"},
        7: {"email": "barbara.liskov@example.com", "firstName": "Barbara", "lastName": "Liskov",
            "phone": "+1 617 555 0142", "company": "MIT", "memberRating": 5, "subscribedAt": "2020-09-09T12:00:00Z",
            "confirmedAt": "2020-09-09T12:01:00Z", "tags": "VIP"},
        8: {"email": "edsger.dijkstra@example.com", "firstName": "Edsger", "lastName": "Dijkstra", "memberRating": 1,
            "subscribedAt": "2021-02-28T23:59:59Z"},
        9: {"email": "frances.allen@example.com", "firstName": "Frances", "lastName": "Allen", "company": "IBM",
            "memberRating": 3, "subscribedAt": "2021-04-01T07:30:00Z", "confirmedAt": "2021-04-01T07:31:12Z",
            "tags": "Customers"},
        10: {"email": "john.mccarthy@example.com", "firstName": "John", "lastName": "McCarthy",
             "company": "Stanford AI Lab", "memberRating": 2, "subscribedAt": "2022-10-10T10:10:10Z",
             "confirmedAt": "2022-10-10T10:11:00Z"},
        11: {"email": "radia.perlman@example.com", "firstName": "Radia", "lastName": "Perlman", "memberRating": 4,
             "subscribedAt": "2023-01-05T18:20:00Z", "confirmedAt": "2023-01-05T18:21:40Z", "tags": "Customers, VIP"},
        12: {"email": "ken.thompson@example.com", "firstName": "Ken", "lastName": "Thompson", "company": "Bell Labs",
             "memberRating": 3, "subscribedAt": "2023-08-14T06:00:00Z", "confirmedAt": "2023-08-14T06:00:30Z",
             "tags": "Beta testers"},
    })
    assert rejects == [(4, f"subscribedAt value '0000-00-00 00:00:00' is not a date {DATE_HINT}")]


def test_mailchimp_unsubscribed_file_unsubscribes_every_row() -> None:
    got, rejects = run(MAILCHIMP / "unsubscribed_members_export_8d1f2a9c3e.csv", "mailchimp")
    assert got == contacts("Mailchimp import", {
        1: {"email": "dennis.ritchie@example.com", "firstName": "Dennis", "lastName": "Ritchie", "company": "Bell Labs",
            "memberRating": 2, "subscribedAt": "2018-05-01T08:00:00Z", "confirmedAt": "2018-05-01T08:01:00Z",
            "tags": "Customers", "subscribed": False},
        2: {"email": "Bjarne.Stroustrup@Example.COM", "firstName": "Bjarne", "lastName": "Stroustrup",
            "memberRating": 3, "subscribedAt": "2018-06-11T12:30:00Z", "confirmedAt": "2018-06-11T12:31:05Z",
            "subscribed": False},
        3: {"email": "hedy.lamarr@example.com", "firstName": "Hedy", "lastName": "Lamarr", "memberRating": 1,
            "subscribedAt": "2019-01-20T19:45:00Z", "confirmedAt": "2019-01-20T19:46:10Z", "tags": "VIP",
            "subscribed": False},
        4: {"email": "john.backus@example.com", "firstName": "John", "lastName": "Backus", "company": "IBM",
            "memberRating": 2, "subscribedAt": "2019-03-03T03:03:03Z", "subscribed": False},
        5: {"email": "niklaus.wirth@example.com", "firstName": "Niklaus", "lastName": "Wirth", "company": "ETH",
            "memberRating": 3, "subscribedAt": "2019-09-09T09:09:09Z", "confirmedAt": "2019-09-09T09:10:00Z",
            "tags": "Customers, Beta testers", "subscribed": False},
        6: {"email": "tony.hoare@example.com", "firstName": "Tony", "lastName": "Hoare", "memberRating": 4,
            "subscribedAt": "2020-10-10T10:00:00Z", "confirmedAt": "2020-10-10T10:01:00Z", "subscribed": False},
        7: {"email": "donald.knuth@example.com", "firstName": "Donald", "lastName": "Knuth", "company": "Stanford",
            "memberRating": 5, "subscribedAt": "2021-12-25T00:00:01Z", "confirmedAt": "2021-12-25T00:02:00Z",
            "tags": "VIP", "subscribed": False},
        8: {"email": "adele.goldberg@example.com", "firstName": "Adele", "lastName": "Goldberg",
            "company": "Xerox PARC", "memberRating": 3, "subscribedAt": "2022-02-22T22:22:22Z",
            "confirmedAt": "2022-02-22T22:23:00Z", "subscribed": False},
    })
    assert rejects == []


def test_mailchimp_cleaned_file_unsubscribes_every_row() -> None:
    got, rejects = run(MAILCHIMP / "cleaned_members_export_8d1f2a9c3e.csv", "mailchimp")
    assert got == contacts("Mailchimp import", {
        1: {"email": "old.mailbox@defunct-isp.example", "firstName": "Ivan", "lastName": "Sutherland",
            "memberRating": 1, "subscribedAt": "2017-04-04T12:00:00Z", "subscribed": False},
        2: {"email": "j.sammet@retired-host.example", "firstName": "Jean", "lastName": "Sammet", "memberRating": 1,
            "subscribedAt": "2017-08-08T08:08:08Z", "tags": "Customers", "subscribed": False},
        3: {"email": "SOPHIE.WILSON@ACORN.EXAMPLE", "firstName": "Sophie", "lastName": "Wilson", "memberRating": 2,
            "subscribedAt": "2018-01-01T01:01:01Z", "subscribed": False},
        4: {"email": "c.shannon@bell-labs.example", "firstName": "Claude", "lastName": "Shannon", "memberRating": 1,
            "subscribedAt": "2018-02-02T02:02:02Z", "subscribed": False},
        5: {"email": "ray.tomlinson@arpanet.example", "firstName": "Ray", "lastName": "Tomlinson", "memberRating": 1,
            "subscribedAt": "2018-03-03T03:03:03Z", "tags": "VIP", "subscribed": False},
        6: {"email": "l.conway@vlsi.example", "firstName": "Lynn", "lastName": "Conway", "memberRating": 2,
            "subscribedAt": "2019-04-04T04:04:04Z", "subscribed": False},
        7: {"email": "a.kay@parc.example", "firstName": "Alan", "lastName": "Kay", "memberRating": 1,
            "subscribed": False},
        8: {"email": "e.codd@ibm-research.example", "firstName": "Edgar", "lastName": "Codd", "memberRating": 1,
            "subscribedAt": "2019-12-12T12:12:12Z", "tags": "Customers", "subscribed": False},
    })
    assert rejects == []


def test_mailchimp_unsubscribed_detected_by_file_name_alone(tmp_path: Path) -> None:
    original = MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv"
    renamed = tmp_path / "cleaned_members_export_8d1f2a9c3e.csv"  # the file name says cleaned; no CLEAN_TIME column
    renamed.write_bytes(original.read_bytes())
    mapped = apply_mapping(read_source(renamed), load_preset("mailchimp"))
    assert set(mapped.frame["subscribed"].to_list()) == {"false"}
    assert mapped.unsubscribed_reason == "its name matches 'cleaned_members_export*'"


def test_kit() -> None:
    got, rejects = run(EXPORTS / "kit_subscribers.csv", "kit")
    assert got == contacts("Kit import", {
        1: {"firstName": "Nina", "email": "nina.simone@example.com", "subscribedAt": "2021-03-04T10:22:11Z",
            "confirmedAt": "2021-03-04T10:25:40Z", "tags": "Newsletter, Jazz fans", "signupSource": "Homepage form"},
        2: {"firstName": "Miles", "email": "MILES.DAVIS@Example.com", "subscribedAt": "2021-04-18T08:00:00Z",
            "confirmedAt": "2021-04-18T08:03:12Z", "signupSource": "Landing page: Kind of Blue"},
        3: {"firstName": "Ella", "email": "ella.fitzgerald@example.com", "subscribed": False,
            "subscribedAt": "2021-05-01T12:12:12Z", "confirmedAt": "2021-05-01T12:15:00Z", "tags": "Newsletter",
            "signupSource": "Homepage form"},
        4: {"firstName": "Louis", "email": "louis.armstrong@example.com", "subscribed": False,
            "subscribedAt": "2021-06-30T23:59:00Z", "signupSource": "Import"},
        5: {"firstName": "Billie", "email": "billie.holiday@example.com", "subscribed": False,
            "subscribedAt": "2021-07-07T07:07:07Z", "confirmedAt": "2021-07-07T07:10:00Z", "tags": "Jazz fans",
            "signupSource": "Homepage form"},
        7: {"firstName": "Charlie", "email": "charlie.parker@example.com", "subscribed": False,
            "subscribedAt": "2022-01-15T15:30:00Z", "confirmedAt": "2022-01-15T15:31:00Z",
            "signupSource": "Homepage form"},
        8: {"firstName": "Thelonious", "email": "thelonious.monk@example.com", "subscribedAt": "2022-02-02T02:02:02Z",
            "confirmedAt": "2022-02-02T02:05:00Z", "tags": "Newsletter, Piano",
            "signupSource": "Landing page: Round Midnight"},
        9: {"email": "sarah.vaughan@example.com", "subscribedAt": "2022-08-08T18:00:00Z",
            "confirmedAt": "2022-08-08T18:02:30Z", "tags": "Newsletter", "signupSource": "Homepage form"},
    })
    assert rejects == [
        (6, f"subscribedAt value 'March 5th 2021' is not a date {DATE_HINT}"),
        (10, "subscribed value 'paused' is not a boolean (use true/false/yes/no/1/0)"),
    ]


def test_sendgrid() -> None:
    got, rejects = run(EXPORTS / "sendgrid_contacts_export.csv", "sendgrid")
    us = "United States"
    assert got == contacts("SendGrid import", {
        1: {"email": "rosalind.franklin@example.com", "firstName": "Rosalind", "lastName": "Franklin",
            "city": "Cambridge", "region": "Cambridgeshire", "postalCode": "CB2 1TN", "country": "United Kingdom",
            "phone": "+44 1223 555010", "subscribedAt": "2021-07-14T18:32:09Z"},
        2: {"email": "Marie.Curie@Example.com", "firstName": "Marie", "lastName": "Curie", "city": "Paris",
            "region": "Ile-de-France", "postalCode": "75004", "country": "France",
            "subscribedAt": "2021-08-01T09:00:00Z"},
        3: {"email": "richard.feynman@example.com", "firstName": "Richard", "lastName": "Feynman",
            "city": "Pasadena", "region": "CA", "postalCode": "91125", "country": us, "phone": "+1 626 555 0199",
            "subscribedAt": "2021-09-15T16:45:30Z"},
        4: {"email": "chien-shiung.wu@example.com", "firstName": "Chien-Shiung", "lastName": "Wu",
            "city": "New York", "region": "NY", "postalCode": "10027", "country": us,
            "subscribedAt": "2022-01-10T08:20:00Z"},
        5: {"email": "niels.bohr@example.com", "firstName": "Niels", "lastName": "Bohr", "city": "Copenhagen",
            "postalCode": "2100", "country": "Denmark", "subscribedAt": "2022-03-03T13:13:13Z"},
        6: {"email": "lise.meitner@example.com", "firstName": "Lise", "lastName": "Meitner", "city": "Stockholm",
            "postalCode": "114 18", "country": "Sweden", "subscribedAt": "2022-05-05T05:05:05Z"},
        8: {"email": "emmy.noether@example.com", "firstName": "Emmy", "lastName": "Noether", "city": "Bryn Mawr",
            "region": "PA", "postalCode": "19010", "country": us, "subscribedAt": "2022-09-09T09:09:09Z"},
        9: {"email": "paul.dirac@example.com", "city": "Boston", "region": "MA", "postalCode": "02134",
            "country": us, "subscribedAt": "2023-01-20T20:20:20Z"},
        10: {"email": "vera.rubin@example.com", "firstName": "Vera", "lastName": "Rubin", "city": "Washington",
             "region": "DC", "postalCode": "20015", "country": us, "phone": "+1 202 555 0123",
             "subscribedAt": "2023-06-01T12:00:00Z"},
    })
    assert rejects == [(7, f"subscribedAt value 'yesterday' is not a date {DATE_HINT}")]


BREVO: dict[int, dict[str, Any]] = {
    1: {"email": "helene.boucher@example.fr", "firstName": "Hélène", "lastName": "Boucher", "phone": "33612345678",
        "subscribedAt": "2023-05-14T09:12:45Z"},
    2: {"email": "EMILE.ZOLA@EXAMPLE.FR", "firstName": "Émile", "lastName": "Zola",
        "subscribedAt": "2023-05-15T11:00:00Z"},
    3: {"email": "marie.dupont@example.fr", "firstName": "Marie", "lastName": "Dupont; Martin",
        "phone": "33698765432", "subscribed": False, "subscribedAt": "2023-06-02T08:30:00Z"},
    4: {"email": "jean.moulin@example.fr", "firstName": "Jean", "lastName": "Moulin",
        "subscribedAt": "2023-07-14T14:07:14Z"},
    6: {"email": "louis.pasteur@example.fr", "firstName": "Louis", "lastName": "Pasteur", "phone": "33601020304",
        "subscribed": False, "subscribedAt": "2023-09-01T07:45:00Z"},
    7: {"email": "george.sand@example.fr", "firstName": "George", "lastName": "Sand",
        "subscribedAt": "2023-10-10T10:10:10Z"},
    8: {"email": "victor.hugo@example.fr", "firstName": "Victor", "lastName": "Hugo",
        "subscribedAt": "2023-11-11T11:11:11Z"},
    9: {"email": "colette@example.fr", "firstName": "Colette", "subscribedAt": "2024-01-05T16:00:00Z"},
    10: {"email": "albert.camus@example.fr", "firstName": "Albert", "lastName": "Camus", "phone": "33655554444",
         "subscribedAt": "2024-02-29T23:59:59Z"},
}


@pytest.mark.parametrize("delimiter", [None, ";"])
def test_brevo_semicolon_separated(delimiter: str | None) -> None:
    assert (EXPORTS / "brevo_contacts_export.csv").read_text(encoding="utf-8").startswith("CONTACT ID;EMAIL;")
    got, rejects = run(EXPORTS / "brevo_contacts_export.csv", "brevo", delimiter=delimiter)
    assert got == contacts("Brevo import", BREVO)
    assert rejects == [(5, f"subscribedAt value '14/05/2023 09:12' is not a date {DATE_HINT}")]


def test_brevo_french_attribute_names(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("EMAIL;PRENOM;NOM;BLACKLISTED\nanne@example.fr;Anne;Hébert;Oui\nluc@example.fr;Luc;Besson;1\n")
    got, rejects = run(path, "brevo")
    assert got == contacts("Brevo import", {
        2: {"email": "luc@example.fr", "firstName": "Luc", "lastName": "Besson", "subscribed": False},
    })
    assert rejects == [(1, "subscribed value 'Oui' is not a boolean (use true/false/yes/no/1/0)")]


def test_beehiiv() -> None:
    got, rejects = run(EXPORTS / "beehiiv_subscribers.csv", "beehiiv")
    assert got == contacts("beehiiv import", {
        1: {"email": "octavia.butler@example.com", "firstName": "Octavia", "lastName": "Butler", "tier": "premium",
            "subscribedAt": "2023-03-24T10:23:10Z", "utmSource": "twitter", "utmMedium": "social",
            "utmCampaign": "launch"},
        2: {"email": "URSULA.LEGUIN@EXAMPLE.COM", "firstName": "Ursula", "lastName": "Le Guin", "tier": "free",
            "subscribedAt": "2023-03-25T08:00:00Z"},
        3: {"email": "isaac.asimov@example.com", "firstName": "Isaac", "lastName": "Asimov", "subscribed": False,
            "tier": "free", "subscribedAt": "2023-04-01T12:00:00Z", "utmSource": "google", "utmMedium": "cpc",
            "utmCampaign": "spring"},
        4: {"email": "arthur.clarke@example.com", "firstName": "Arthur", "lastName": "Clarke", "subscribed": False,
            "tier": "free", "subscribedAt": "2023-04-02T13:14:15Z"},
        5: {"email": "mary.shelley@example.com", "firstName": "Mary", "lastName": "Shelley", "tier": "premium",
            "subscribedAt": "2023-05-05T05:05:05Z", "utmSource": "newsletter", "utmMedium": "email",
            "utmCampaign": "referral"},
        7: {"email": "frank.herbert@example.com", "firstName": "Frank", "lastName": "Herbert", "subscribed": False,
            "tier": "premium", "subscribedAt": "2023-07-07T07:07:07Z"},
        8: {"email": "n.k.jemisin@example.com", "firstName": "N. K.", "lastName": "Jemisin", "tier": "premium",
            "subscribedAt": "2023-08-08T08:08:08Z", "utmSource": "twitter", "utmMedium": "social",
            "utmCampaign": "hugo"},
        9: {"email": "ted.chiang@example.com", "tier": "free", "subscribedAt": "2023-09-09T09:09:09Z"},
        10: {"email": "becky.chambers@example.com", "firstName": "Becky", "lastName": "Chambers", "tier": "free",
             "subscribedAt": "2023-10-10T10:10:10Z", "utmSource": "podcast", "utmMedium": "audio"},
    })
    assert rejects == [(6, f"subscribedAt value 'not a date' is not a date {DATE_HINT}")]


def test_substack() -> None:
    got, rejects = run(EXPORTS / "email_list.the-weekly-byte.csv", "substack")
    assert got == contacts("Substack import", {
        1: {"email": "reader.one@example.com", "paidSubscriber": True, "subscriptionExpiresAt": "2025-01-15T00:00:00Z",
            "plan": "yearly", "subscribedAt": "2022-01-15T09:30:00Z", "firstPaymentAt": "2022-01-15T09:31:10Z"},
        2: {"email": "READER.TWO@EXAMPLE.COM", "paidSubscriber": False, "subscribedAt": "2022-02-20T18:45:12Z"},
        3: {"email": "reader.three@example.com", "paidSubscriber": True,
            "subscriptionExpiresAt": "2024-07-01T00:00:00Z", "plan": "monthly", "subscribedAt": "2022-03-01T12:00:00Z",
            "firstPaymentAt": "2022-03-01T12:01:00Z"},
        4: {"email": "reader.four@example.com", "paidSubscriber": False, "subscribed": False,
            "subscribedAt": "2022-04-04T04:04:04Z"},
        5: {"email": "reader.five@example.com", "paidSubscriber": True, "plan": "comp",
            "subscribedAt": "2022-05-05T05:05:05Z"},
        6: {"email": "reader.six@example.com", "paidSubscriber": False, "subscriptionExpiresAt": "2023-06-06T00:00:00Z",
            "plan": "yearly", "subscribed": False, "subscribedAt": "2022-06-06T06:06:06Z",
            "firstPaymentAt": "2022-06-06T06:07:00Z"},
        8: {"email": "reader.eight@example.com", "paidSubscriber": False, "subscribedAt": "2022-08-08T08:08:08Z"},
        9: {"email": "reader.nine@example.com", "paidSubscriber": True, "subscriptionExpiresAt": "2025-09-09T00:00:00Z",
            "plan": "founding", "subscribedAt": "2022-09-09T09:09:09Z", "firstPaymentAt": "2022-09-09T09:10:00Z"},
        10: {"email": "reader.ten@example.com", "paidSubscriber": False, "subscribedAt": "2022-10-10T10:10:10Z"},
    })
    assert rejects == [(7, "paidSubscriber value 'maybe' is not a boolean (use true/false/yes/no/1/0)")]


def test_preset_plus_the_docs_tweaks_file(tmp_path: Path) -> None:
    """A mapping file over a preset: its TAGS entry replaces the preset's, its constant wins, Address is kept."""
    blocks = re.findall(r"```toml\n(# tweaks\.toml.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    tweaks = tmp_path / "tweaks.toml"
    tweaks.write_text(blocks[0], encoding="utf-8")
    spec = merge(load_preset("mailchimp"), load_mapping(tweaks))
    source = read_source(MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv")
    mapped = apply_mapping(source, spec, {"VIP customers": "cm_vip", "Customers": "cm_customers"})
    got = bodies(mapped)
    assert got[1] == {
        "email": "ada.lovelace@example.com", "firstName": "Ada", "lastName": "Lovelace",
        "address": "12 St James's Square  London  SW1Y 4JH GB", "phone": "+44 20 7946 0001",
        "company": "Analytical Engines Ltd", "memberRating": 5, "subscribedAt": "2018-02-12T10:54:27Z",
        "confirmedAt": "2018-02-12T10:55:03Z", "tags": "Customers, VIP", "mailingLists": {"cm_vip": True},
        "source": "Mailchimp (2024 migration)",
    }
    on_vip = sorted(number for number, body in got.items() if body.get("mailingLists") == {"cm_vip": True})
    assert on_vip == [1, 7, 11]
    assert all(body["source"] == "Mailchimp (2024 migration)" for body in got.values())


SAMPLES = [
    ("mailchimp", MAILCHIMP / "subscribed_members_export_8d1f2a9c3e.csv", 10, [(6, "linus.torvalds@example")]),
    ("mailchimp", MAILCHIMP / "unsubscribed_members_export_8d1f2a9c3e.csv", 8, []),
    ("mailchimp", MAILCHIMP / "cleaned_members_export_8d1f2a9c3e.csv", 8, []),
    ("kit", EXPORTS / "kit_subscribers.csv", 8, []),
    ("sendgrid", EXPORTS / "sendgrid_contacts_export.csv", 9, []),
    ("brevo", EXPORTS / "brevo_contacts_export.csv", 9, []),
    ("beehiiv", EXPORTS / "beehiiv_subscribers.csv", 9, []),
    ("substack", EXPORTS / "email_list.the-weekly-byte.csv", 9, []),
]


@pytest.mark.parametrize(("preset", "path", "valid", "bad_emails"), SAMPLES, ids=[s[1].name for s in SAMPLES])
def test_normalise_takes_every_mapped_sample(
    preset: str, path: Path, valid: int, bad_emails: list[tuple[int, str]]
) -> None:
    """Stage 2 over the mapped samples: emails lowercased, the one bad email rejected, everything else kept."""
    mapped = apply_mapping(read_source(path), load_preset(preset))
    result = normalise(mapped)
    emails = result.frame["email"].to_list()
    assert len(emails) == valid
    assert emails == [email.strip().lower() for email in emails]
    rejects = result.rejects.select("__row", "__reason").rows()
    assert [r for r in rejects if r[1].startswith("invalid email")] == [
        (row, f"invalid email syntax: {email}") for row, email in bad_emails
    ]
    # Values that did not fit their type were refused by the mapping; normalise reports them too.
    refused_by_mapping = mapped.rejects.select("__row", "__reason").rows()
    assert [r for r in rejects if not r[1].startswith("invalid email")] == refused_by_mapping
