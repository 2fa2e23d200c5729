"""The drift comparison: values as Loops returns them are equal to the state's text; real changes are not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bulksync.plan.drift import DIFFERENT, MISSING, UNSUBSCRIBED, Drift, DriftCounts, compare, instant, same_value


def loops(**fields: Any) -> dict[str, Any]:
    """A contact as ``find`` returns it."""
    return {"id": "c1", "email": "ada@example.com", "subscribed": True, "mailingLists": {}, "optInStatus": None,
            **fields}


@pytest.mark.parametrize(("text", "value", "type_"), [
    ("7", 7, "number"), ("7", 7.0, "number"), ("1.5", 1.5, "number"), ("2134", "2134", "number"),
    ("true", True, "boolean"), ("false", False, "boolean"), ("true", "true", "boolean"),
    ("2024-01-31", "2024-01-31", "date"), ("2024-01-31", "2024-01-31T00:00:00.000Z", "date"),
    ("2024-01-31", 1706659200000, "date"), ("2024-01-31T10:00:00Z", "2024-01-31T11:00:00+01:00", "date"),
    ("2024-01-31T10:00:00Z", "1706695200000", "date"), ("2024-01-31T10:00:00Z", "2024-01-31 10:00:00", "date"),
    ("Ada", "Ada", "string"), ("02134", "02134", "string"), ("Zoë", "Zoë", None),
    ("7", 7, None), ("true", True, None), ("2024-01-31", 1706659200000, None),
])
def test_equal_values_are_not_drift(text: str, value: Any, type_: str | None) -> None:
    assert same_value(text, value, type_)


@pytest.mark.parametrize(("text", "value", "type_"), [
    ("7", 8, "number"), ("7", None, "number"), ("true", False, "boolean"), ("2024-01-31", "2024-02-01", "date"),
    ("2024-01-31", 1706659200001, "date"), ("02134", "2134", "string"), ("02134", 2134, "string"),
    ("Ada", "ada", "string"), ("Ada", "Ada ", None), ("x", {"a": 1}, None), ("2024-01-31", "soon", "date"),
])
def test_different_values_are_drift(text: str, value: Any, type_: str | None) -> None:
    assert not same_value(text, value, type_)


def test_instant_reads_what_loops_may_answer() -> None:
    midnight = datetime(2024, 1, 31, tzinfo=UTC)
    assert instant("2024-01-31") == instant("2024-01-31T00:00:00Z") == instant(1706659200000) == midnight
    assert instant(True) is None and instant("not a date") is None and instant(10 ** 30) is None


def test_a_contact_gone_from_loops() -> None:
    assert compare("ada@example.com", {"email": "ada@example.com"}, None, {}) == [Drift("ada@example.com", MISSING)]


def test_matching_fields_lists_and_an_email_in_another_case() -> None:
    state = {"email": "ada@example.com", "firstName": "Ada", "seats": "3", "mailingLists.news": "true",
             "mailingLists.old": "false", "subscribed": "true"}
    contact = loops(email="Ada@Example.com", firstName="Ada", seats=3, mailingLists={"news": True},
                    notInState="Loops' own")
    assert compare("ada@example.com", state, contact, {"seats": "number"}) == []


def test_each_kind_of_difference() -> None:
    state = {"email": "ada@example.com", "firstName": "Ada", "plan": "pro", "mailingLists.news": "true",
             "mailingLists.old": "false"}
    contact = loops(firstName="Augusta", subscribed=False, mailingLists={"old": True})

    assert compare("ada@example.com", state, contact, {}) == [
        Drift("ada@example.com", UNSUBSCRIBED, "subscribed", None, False),
        Drift("ada@example.com", DIFFERENT, "firstName", "Ada", "Augusta"),
        Drift("ada@example.com", DIFFERENT, "plan", "pro", None),
        Drift("ada@example.com", DIFFERENT, "mailingLists.news", "true", None),
        Drift("ada@example.com", DIFFERENT, "mailingLists.old", "false", True),
    ]


def test_a_contact_resubscribed_in_loops_differs() -> None:
    assert compare("a", {"subscribed": "false"}, loops(subscribed=True), {}) == [
        Drift("a", DIFFERENT, "subscribed", "false", True)]
    assert compare("a", {"subscribed": "false"}, loops(subscribed=False), {}) == []


def test_counts_and_examples() -> None:
    counts = DriftCounts()
    counts.add([])
    for index in range(7):
        counts.add([Drift(f"k{index}", DIFFERENT, "firstName", "a", "b"), Drift(f"k{index}", UNSUBSCRIBED,
                                                                                 "subscribed", "true", False)])
    counts.add([Drift("gone", MISSING)])

    assert (counts.checked, counts.matching, counts.drifted()) == (9, 1, True)
    assert counts.counts == {MISSING: 1, UNSUBSCRIBED: 7, DIFFERENT: 7}
    assert [drifts[0].key for drifts in counts.examples[DIFFERENT]] == ["k0", "k1", "k2", "k3", "k4"]
    assert not DriftCounts().drifted()


def test_an_unsubscribe_alone_is_drift_only_when_strict() -> None:
    counts = DriftCounts()
    counts.add([])
    counts.add([Drift("gone", UNSUBSCRIBED, "subscribed", None, False)])

    assert (counts.unsubscribed_only, counts.counts[UNSUBSCRIBED]) == (1, 1)  # counted, and listed
    assert (counts.drifted(), counts.drifted(strict=True)) == (False, True)
    counts.add([Drift("both", UNSUBSCRIBED, "subscribed", None, False), Drift("both", DIFFERENT, "plan", "a", "b")])
    assert (counts.drifted_contacts(), counts.drifted_contacts(strict=True)) == (1, 2)
