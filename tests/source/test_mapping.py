"""Mapping files: loading and its errors, merging with presets, and applying a mapping to a source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.errors import ConfigError
from bulksync.fields import payload_from_fields
from bulksync.plan.normalise import normalise
from bulksync.source.mapping import MappedSource, apply_mapping, identity_mapping
from bulksync.source.mapping_file import PRESETS, load_mapping, load_preset
from bulksync.source.mapping_spec import ColumnRule, Constant, MappingSpec, merge, property_name
from bulksync.source.read import read_source

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mapping.md"
COLUMN_KEYS = "to, type, format, transform, values, list, lists, separator, optional"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def mapping(tmp_path: Path, toml: str, name: str = "m.toml") -> MappingSpec:
    return load_mapping(write(tmp_path, name, toml))


def mapping_error(tmp_path: Path, toml: str) -> str:
    path = write(tmp_path, "m.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def mapped(tmp_path: Path, csv: str, spec: MappingSpec, name: str = "in.csv", **kwargs: Any) -> MappedSource:
    return apply_mapping(read_source(write(tmp_path, name, csv)), spec, **kwargs)


def rows(result: MappedSource) -> list[dict[str, Any]]:
    return result.frame.to_dicts()


def bodies(result: MappedSource) -> list[dict[str, Any]]:
    """The Loops request body of each mapped row (fields without a value left out)."""
    found = []
    for row in result.frame.drop("__row").to_dicts():
        body = payload_from_fields(row, {name: result.types.get(name, "string") for name in row})
        found.append({name: value for name, value in body.items() if value is not None})
    return found


# -- loading ---------------------------------------------------------------------------------------


def test_docs_example_loads_and_maps_as_the_docs_say(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"## A complete example\n\n```toml\n(.*?)```", text, re.S)
    assert example is not None
    spec = mapping(tmp_path, example.group(1), "crm.toml")
    csv = (
        "E-mail,Full Name,Customer ID,Plan,Seats,MRR (EUR),Signed up,Status,Newsletter,Segments,Company Name,"
        "Internal Notes\n"
        'ada@example.com,Ada King Lovelace, c-1 , Pro ,3,"1.234,50",31/01/2024,active,yes,VIP;Beta,'
        "Analytical Engines,call back\n"
    )
    lists = {"Product newsletter": "cm_news", "VIP customers": "cm_vip", "Onboarding": "cm_onb",
             "Beta": "cm1a2b3c4d5e6f7g8h9i0j"}
    result = mapped(tmp_path, csv, spec, lists_by_name=lists)
    assert rows(result) == [
        {
            "__row": 1, "email": "ada@example.com", "firstName": "Ada", "lastName": "King Lovelace",
            "userId": "c-1", "plan": "pro", "seats": "3", "mrr": "1234.5", "signupDate": "2024-01-31",
            "subscribed": None, "mailingLists.cm_news": "true", "segments": "VIP, Beta",
            "mailingLists.cm_vip": "true", "mailingLists.cm1a2b3c4d5e6f7g8h9i0j": "true",
            "companyName": "Analytical Engines", "source": "CRM import", "userGroup": "customers",
            "importedOn": "2024-06-01", "mailingLists.cm_onb": "true",
        }
    ]
    (body,) = bodies(result)
    assert json.dumps(body, sort_keys=True) == json.dumps(
        {
            "email": "ada@example.com", "firstName": "Ada", "lastName": "King Lovelace", "userId": "c-1",
            "plan": "pro", "seats": 3, "mrr": 1234.5, "signupDate": "2024-01-31", "segments": "VIP, Beta",
            "companyName": "Analytical Engines", "source": "CRM import", "userGroup": "customers",
            "importedOn": "2024-06-01",
            "mailingLists": {"cm_news": True, "cm_vip": True, "cm1a2b3c4d5e6f7g8h9i0j": True, "cm_onb": True},
        },
        sort_keys=True,
    )
    assert [(p.source, p.status) for p in result.plan if p.status == "ignored"] == [("Internal Notes", "ignored")]


def test_docs_error_example_is_the_real_message(tmp_path: Path) -> None:
    message = mapping_error(tmp_path, '[columns.Seats]\ntpye = "number"\n')
    assert message == f"unknown key 'tpye' in [columns.Seats]; known keys: {COLUMN_KEYS}; did you mean 'type'?"
    assert message in DOCS.read_text(encoding="utf-8").replace("crm.toml: ", "")


def test_loaded_spec_is_plain_frozen_data(tmp_path: Path) -> None:
    spec = mapping(
        tmp_path,
        """
