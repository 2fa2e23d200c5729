"""diff: splitting the source against the state, and field-level plans for each contact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import pytest

from bulksync.columns import HASH, KEY, ROW, STATE_HASH
from bulksync.plan import diff, index
from bulksync.plan.actions import (
    Action,
    Change,
    PlanOptions,
    applied,
    held_back,
    identity_fields,
    plan_create,
    plan_delete,
    plan_update,
    plan_updates,
)
from bulksync.plan.diff import classify
from bulksync.plan.index import hashes_after

EMAIL = PlanOptions()
BY_USER_ID = PlanOptions(key="userId")


def contacts(*rows: tuple[int, str, int]) -> pl.DataFrame:
    """Source rows as (row, key, hash), with an email field."""
    return pl.DataFrame(
        {
            ROW: [r[0] for r in rows], "email": [r[1] for r in rows],
            KEY: [r[1] for r in rows], HASH: [r[2] for r in rows],
        },
        schema={ROW: pl.UInt32, "email": pl.String, KEY: pl.String, HASH: pl.Int64},
    )


def state(hashes: dict[str, int] | None = None) -> pl.DataFrame:
    hashes = hashes or {}
    return pl.DataFrame(
        {KEY: list(hashes), STATE_HASH: list(hashes.values())},
        schema={KEY: pl.String, STATE_HASH: pl.Int64},
    )


def row(key: str = "ada@example.com", row_number: int = 7, row_hash: int = 42, **fields: str | None) -> dict[str, Any]:
    return {ROW: row_number, KEY: key, HASH: row_hash, "email": key, **fields}


def row_with(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """``row()`` plus ``fields`` named at run time or not as identifiers (``mailingLists.news``)."""
    return {**row(), **fields}


# -- classify ------------------------------------------------------------------------------------------


def test_classify_splits_new_changed_unchanged_and_missing() -> None:
    source = contacts((1, "c@x.io", 30), (2, "a@x.io", 10), (3, "new@x.io", 99), (4, "b@x.io", 21), (5, "n2@x.io", 5))
    known = state({"a@x.io": 10, "b@x.io": 20, "c@x.io": 31, "gone@x.io": 40, "d@x.io": 50})

    result = classify(source, known, delete_missing=True)

    assert result.new[KEY].to_list() == ["new@x.io", "n2@x.io"]
    assert result.changed[KEY].to_list() == ["c@x.io", "b@x.io"]  # in source order
    assert result.unchanged == 1
    assert result.missing == ["d@x.io", "gone@x.io"]  # sorted
    assert result.new.columns == source.columns
    assert result.changed.columns == source.columns


def test_classify_without_delete_missing_reports_no_missing() -> None:
    result = classify(contacts((1, "a@x.io", 10)), state({"a@x.io": 10, "b@x.io": 20}), delete_missing=False)

    assert result.missing == []
    assert (result.new.height, result.changed.height, result.unchanged) == (0, 0, 1)


def test_classify_against_an_empty_state_makes_everything_new() -> None:
    result = classify(contacts((2, "b@x.io", 2), (1, "a@x.io", 1)), state(), delete_missing=True)

    assert result.new[ROW].to_list() == [1, 2]
    assert (result.changed.height, result.unchanged, result.missing) == (0, 0, [])


def test_recheck_keys_count_as_changed_even_with_the_same_hash() -> None:
    source = contacts((1, "a@x.io", 10), (2, "b@x.io", 20), (3, "new@x.io", 30))
    known = state({"a@x.io": 10, "b@x.io": 20})

    result = classify(source, known, delete_missing=False, recheck=["b@x.io", "new@x.io", "nobody@x.io"])

    assert result.changed[KEY].to_list() == ["b@x.io"]
    assert result.new[KEY].to_list() == ["new@x.io"]
    assert result.unchanged == 1


def test_a_source_with_no_valid_rows_never_deletes() -> None:
    result = classify(contacts(), state({"a@x.io": 1, "b@x.io": 2}), delete_missing=True)

    assert result.missing == []
    assert (result.new.height, result.changed.height, result.unchanged) == (0, 0, 0)


# -- plan_create -----------------------------------------------------------------------------------


def test_plan_create_sends_every_non_empty_field() -> None:
    action = plan_create(row(firstName="Ada", lastName=None, subscribed="false"), EMAIL)

    assert action == Action(
        "create", "ada@example.com", 7, 42, {}, {"email": "ada@example.com", "firstName": "Ada", "subscribed": "false"},
        ("email",),
    )
    assert action.changes == [
        Change("email", None, "ada@example.com"),
        Change("firstName", None, "Ada"),
        Change("subscribed", None, "false"),
    ]


def test_a_create_through_the_upsert_shows_subscribed_true_withheld_as_it_is_sent() -> None:
    upsert = plan_create(row(firstName="Ada", subscribed="true"), EMAIL)
    create = plan_create(row(firstName="Ada", subscribed="true"), PlanOptions(create_via="create"))

    assert (upsert.send, upsert.withheld) == ({"email": "ada@example.com", "firstName": "Ada"}, True)
    assert (create.send["subscribed"], create.withheld) == ("true", False)


# -- plan_update -----------------------------------------------------------------------------------


def test_plan_update_sends_identity_and_only_changed_fields() -> None:
    before = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Byron", "plan": "free", "zip": "02134"}

    action = plan_update(row(firstName="Ada", lastName="Lovelace", plan="pro", zip="02134"), before, EMAIL)

    assert action.kind == "update"
    assert (action.key, action.row, action.row_hash, action.before) == ("ada@example.com", 7, 42, before)
    assert action.send == {"email": "ada@example.com", "lastName": "Lovelace", "plan": "pro"}
    assert list(action.send) == ["email", "lastName", "plan"]
    assert action.changes == [Change("lastName", "Byron", "Lovelace"), Change("plan", "free", "pro")]


def test_an_emptied_cell_clears_the_field_with_none() -> None:
    before = {"email": "ada@example.com", "lastName": "Lovelace", "plan": "pro"}

    action = plan_update(row(lastName=None, plan="pro"), before, EMAIL)

    assert action.send == {"email": "ada@example.com", "lastName": None}
    assert action.changes == [Change("lastName", "Lovelace", None)]


def test_a_column_gone_from_the_source_clears_the_field() -> None:
    action = plan_update(row(), {"email": "ada@example.com", "plan": "pro"}, EMAIL)

    assert action.send == {"email": "ada@example.com", "plan": None}


def test_keep_empty_leaves_loops_value_alone() -> None:
    before = {"email": "ada@example.com", "lastName": "Lovelace", "plan": "free"}

    action = plan_update(row(lastName=None, plan="pro"), before, PlanOptions(keep_empty=True))

    assert action.send == {"email": "ada@example.com", "plan": "pro"}


def test_keep_empty_with_only_empties_is_a_refresh() -> None:
    before = {"email": "ada@example.com", "lastName": "L"}

    action = plan_update(row(lastName=None), before, PlanOptions(keep_empty=True))

    assert action.kind == "refresh"
    assert action.send == {"email": "ada@example.com"}
    assert action.changes == []


def test_list_fields_are_never_cleared_but_are_added_and_removed() -> None:
    before = {"email": "ada@example.com", "mailingLists.news": "true", "mailingLists.beta": "true"}

    action = plan_update(
        row_with({"mailingLists.news": None, "mailingLists.beta": "false", "mailingLists.vip": "true"}), before, EMAIL
    )

    assert action.send == {"email": "ada@example.com", "mailingLists.beta": "false", "mailingLists.vip": "true"}


def test_a_list_column_gone_from_the_source_is_left_alone() -> None:
    action = plan_update(row(), {"email": "ada@example.com", "mailingLists.news": "true"}, EMAIL)

    assert action.kind == "refresh"
    assert action.send == {"email": "ada@example.com"}


def test_subscribed_true_is_not_sent_without_resubscribe_and_alone_is_a_refresh() -> None:
    before = {"email": "ada@example.com", "subscribed": "false"}

    action = plan_update(row(subscribed="true"), before, EMAIL)

    assert action.kind == "refresh"
    assert action.send == {"email": "ada@example.com"}
    assert action.changes == []


def test_withheld_marks_only_an_update_that_left_out_subscribed_true() -> None:
    unsubscribed = {"email": "ada@example.com", "subscribed": "false"}

    assert plan_update(row(subscribed="true"), unsubscribed, EMAIL).withheld is True
    assert plan_update(row(subscribed="true"), unsubscribed, PlanOptions(resubscribe=True)).withheld is False
    assert plan_update(row(subscribed="false", plan="x"), unsubscribed, EMAIL).withheld is False
    subscribed = {"email": "ada@example.com", "subscribed": "true"}
    assert plan_update(row(subscribed="true"), subscribed, EMAIL).withheld is False
    assert plan_create(row(subscribed="true"), PlanOptions(create_via="create")).withheld is False


def test_held_back_after_the_fact() -> None:
    created = plan_create(row(subscribed="true"), PlanOptions(create_via="create"))
    refreshed = plan_update(row(subscribed="true"), {"email": "ada@example.com", "subscribed": "false"}, EMAIL)
    plain = plan_create(row(plan="pro"), EMAIL)

    assert held_back(created, created.send) is False
    assert held_back(created, {"email": "ada@example.com"}) is True  # the 409 fallback dropped it
    assert held_back(refreshed, {}) is True
    assert held_back(plain, plain.send) is False


def test_subscribed_true_is_dropped_but_other_changes_still_go() -> None:
    before = {"email": "ada@example.com", "subscribed": "false", "plan": "free"}

    action = plan_update(row(subscribed="true", plan="pro"), before, EMAIL)

    assert action.kind == "update"
    assert action.send == {"email": "ada@example.com", "plan": "pro"}


def test_subscribed_true_for_a_field_never_set_is_not_sent_either() -> None:
    action = plan_update(row(subscribed="true"), {"email": "ada@example.com"}, EMAIL)

    assert (action.kind, action.send) == ("refresh", {"email": "ada@example.com"})


def test_resubscribe_sends_subscribed_true() -> None:
    action = plan_update(row(subscribed="true"), {"email": "ada@example.com", "subscribed": "false"},
                         PlanOptions(resubscribe=True))

    assert action.kind == "update"
    assert action.send == {"email": "ada@example.com", "subscribed": "true"}


@pytest.mark.parametrize("options", [EMAIL, PlanOptions(resubscribe=True), PlanOptions(keep_empty=True)])
def test_subscribed_false_is_always_sent(options: PlanOptions) -> None:
    action = plan_update(row(subscribed="false"), {"email": "ada@example.com", "subscribed": "true"}, options)

    assert action.kind == "update"
    assert action.send == {"email": "ada@example.com", "subscribed": "false"}


@pytest.mark.parametrize("field", ["subscribed", "userId"])
def test_an_emptied_subscribed_or_user_id_is_left_alone(field: str) -> None:
    # Loops has no "no value" for these (a null subscribed is a 400): the contact keeps what it has.
    action = plan_update(row_with({field: None}), {"email": "ada@example.com", field: "false"}, EMAIL)

    assert (action.kind, action.send) == ("refresh", {"email": "ada@example.com"})


def test_key_user_id_sends_user_id_and_email() -> None:
    before = {"email": "ada@example.com", "userId": "u1", "plan": "free"}

    action = plan_update(row(key="u1", userId="u1", plan="pro") | {"email": "ada@example.com"}, before, BY_USER_ID)

    assert action.send == {"userId": "u1", "email": "ada@example.com", "plan": "pro"}
    assert action.identity == ("userId", "email")


def test_key_user_id_changes_the_email() -> None:
    before = {"email": "ada@old.example", "userId": "u1"}

    action = plan_update({ROW: 3, KEY: "u1", HASH: 1, "email": "ada@new.example", "userId": "u1"}, before, BY_USER_ID)

    assert action.kind == "update"
    assert action.send == {"userId": "u1", "email": "ada@new.example"}
    assert action.changes == [Change("email", "ada@old.example", "ada@new.example")]


def test_key_user_id_with_nothing_to_send_is_a_refresh() -> None:
    before = {"email": "ada@example.com", "userId": "u1", "subscribed": "false"}

    action = plan_update({ROW: 3, KEY: "u1", HASH: 1, "email": "ada@example.com", "userId": "u1", "subscribed": "true"},
                         before, BY_USER_ID)

    assert (action.kind, action.send) == ("refresh", {"userId": "u1", "email": "ada@example.com"})


def test_identity_fields() -> None:
    assert identity_fields("email") == ("email",)
    assert identity_fields("userId") == ("userId", "email")


def test_plan_updates_looks_up_each_rows_previous_fields() -> None:
    rows = [row("a@x.io", 1, 10, plan="pro"), row("b@x.io", 2, 20, plan="pro")]
    previous = {"a@x.io": {"email": "a@x.io", "plan": "free"}, "b@x.io": {"email": "b@x.io", "plan": "pro"}}

    actions = list(plan_updates(rows, previous, EMAIL))

    assert [(a.key, a.kind, a.send) for a in actions] == [
        ("a@x.io", "update", {"email": "a@x.io", "plan": "pro"}),
        ("b@x.io", "refresh", {"email": "b@x.io"}),
    ]


# -- plan_delete and applied -----------------------------------------------------------------------


def test_plan_delete_sends_only_the_key_field() -> None:
    by_email = plan_delete("ada@example.com", {"email": "ada@example.com", "plan": "pro"}, EMAIL)
    by_user_id = plan_delete("u1", {"email": "ada@example.com", "userId": "u1"}, BY_USER_ID)

    assert by_email == Action("delete", "ada@example.com", None, None, {"email": "ada@example.com", "plan": "pro"},
                              {"email": "ada@example.com"}, ("email",))
    assert (by_user_id.send, by_user_id.identity) == ({"userId": "u1"}, ("userId",))


def test_applied_puts_sent_values_on_top_and_drops_cleared_ones() -> None:
    before = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Byron", "plan": "free"}

    after = applied(before, {"email": "ada@example.com", "lastName": None, "plan": "pro", "zip": "02134"})

    assert after == {"email": "ada@example.com", "firstName": "Ada", "plan": "pro", "zip": "02134"}
    assert before == {"email": "ada@example.com", "firstName": "Ada", "lastName": "Byron", "plan": "free"}


def test_applied_with_nothing_sent_is_a_copy() -> None:
    before = {"email": "ada@example.com"}

    after = applied(before, {})

    assert after == before and after is not before


def test_applying_a_plan_gives_the_source_fields() -> None:
    # After an update is confirmed, what state holds equals the source row (without empty cells).
    before = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Byron", "plan": "free"}
    source = row(firstName="Ada", lastName=None, plan="pro", zip="02134")

    action = plan_update(source, before, EMAIL)

    assert applied(before, action.send) == {
        "email": "ada@example.com", "firstName": "Ada", "plan": "pro", "zip": "02134"
    }


def test_classify_is_exact_even_if_every_key_hash_collided(monkeypatch: pytest.MonkeyPatch) -> None:
    def collide(column: str = KEY) -> pl.Expr:
        return pl.lit(7, dtype=pl.UInt64)

    for module in (diff, index):  # the index and the marking hash keys alike
        monkeypatch.setattr(module, "key_hash", collide)
    source = contacts((1, "a@x.io", 1), (2, "b@x.io", 5), (3, "c@x.io", 3))
    known = state({"a@x.io": 1, "b@x.io": 2, "d@x.io": 4})

    result = classify(source, known, delete_missing=True)

    assert result.new[KEY].to_list() == ["c@x.io"]
    assert result.changed[KEY].to_list() == ["b@x.io"]
    assert (result.unchanged, result.missing) == (1, ["d@x.io"])


def test_a_source_key_sharing_a_state_keys_hash_is_still_new(monkeypatch: pytest.MonkeyPatch) -> None:
    # Key hashes are the key's length here: unique in the state, but "cc@x.io" shares one with "bb@x.io".
    def collide(column: str = KEY) -> pl.Expr:
        return pl.col(column).str.len_bytes().cast(pl.UInt64)

    for module in (diff, index):  # the index and the marking hash keys alike
        monkeypatch.setattr(module, "key_hash", collide)
    source = contacts((1, "a@x.io", 1), (2, "cc@x.io", 2), (3, "bb@x.io", 9))
    known = state({"a@x.io": 1, "bb@x.io": 2, "dddd@x.io": 4})

    result = classify(source, known, delete_missing=True, keep=["eeeee@x.io"])

    assert result.new[KEY].to_list() == ["cc@x.io"]
    assert result.changed[KEY].to_list() == ["bb@x.io"]
    assert (result.unchanged, result.missing) == (1, ["dddd@x.io"])


def test_hashes_after_applies_saves_and_forgets() -> None:
    known = pl.DataFrame({"__key": ["a", "b", "c"], STATE_HASH: [1, 2, 3]})

    after = hashes_after(known, {"b": 20, "c": None, "d": 4})

    assert sorted(after.rows()) == [("a", 1), ("b", 20), ("d", 4)]


def test_the_filled_fields_of_a_wide_plan_list_each_frames_columns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # ``name in frame.columns`` for each field built the list of names once per field: quadratic in
    # the number of columns (8,000 columns: seconds in this step alone).
    names = [f"c{n}" for n in range(2000)]
    wide = pl.DataFrame({name: ["x" if name != "c7" else None] for name in names})
    classified = diff.Classified(new=wide, changed=wide.clear(), missing=[], unchanged=0)
    listed = 0
    columns = pl.DataFrame.columns

    def counted(frame: pl.DataFrame) -> list[str]:
        nonlocal listed
        listed += 1
        return columns.fget(frame)  # type: ignore[attr-defined, no-any-return]

    monkeypatch.setattr(pl.DataFrame, "columns", property(counted))

    assert classified.filled(names) == [name for name in names if name != "c7"]
    assert listed <= 2
