"""normalise: column names, cleaning, validation with exact reasons, mailing lists, and last-row-wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bulksync.columns import KEY, REASON, ROW
from bulksync.config import KeyField
from bulksync.errors import InputError
from bulksync.plan.normalise import Contacts, normalise
from bulksync.source.batch import Source
from bulksync.source.read import read_source

PATH = Path("people.csv")
LONG_OK = "x" * 498
LONG_BAD = "x" * 499


def source(
    columns: dict[str, list[str | None]],
    kinds: dict[str, str] | None = None,
    malformed: list[tuple[int, str]] | None = None,
) -> Source:
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns}).with_row_index(ROW, offset=1)
    return Source(
        path=PATH,
        frame=frame,
        kinds=kinds if kinds is not None else {name: "string" for name in columns},
        malformed=malformed or [],
    )


def contacts_of(columns: dict[str, list[str | None]], key: KeyField = "email", **kwargs: Any) -> Contacts:
    return normalise(source(columns, **kwargs), key)


def valid(contacts: Contacts) -> list[dict[str, Any]]:
    return contacts.frame.to_dicts()


def rejects(contacts: Contacts) -> list[tuple[int, str | None, str]]:
    return [tuple(row) for row in contacts.rejects.iter_rows()]


def input_error(columns: dict[str, list[str | None]], key: KeyField = "email") -> str:
    with pytest.raises(InputError) as info:
        contacts_of(columns, key)
    return str(info.value)


# -- names and types ----------------------------------------------------------------------------------


def test_standard_columns_match_case_insensitively_and_others_keep_their_name() -> None:
    contacts = contacts_of(
        {
            "Email": ["ada@example.com"], "FIRSTNAME": ["Ada"], "lastname": ["Lovelace"], " UserId ": ["u1"],
            "SUBSCRIBED": ["yes"], "usergroup": ["beta"], "Source": ["import"], "Plan": ["pro"],
        }
    )

    assert contacts.fields == ["email", "firstName", "lastName", "userId", "subscribed", "userGroup", "source", "Plan"]
    assert contacts.types == {
        "email": "string", "firstName": "string", "lastName": "string", "userId": "string",
        "subscribed": "boolean", "userGroup": "string", "source": "string", "Plan": "string",
    }
    assert valid(contacts) == [
        {
            ROW: 1, "email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "userId": "u1",
            "subscribed": "true", "userGroup": "beta", "source": "import", "Plan": "pro", KEY: "ada@example.com",
        }
    ]


def test_email_is_trimmed_and_lowercased_other_text_only_trimmed() -> None:
    contacts = contacts_of({"email": ["  Ada.Lovelace@Example.COM \t"], "lastName": ["  McLovelace "]})

    assert valid(contacts) == [
        {ROW: 1, "email": "ada.lovelace@example.com", "lastName": "McLovelace", KEY: "ada.lovelace@example.com"}
    ]


def test_empty_and_blank_cells_are_no_value() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "firstName": [""], "lastName": ["   "], "plan": [None]})

    assert valid(contacts)[0] == {
        ROW: 1, "email": "ada@example.com", "firstName": None, "lastName": None, "plan": None, KEY: "ada@example.com"
    }


def test_leading_zeros_stay_text() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "zip": ["02134"]})

    assert valid(contacts)[0]["zip"] == "02134"
    assert contacts.types["zip"] == "string"


def test_jsonl_kinds_decide_custom_types(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text(
        '{"email": "ada@example.com", "seats": 4, "vip": true, "tags": ["a"], "zip": "02134", "subscribed": false}\n'
        '{"email": "grace@example.com", "seats": 2.5, "vip": false, "tags": [], "zip": "02135", "subscribed": true}\n'
    )

    contacts = normalise(read_source(path))

    assert contacts.types == {
        "email": "string", "seats": "number", "vip": "boolean", "tags": "string", "zip": "string",
        "subscribed": "boolean",
    }
    assert [(r["seats"], r["vip"], r["tags"], r["subscribed"]) for r in valid(contacts)] == [
        ("4", "true", '["a"]', "false"),
        ("2.5", "false", "[]", "true"),
    ]


# -- subscribed and other booleans ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "canonical"),
    [
        ("true", "true"), ("TRUE", "true"), ("Yes", "true"), ("y", "true"), ("1", "true"), ("T", "true"),
        ("false", "false"), ("False", "false"), ("NO", "false"), ("n", "false"), ("0", "false"), ("f", "false"),
        (" yes ", "true"),
    ],
)
def test_subscribed_words_become_true_or_false(word: str, canonical: str) -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "subscribed": [word]})

    assert valid(contacts)[0]["subscribed"] == canonical
    assert rejects(contacts) == []


@pytest.mark.parametrize("word", ["Maybe", "2", "on", "ja"])
def test_invalid_subscribed_is_rejected_with_the_exact_reason(word: str) -> None:
    contacts = contacts_of({"email": ["ada@example.com", "grace@example.com"], "subscribed": [word, "no"]})

    assert rejects(contacts) == [
        (1, "ada@example.com", f"subscribed value '{word.lower()}' is not a boolean (use true/false/yes/no/1/0)")
    ]
    assert [r["email"] for r in valid(contacts)] == ["grace@example.com"]


def test_empty_subscribed_is_no_value() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "subscribed": [""]})

    assert valid(contacts)[0]["subscribed"] is None


# -- lengths and characters -----------------------------------------------------------------------


def test_498_characters_pass_and_499_are_rejected() -> None:
    contacts = contacts_of(
        {"email": ["ok@example.com", "long@example.com", "bio@example.com"],
         "firstName": [LONG_OK, LONG_BAD, "Ada"],
         "bio": [LONG_OK, None, LONG_BAD + "yy"]}
    )

    assert [r["email"] for r in valid(contacts)] == ["ok@example.com"]
    assert rejects(contacts) == [
        (2, "long@example.com", "firstName is 499 characters long; Loops accepts at most 498"),
        (3, "bio@example.com", "bio is 501 characters long; Loops accepts at most 498"),
    ]


def test_length_is_counted_after_trimming() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "firstName": ["  " + LONG_OK + "  "]})

    assert valid(contacts)[0]["firstName"] == LONG_OK


def test_a_value_holding_nul_is_rejected() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "firstName": ["A\x00da"]})

    assert valid(contacts) == []
    assert rejects(contacts) == [
        (1, "ada@example.com", "firstName contains a NUL character; remove it from the source")
    ]


# -- email ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "key", "reason"),
    [
        (None, None, "missing email"),
        ("", None, "missing email"),
        ("   ", None, "missing email"),
        ("not-an-email", "not-an-email", "invalid email syntax: not-an-email"),
        ("ada@example", "ada@example", "invalid email syntax: ada@example"),
        ("ada@@example.com", "ada@@example.com", "invalid email syntax: ada@@example.com"),
        ("ada lovelace@example.com", "ada lovelace@example.com", "invalid email syntax: ada lovelace@example.com"),
        ("Ada@Example.c", "ada@example.c", "invalid email syntax: ada@example.c"),
    ],
)
def test_missing_and_invalid_email_reasons(email: str | None, key: str | None, reason: str) -> None:
    contacts = contacts_of({"email": [email, "grace@example.com"], "subscribed": ["maybe", "yes"]})

    assert rejects(contacts) == [(1, key, reason)]  # the email reason comes before any other
    assert [r["email"] for r in valid(contacts)] == ["grace@example.com"]


@pytest.mark.parametrize("email", ["ada@example.com", "a.b+tag@sub.example.co.uk", "o'brien@example.ie"])
def test_ordinary_emails_pass(email: str) -> None:
    assert rejects(contacts_of({"email": [email]})) == []


# -- duplicates ------------------------------------------------------------------------------------


def test_last_row_wins_and_earlier_rows_name_the_winner() -> None:
    contacts = contacts_of(
        {
            "email": [
                "ada@example.com", "grace@example.com", " ADA@example.com", "alan@example.com", "Ada@Example.com"
            ],
            "firstName": ["Augusta", "Grace", "Ada L.", "Alan", "Ada"],
        }
    )

    assert [(r[ROW], r["email"], r["firstName"]) for r in valid(contacts)] == [
        (2, "grace@example.com", "Grace"),
        (4, "alan@example.com", "Alan"),
        (5, "ada@example.com", "Ada"),
    ]
    assert rejects(contacts) == [
        (1, "ada@example.com", "duplicate of row 5 (the last row for a contact wins)"),
        (3, "ada@example.com", "duplicate of row 5 (the last row for a contact wins)"),
    ]


def test_rejects_are_sorted_by_row_and_typed() -> None:
    contacts = contacts_of(
        {"email": ["ada@example.com", None, "ada@example.com", "bad"], "subscribed": ["yes", "yes", "no", "yes"]},
        malformed=[(3, "should not happen for CSV, but sorts in")],
    )

    assert contacts.rejects.schema == pl.Schema({ROW: pl.UInt32, KEY: pl.String, REASON: pl.String})
    assert rejects(contacts) == [
        (1, "ada@example.com", "duplicate of row 3 (the last row for a contact wins)"),
        (2, None, "missing email"),
        (3, None, "should not happen for CSV, but sorts in"),
        (4, "bad", "invalid email syntax: bad"),
    ]


# -- mailing lists ---------------------------------------------------------------------------------


def test_mailing_lists_json_column_becomes_one_boolean_field_per_list() -> None:
    contacts = contacts_of(
        {
            "email": [f"u{i}@example.com" for i in range(1, 5)],
            "mailingLists": ['{"news": true, "beta": false}', "", '{"news": "Yes"}', '{"beta": 0, "news": null}'],
        }
    )

    assert contacts.fields == ["email", "mailingLists.news", "mailingLists.beta"]
    assert contacts.types == {"email": "string", "mailingLists.news": "boolean", "mailingLists.beta": "boolean"}
    assert [(r["mailingLists.news"], r["mailingLists.beta"]) for r in valid(contacts)] == [
        ("true", "false"),
        (None, None),
        ("true", None),
        (None, "false"),
    ]
    assert rejects(contacts) == []


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"news"', '{"news": 1.5}', '{"news": {"a": 1}}', "{"])
def test_invalid_mailing_lists_json_is_rejected(value: str) -> None:
    contacts = contacts_of({"email": ["ada@example.com", "grace@example.com"], "mailingLists": [value, '{"n": true}']})

    assert rejects(contacts) == [(1, "ada@example.com", 'mailingLists must be a JSON object such as {"listId": true}')]
    assert [r["email"] for r in valid(contacts)] == ["grace@example.com"]


def test_a_list_member_that_is_not_a_yes_or_no_is_rejected() -> None:
    contacts = contacts_of({"email": ["ada@example.com"], "mailingLists": ['{"news": 2}']})

    assert rejects(contacts) == [
        (1, "ada@example.com", "mailingLists.news value '2' is not a boolean (use true/false/yes/no/1/0)")
    ]


def test_mailing_lists_from_jsonl_objects(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text('{"email": "ada@example.com", "mailingLists": {"cm_news": true, "cm_beta": false}}\n')

    contacts = normalise(read_source(path))

    assert valid(contacts) == [
        {ROW: 1, "email": "ada@example.com", "mailingLists.cm_news": "true", "mailingLists.cm_beta": "false",
         KEY: "ada@example.com"}
    ]


def test_mailing_list_columns_of_their_own() -> None:
    contacts = contacts_of(
        {
            "email": ["ada@example.com", "grace@example.com"],
            "MAILINGLISTS.Cm_News": ["Yes", ""],
            "mailingLists.b": ["0", "1"],
        }
    )

    assert contacts.fields == ["email", "mailingLists.Cm_News", "mailingLists.b"]
    assert contacts.types["mailingLists.Cm_News"] == "boolean"
    assert [(r["mailingLists.Cm_News"], r["mailingLists.b"]) for r in valid(contacts)] == [
        ("true", "false"),
        (None, "true"),
    ]


def test_a_list_in_both_the_json_column_and_its_own_column_is_an_error() -> None:
    message = input_error(
        {"email": ["ada@example.com"], "mailingLists": ['{"news": true}'], "mailingLists.news": ["yes"]}
    )

    assert message == (
        "people.csv:1: list 'mailingLists.news' is given both in the mailingLists column and its own column; "
        "give it in one place"
    )


def test_a_list_named_twice_is_an_error_even_where_the_json_only_gives_null() -> None:
    # A batch of a file may hold the clashing list only as null: the row naming it is still found.
    message = input_error(
        {"email": ["ada@example.com", "bo@example.com"], "mailingLists": ["", '{"news": null}'],
         "mailingLists.news": ["yes", ""]}
    )

    assert message == (
        "people.csv:2: list 'mailingLists.news' is given both in the mailingLists column and its own column; "
        "give it in one place"
    )


# -- key userId ------------------------------------------------------------------------------------


def test_key_user_id_keys_by_user_id_and_rejects_rows_without_one() -> None:
    contacts = contacts_of(
        {
            "email": ["ada@example.com", "grace@example.com", "alan@example.com", "ada.new@example.com"],
            "userId": ["u1", "", "u\x013", "u1"],
        },
        key="userId",
    )

    assert [(r[ROW], r[KEY], r["email"]) for r in valid(contacts)] == [(4, "u1", "ada.new@example.com")]
    assert rejects(contacts) == [
        (1, "u1", "duplicate of row 4 (the last row for a contact wins)"),
        (2, None, "missing userId (required by --key userId)"),
        (3, "u\x013", "userId contains control characters"),
    ]


def test_key_user_id_still_needs_an_email() -> None:
    contacts = contacts_of({"email": [None], "userId": ["u1"]}, key="userId")

    assert rejects(contacts) == [(1, "u1", "missing email")]


def test_key_user_id_without_a_user_id_column_is_an_error() -> None:
    assert input_error({"email": ["ada@example.com"]}, key="userId") == (
        "people.csv:1: --key userId needs a userId column; add one or use --key email"
    )


# -- whole-source errors ---------------------------------------------------------------------------


def test_missing_email_column_is_an_error_listing_the_columns() -> None:
    assert input_error({"name": ["Ada"], "plan": ["pro"]}) == (
        "people.csv:1: no email column (found: name, plan); add an 'email' column or map one with --mapping or --preset"
    )


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["email", "EMAIL"], "columns 'email' and 'EMAIL' both map to 'email'; drop one"),
        (
            ["email", "firstName", " firstname"],
            "columns 'firstName' and ' firstname' both map to 'firstName'; drop one",
        ),
        (
            ["email", "mailingLists.news", "MailingLists.news"],
            "columns 'mailingLists.news' and 'MailingLists.news' both map to 'mailingLists.news'; drop one",
        ),
    ],
)
def test_two_columns_mapping_to_one_field_is_an_error(columns: list[str], message: str) -> None:
    assert input_error({name: ["x"] for name in columns}) == f"people.csv:1: {message}"


@pytest.mark.parametrize("column", ["id", "createdAt", "optInStatus", "notes"])
def test_read_only_columns_are_an_error(column: str) -> None:
    assert input_error({"email": ["ada@example.com"], column: ["x"]}) == (
        f"people.csv:1: column {column!r} is read-only in Loops; drop it or rename it"
    )


# -- malformed records from the reader ---------------------------------------------------------------


def test_malformed_jsonl_lines_become_rejects_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text('{"email": "ada@example.com"}\n{oops\n{"email": "bad"}\n')

    contacts = normalise(read_source(path))

    assert [r["email"] for r in valid(contacts)] == ["ada@example.com"]
    assert rejects(contacts) == [
        (2, None, "malformed JSON at column 2: Expecting property name enclosed in double quotes"),
        (3, "bad", "invalid email syntax: bad"),
    ]


def test_a_jsonl_record_is_never_both_rejected_and_synced(tmp_path: Path) -> None:
    # A record with a reserved key is reported as rejected; it must then not be sent as well,
    # or the summary counts the same row as rejected and created.
    path = tmp_path / "people.jsonl"
    path.write_text('{"email": "ada@example.com", "__key": "x"}\n{"email": "grace@example.com"}\n')

    contacts = normalise(read_source(path))

    rejected_rows = {row for row, _, _ in rejects(contacts)}
    valid_rows = set(contacts.frame[ROW].to_list())
    assert rejected_rows == {1}
    assert rejected_rows & valid_rows == set()


def test_no_valid_rows_gives_an_empty_frame_with_the_fields() -> None:
    contacts = contacts_of({"email": ["bad", None], "firstName": ["A", "B"]})

    assert contacts.frame.height == 0
    assert contacts.fields == ["email", "firstName"]
    assert len(rejects(contacts)) == 2


def test_a_header_problem_names_the_header_line_after_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_text("\n\nname,zip\nAda,02134\n")

    with pytest.raises(InputError) as info:
        normalise(read_source(path))

    assert str(info.value).startswith(f"{path}:3: no email column (found: name, zip);")