unmapped = "drop"
ignore = ["LEID"]
[columns."Email Address"]
to = "email"
[columns.Rating]
to = "rating"
type = "number"
[columns.Status]
to = "subscribed"
values = { Active = "", gone = false, "1" = 1 }
[constants]
source = "Import"
vip = true
seats = 3
ratio = 0.5
joined = 2024-06-01
joinedAt = 2024-06-01T10:00:00+02:00
[unsubscribed_file]
if_columns = ["UNSUB_TIME"]
if_name = ["unsub*"]
""",
    )
    assert spec.columns == (
        ColumnRule("Email Address", to="email"),
        ColumnRule("Rating", to="rating", type="number"),
        ColumnRule("Status", to="subscribed", values=(("active", None), ("gone", "false"), ("1", "1"))),
    )
    assert spec.constants == (
        Constant("source", "Import", "string"),
        Constant("vip", "true", "boolean"),
        Constant("seats", "3", "number"),
        Constant("ratio", "0.5", "number"),
        Constant("joined", "2024-06-01", "date"),
        Constant("joinedAt", "2024-06-01T08:00:00Z", "date"),
    )
    assert (spec.unmapped, spec.ignore) == ("drop", ("LEID",))
    assert (spec.unsubscribed_columns, spec.unsubscribed_names) == (("UNSUB_TIME",), ("unsub*",))
    with pytest.raises(AttributeError):
        spec.unmapped = "keep"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('colums = {}\n', "unknown key 'colums' at the top level; known keys: description, unmapped, "
         "optional_columns, ignore, columns, constants, unsubscribed_file; did you mean 'columns'?"),
        ('[columns.Foo]\nx = 1\n', f"unknown key 'x' in [columns.Foo]; known keys: {COLUMN_KEYS}"),
        ('[columns."First Name"]\nfeild = "firstName"\n',
         f"unknown key 'feild' in [columns.\"First Name\"]; known keys: {COLUMN_KEYS}"),
        ('[unsubscribed_file]\nif_column = ["X"]\n',
         "unknown key 'if_column' in [unsubscribed_file]; known keys: if_columns, if_name; did you mean 'if_columns'?"),
        ('[columns.plan]\ntype = "integer"\n',
         "[columns.plan] type = 'integer' is not a type; use one of string, number, boolean, date"),
        ('[columns.Name]\ntransform = "titlecase"\n',
         "[columns.Name] transform 'titlecase' is unknown; use one of trim, lowercase, tags, split_name"),
        ('[columns.Name]\ntransform = ["trim", "lower"]\n',
         "[columns.Name] transform 'lower' is unknown (did you mean 'lowercase'?); use one of trim, lowercase, "
         "tags, split_name"),
        ('[columns.Name]\ntransform = 3\n',
         "[columns.Name] transform must be a name or a list of names from trim, lowercase, tags, split_name"),
        ('[columns.Name]\nto = "First Name"\n',
         "[columns.Name] to: 'First Name' is not a valid property name; Loops property names are camelCase, "
         "e.g. 'firstName'"),
        ('[columns.Name]\nto = "FirstName"\n', "[columns.Name] to: 'FirstName' is not a Loops field; "
         "did you mean 'firstName'?"),
        ('[columns.Created]\nto = "createdAt"\n',
         "[columns.Created] to: 'createdAt' is read-only in Loops; map the column to another name"),
        ('[columns.Team]\nto = "teamId"\n',
         "[columns.Team] to: 'teamId' is a reserved name in Loops; choose another property name"),
        ('[columns.L]\nto = "mailingLists"\n',
         '[columns.L] to: map a column to a mailing list with list = "<list id or name>"'),
        ('[columns."2FA"]\ntype = "boolean"\n',
         "[columns.2FA] needs to = \"...\": the column name '2FA' makes no valid property name"),
        ('[columns.S]\nto = "subscribed"\ntype = "number"\n',
         "[columns.S] type = 'number' does not fit subscribed, a boolean field in Loops"),
        ('[columns.S]\nto = "score"\nformat = "%d"\n',
         '[columns.S] format needs type = "date" or type = "number"'),
        ('[columns.S]\nto = "score"\ntype = "number"\nformat = "european"\n',
         "[columns.S] number format 'european' is unknown; use one of decimal_comma, comma_thousands"),
        ('[columns.D]\nto = "day"\ntype = "date"\nformat = "DD/MM/YYYY"\n',
         "[columns.D] date format 'DD/MM/YYYY' has no strftime directive; write it like '%d/%m/%Y'"),
        ('[columns.N]\nto = "name"\ntransform = "split_name"\n',
         "[columns.N] transform split_name makes firstName and lastName; remove 'to'"),
        ('[columns.N]\nlist = "News"\ntype = "boolean"\n',
         "[columns.N] list = 'News' maps the column to a mailing list; remove 'type'"),
        ('[columns.N]\nto = 5\n', "to in [columns.N] must be a string, not an integer"),
        ('[columns.N]\noptional = "yes"\n', "optional in [columns.N] must be true or false, not a string"),
        ('[columns.N]\nlists = { VIP = 3 }\n', "[columns.N] lists.VIP must be a list id or name (a string)"),
        ('columns = { N = "email" }\n', 'columns.N must be a table, e.g. [columns.N] with to = "..."'),
        ('unmapped = "maybe"\n',
         "unmapped = 'maybe' is not allowed; use \"keep\" (unmapped columns become custom properties) or \"drop\""),
        ('ignore = "LEID"\n', 'ignore must be a list of strings such as ["A", "B"]'),
        ('ignore = ["Plan"]\n[columns.Plan]\nto = "plan"\n',
         "column 'Plan' is both in ignore and in [columns]; keep one of them"),
        ('[constants]\nemail = "a@example.com"\n',
         "[constants] email cannot be the same for every row; map it from a column"),
        ('[constants]\nsubscribed = "no"\n', "[constants] subscribed must be true or false"),
        ('[constants]\ntags = ["a"]\n', "[constants] tags must be a string, number, boolean or date, not an array"),
        ('[constants]\n"Lead Source" = "x"\n',
         "[constants] Lead Source: 'Lead Source' is not a valid property name; Loops property names are camelCase, "
         "e.g. 'leadSource'"),
        ('[constants]\nmailingLists = { News = "yes" }\n',
         'constants.mailingLists must be a table of list ids or names to true/false, e.g. mailingLists = '
         '{ "Newsletter" = true }'),
    ],
)
def test_mapping_file_errors(tmp_path: Path, toml: str, message: str) -> None:
    assert mapping_error(tmp_path, toml) == message


def test_unreadable_mapping_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    expected = f"^{re.escape(str(missing))}: no such mapping file; check the --mapping path$"
    with pytest.raises(ConfigError, match=expected):
        load_mapping(missing)
    bad = write(tmp_path, "bad.toml", "[columns.A\nto = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML \(.*\); fix the syntax$"):
        load_mapping(bad)


def test_presets_load_by_name_and_alias() -> None:
    assert PRESETS == ("mailchimp", "kit", "sendgrid", "brevo", "beehiiv", "substack")
    assert load_preset("ConvertKit").origin == "preset 'kit'"
    assert load_preset("sendinblue") is load_preset("brevo")
    assert all(load_preset(name).unmapped == "drop" for name in PRESETS)
    with pytest.raises(ConfigError) as info:
        load_preset("mailchimpp")
    assert str(info.value) == (
        "unknown preset 'mailchimpp'; known presets: mailchimp, kit, sendgrid, brevo, beehiiv, substack"
    )


def test_list_refs_collects_every_list_the_mapping_names(tmp_path: Path) -> None:
    spec = mapping(
        tmp_path,
        '[columns.A]\nlist = "News"\n[columns.T]\nlists = { x = "VIP", y = "News" }\n'
        '[constants]\nmailingLists = { Onboarding = true }\n',
    )
    assert spec.list_refs() == ["News", "VIP", "Onboarding"]


# -- merging ---------------------------------------------------------------------------------------


BASE = """
unmapped = "drop"
ignore = ["LEID", "NOTES"]
[columns."Email Address"]
to = "email"
[columns.TAGS]
to = "tags"
transform = "tags"
[columns.FNAME]
to = "firstName"
[columns.RATING]
to = "rating"
type = "number"
[constants]
source = "Preset import"
userGroup = "newsletter"
[unsubscribed_file]
if_columns = ["UNSUB_TIME"]
"""


def test_merge_file_entries_win_entry_by_entry(tmp_path: Path) -> None:
    base = mapping(tmp_path, BASE, "base.toml")
    override = mapping(
        tmp_path,
        """
ignore = ["RATING"]
[columns.TAGS]
lists = { VIP = "cm_vip" }
[columns.NOTES]
to = "notes2"
[columns."Given Name"]
to = "firstName"
[columns.Origin]
to = "source"
[constants]
userGroup = "customers"
""",
        "file.toml",
    )
    merged = merge(base, override)
    assert merged.origin == f"{tmp_path / 'base.toml'} + {tmp_path / 'file.toml'}"
    assert [rule.column for rule in merged.columns] == ["Email Address", "TAGS", "NOTES", "Given Name", "Origin"]
    assert merged.rule("tags") == ColumnRule("TAGS", list_items=(("VIP", "cm_vip"),))  # replaced whole
    assert merged.constants == (Constant("userGroup", "customers", "string"),)  # source now comes from Origin
    assert merged.ignore == ("LEID", "RATING")  # NOTES is mapped by the file, so no longer ignored
    assert merged.unmapped == "drop"
    assert merged.unsubscribed_columns == ("UNSUB_TIME",)

    csv = (
        "Email Address,FNAME,Given Name,TAGS,RATING,NOTES,LEID,Origin,UNSUB_TIME\n"
        'a@example.com,Al,Alan,"""VIP"",""X""",5,hi,123,web,2024-01-01 00:00:00\n'
    )
    result = mapped(tmp_path, csv, merged)
    assert rows(result) == [
        {"__row": 1, "email": "a@example.com", "firstName": "Alan", "mailingLists.cm_vip": "true", "notes2": "hi",
         "source": "web", "userGroup": "customers", "subscribed": "false"}
    ]


def test_merge_keeps_base_settings_the_file_does_not_set(tmp_path: Path) -> None:
    base = mapping(tmp_path, BASE, "base.toml")
    merged = merge(base, mapping(tmp_path, 'unmapped = "keep"\n', "file.toml"))
    assert merged.unmapped == "keep"
    assert merged.columns == base.columns and merged.constants == base.constants
    assert merge(base, MappingSpec()).unmapped == "drop"


# -- applying ----------------------------------------------------------------------------------------


def test_unmapped_columns_kept_camelcased_or_dropped(tmp_path: Path) -> None:
    csv = "EMAIL,First Name,MEMBER_RATING,Company Name,utm_source,plan,mailingLists.cm1\nA@x.io,Ada,5,AE,tw,pro,yes\n"
    keep = mapped(tmp_path, csv, MappingSpec())
    assert keep.frame.columns == [
        "__row", "email", "firstName", "memberRating", "companyName", "utmSource", "plan", "mailingLists.cm1"
    ]
    assert keep.frame.row(0) == (1, "A@x.io", "Ada", "5", "AE", "tw", "pro", "true")
    drop = mapped(tmp_path, csv, MappingSpec(columns=(ColumnRule("email", to="email"),), unmapped="drop"))
    assert drop.frame.columns == ["__row", "email"]
    assert [p.status for p in drop.plan] == ["mapped", *["dropped"] * 6]


def test_identity_mapping_names_columns_like_normalise(tmp_path: Path) -> None:
    result = identity_mapping(read_source(write(tmp_path, "in.csv", "EMAIL,Company Name\na@x.io,AE\n")))
    assert result.frame.columns == ["__row", "email", "Company Name"]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Email", "email"), ("FIRSTNAME", "firstName"), ("First Name", "firstName"), ("user_id", "userId"),
        ("MEMBER_RATING", "memberRating"), ("Company Name", "companyName"), ("utm_source", "utmSource"),
        ("CreatedAt", "createdAt"), ("plan", "plan"), ("signupDate", "signupDate"), ("HTMLParser", "htmlParser"),
        ("address 2", "address2"), ("mailingLists.cm1", "mailingLists.cm1"), ("2FA", "2Fa"),
    ],
)
def test_property_name(header: str, name: str) -> None:
    assert property_name(header) == name


def test_headers_match_case_insensitively_and_missing_columns(tmp_path: Path) -> None:
    spec = MappingSpec(columns=(ColumnRule(" email address ", to="email"), ColumnRule("Phone", to="phone")))
    path = write(tmp_path, "in.csv", "Email Address\na@x.io\n")
    with pytest.raises(ConfigError) as info:
        apply_mapping(read_source(path), spec)
    assert str(info.value) == (
        f"{path}: column 'Phone' of the mapping (mapping) is not in the file (columns: 'Email Address'); "
        "fix the name in the mapping or mark it optional = true"
    )
    lenient = apply_mapping(read_source(path), spec, strict=False)
    assert lenient.missing_columns == ["Phone"]
    assert rows(lenient) == [{"__row": 1, "email": "a@x.io"}]


def test_transforms_and_value_maps(tmp_path: Path) -> None:
    spec = mapping(
        tmp_path,
        """
[columns.Email]
to = "email"
transform = ["trim", "lowercase"]
[columns.Name]
transform = "split_name"
[columns.Tags]
to = "tags"
transform = "tags"
[columns.State]
to = "subscribed"
values = { active = "", cancelled = false, " Opted In " = true }
""",
    )
    csv = (
        "Email,Name,Tags,State\n"
        ' Ada@X.io ,Ada King Lovelace,"""Customers"",""VIP""",Active\n'
        'b@x.io,"Lovelace,  Ada",a; b ,CANCELLED\n'
        "c@x.io,Cher,,opted in\n"
        "d@x.io,  ,\" , \",weird\n"
    )
    result = mapped(tmp_path, csv, spec)
    assert rows(result) == [
        {"__row": 1, "email": "ada@x.io", "firstName": "Ada", "lastName": "King Lovelace", "tags": "Customers, VIP",
         "subscribed": None},
        {"__row": 2, "email": "b@x.io", "firstName": "Ada", "lastName": "Lovelace", "tags": "a; b",
         "subscribed": "false"},
        {"__row": 3, "email": "c@x.io", "firstName": "Cher", "lastName": None, "tags": None, "subscribed": "true"},
    ]
    assert result.rejects.select("__row", "__reason").rows() == [
        (4, "subscribed value 'weird' is not a boolean (use true/false/yes/no/1/0)")
    ]


def test_typed_columns_constants_and_rejects(tmp_path: Path) -> None:
    spec = mapping(
        tmp_path,
        """
[columns.email]
to = "email"
[columns.Seats]
to = "seats"
type = "number"
[columns.Joined]
to = "signupDate"
type = "date"
format = "%d/%m/%Y"
[columns.zip]
type = "string"
[constants]
source = "Import"
vip = false
""",
    )
    csv = "email,Seats,Joined,zip,plan\na@x.io,007,31/12/2020,02134,pro\nb@x.io,three,31/31/2020,02135,free\n"
    result = mapped(tmp_path, csv, spec, account_types={"plan": "number", "seats": "string"})
    assert rows(result) == []  # plan is a number in the account: 'pro' does not fit
    assert result.rejects.select("__row", "__reason").rows() == [
        (1, "plan value 'pro' is not a number"),
        (2, "seats value 'three' is not a number; signupDate value '31/31/2020' is not a date (expected %d/%m/%Y); "
            "plan value 'free' is not a number"),
    ]
    assert result.types == {"seats": "number", "signupDate": "date", "zip": "string", "vip": "boolean",
                            "plan": "number"}
    plain = mapped(tmp_path, csv.replace(",pro", ",7"), spec)
    assert rows(plain) == [
        {"__row": 1, "email": "a@x.io", "seats": "7", "signupDate": "2020-12-31", "zip": "02134", "plan": "7",
         "source": "Import", "vip": "false"}
    ]
    assert plain.kinds == {"email": "string", "seats": "number", "signupDate": "date", "zip": "string",
                           "plan": "string", "source": "string", "vip": "boolean"}


def test_mailing_lists_by_name_id_and_items(tmp_path: Path) -> None:
    spec = mapping(
        tmp_path,
        """
[columns.email]
to = "email"
[columns.News]
list = "newsletter"
[columns.Beta]
list = "cm_beta"
[columns.TAGS]
lists = { VIP = "VIP customers", Gold = "VIP customers", Trial = "Trials" }
[constants]
mailingLists = { Onboarding = true }
""",
    )
    csv = (
        "email,News,Beta,TAGS\n"
        'a@x.io,yes,,"""VIP"",""Other"""\n'
        "b@x.io,no,1,gold\n"
        "c@x.io,,0,\n"
    )
    lists = {"Newsletter": "cm_news", "VIP customers": "cm_vip", "Trials": "cm_trial", "Onboarding": "cm_onb",
             "Beta": "cm_beta"}
    result = mapped(tmp_path, csv, spec, lists_by_name=lists)
    assert rows(result) == [
        {"__row": 1, "email": "a@x.io", "mailingLists.cm_news": "true", "mailingLists.cm_beta": None,
         "mailingLists.cm_vip": "true", "mailingLists.cm_trial": None, "mailingLists.cm_onb": "true"},
        {"__row": 2, "email": "b@x.io", "mailingLists.cm_news": "false", "mailingLists.cm_beta": "true",
         "mailingLists.cm_vip": "true", "mailingLists.cm_trial": None, "mailingLists.cm_onb": "true"},
        {"__row": 3, "email": "c@x.io", "mailingLists.cm_news": None, "mailingLists.cm_beta": "false",
         "mailingLists.cm_vip": None, "mailingLists.cm_trial": None, "mailingLists.cm_onb": "true"},
    ]
    without_account = mapped(tmp_path, csv, spec)  # references are taken as ids
    assert "mailingLists.newsletter" in without_account.frame.columns


def test_unknown_list_name_is_a_config_error_or_recorded(tmp_path: Path) -> None:
    spec = mapping(tmp_path, '[columns.email]\nto = "email"\n[columns.News]\nlist = "Newsletter"\n')
    path = write(tmp_path, "in.csv", "email,News\na@x.io,yes\n")
    with pytest.raises(ConfigError) as info:
        apply_mapping(read_source(path), spec, {"Product": "cm1", "VIP": "cm2"})
    assert str(info.value) == (
        f"{tmp_path / 'm.toml'}: mailing list 'Newsletter' (column 'News') is not in the Loops account "
        "(lists: 'Product', 'VIP'); fix the list name or id in the mapping, or create the list in Loops"
    )
    lenient = apply_mapping(read_source(path), spec, {"Product": "cm1"}, strict=False)
    assert lenient.unknown_lists == ["Newsletter"]


def test_two_columns_mapping_to_one_field_is_an_error(tmp_path: Path) -> None:
    spec = MappingSpec(columns=(ColumnRule("Email Address", to="email"),), origin="x.toml")
    path = write(tmp_path, "in.csv", "Email Address,email\na@x.io,b@x.io\n")
    with pytest.raises(ConfigError) as info:
        apply_mapping(read_source(path), spec)
    assert str(info.value) == (
        f"{path}: column 'Email Address' and column 'email' both map to 'email' (x.toml); "
        "ignore one of them or map it to another field"
    )


def test_unsubscribed_export_by_column_or_file_name(tmp_path: Path) -> None:
    spec = MappingSpec(
        columns=(ColumnRule("email", to="email"), ColumnRule("status", to="subscribed")),
        unsubscribed_columns=("UNSUB_TIME",),
        unsubscribed_names=("unsubscribed_members_export*",),
        unmapped="drop",
    )
    by_column = mapped(tmp_path, "email,status,UNSUB_TIME\na@x.io,yes,2024-01-01\n", spec)
    assert rows(by_column) == [{"__row": 1, "email": "a@x.io", "subscribed": "false"}]
    assert by_column.unsubscribed_reason == "it has a UNSUB_TIME column"
    by_name = mapped(tmp_path, "email,status\na@x.io,yes\n", spec, name="Unsubscribed_Members_Export_42.csv")
    assert rows(by_name) == [{"__row": 1, "email": "a@x.io", "subscribed": "false"}]
    assert by_name.unsubscribed_reason == "its name matches 'unsubscribed_members_export*'"
    neither = mapped(tmp_path, "email,status\na@x.io,yes\n", spec)
    assert rows(neither) == [{"__row": 1, "email": "a@x.io", "subscribed": "true"}]


def test_jsonl_kinds_survive_a_rename(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"Email": "a@x.io", "Seats": 3, "Active": true}\n')
    result = apply_mapping(read_source(path), MappingSpec(columns=(ColumnRule("Seats", to="seatCount"),)))
    assert result.kinds == {"email": "string", "seatCount": "number", "active": "boolean"}


def test_normalise_takes_a_mapped_source_and_sends_typed_json(tmp_path: Path) -> None:
    """Integration with stage 2: the kinds make normalise send numbers and booleans as JSON ones."""
    csv = "E-mail,Seats,VIP,Joined\n A@X.io ,007,Yes,2024-01-31 10:00:00\nnot-an-email,1,no,\n"
    spec = MappingSpec(
        columns=(
            ColumnRule("E-mail", to="email"),
            ColumnRule("Seats", to="seats", type="number"),
            ColumnRule("VIP", to="vip", type="boolean"),
            ColumnRule("Joined", to="joined", type="date"),
        )
    )
    contacts = normalise(mapped(tmp_path, csv, spec))
    (row,) = contacts.frame.drop("__row", "__key").to_dicts()
    assert payload_from_fields(row, contacts.types) == {
        "email": "a@x.io", "seats": 7, "vip": True, "joined": "2024-01-31T10:00:00Z"
    }
    assert contacts.rejects.select("__row", "__reason").rows() == [(2, "invalid email syntax: not-an-email")]


def test_malformed_jsonl_lines_are_carried_over(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"email": "a@x.io"}\nnot json\n')
    result = apply_mapping(read_source(path), MappingSpec())
    assert result.malformed == [(2, "malformed JSON at column 1: Expecting value")]
    assert isinstance(result.frame, pl.DataFrame)


def test_a_header_only_export_maps_to_no_rows(tmp_path: Path) -> None:
    result = mapped(tmp_path, "Email Address,OPTIN_TIME,MEMBER_RATING,TAGS\n", load_preset("mailchimp"))
    assert result.frame.columns == ["__row", "email", "subscribedAt", "memberRating", "tags", "source"]
    assert result.frame.is_empty() and result.rejects.is_empty()
