"""Tests of the Loops API emulator's endpoints, through httpx, in-process on a fake clock.

Fixtures (`emu`, `client`, `sleeps`) are in conftest.py; the rate limit is in test_limiter.py, faults in
test_faults.py, outages in test_outage.py, the loopback server in test_server.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bulksync.emulator import LoopsEmulator
from tests.helpers import api_create, api_find, api_update

AUTH = {"Authorization": "Bearer test-key"}








def the_contact(client: httpx.Client, email: str) -> dict[str, Any]:
    (contact,) = api_find(client, email=email)
    return contact


# -- auth, routing, basics -------------------------------------------------------------------------


def test_api_key_endpoint_and_auth(client: httpx.Client) -> None:
    assert client.get("/v1/api-key").json() == {"success": True, "teamName": "Emulated Team"}
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
        response = client.get("/v1/api-key", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid API key"}
        assert "x-ratelimit-limit" not in response.headers


def test_path_works_with_or_without_api_prefix(emu: LoopsEmulator) -> None:
    for target in ("/v1/api-key", "/api/v1/api-key"):
        assert emu.handle("GET", target, AUTH, b"").status == 200


def test_unknown_path_404_wrong_method_405_bad_json_400(client: httpx.Client) -> None:
    assert client.get("/v1/contacts/nope").status_code == 404
    assert client.get("/v2/contacts/create").status_code == 404
    wrong_method = client.get("/v1/contacts/create")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert client.post("/v1/contacts/update", json={"email": "a@b.co"}).status_code == 405
    assert client.delete("/v1/contacts/delete").status_code == 405
    malformed = client.post(
        "/v1/contacts/create", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["success"] is False
    assert client.post("/v1/contacts/create", json=["a@b.co"]).status_code == 400


# -- create, find, delete --------------------------------------------------------------------------


def test_create_then_find_returns_the_loops_contact_shape(client: httpx.Client) -> None:
    response = api_create(client, email="Ann@Example.com", firstName="Ann", userId="u1")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert isinstance(body["id"], str) and len(body["id"]) == 25
    assert api_find(client, email="  ann@EXAMPLE.com ") == [
        {
            "id": body["id"],
            "email": "Ann@Example.com",
            "firstName": "Ann",
            "lastName": None,
            "source": "API",
            "subscribed": True,
            "userGroup": None,
            "userId": "u1",
            "mailingLists": {},
            "optInStatus": None,
        }
    ]
    assert api_find(client, userId="u1")[0]["id"] == body["id"]
    assert api_find(client, email="nobody@example.com") == []
    assert api_find(client, userId="u2") == []


def test_find_needs_exactly_one_identifier(client: httpx.Client) -> None:
    assert client.get("/v1/contacts/find").status_code == 400
    assert client.get("/v1/contacts/find", params={"email": "a@b.co", "userId": "u"}).status_code == 400


def test_create_conflicts_on_email_or_user_id(client: httpx.Client) -> None:
    assert api_create(client, email="ann@example.com", userId="u1").status_code == 200
    assert api_create(client, email="ANN@example.com ").status_code == 409
    assert api_create(client, email="other@example.com", userId="u1").status_code == 409
    assert api_create(client, email="other@example.com", userId="u2").status_code == 200


@pytest.mark.parametrize("email", ["", "plain", "a@b", "a b@c.com", "@c.com", None, 42])
def test_create_rejects_missing_or_invalid_email(client: httpx.Client, email: Any) -> None:
    assert api_create(client, email=email).status_code == 400


def test_create_rejects_bad_standard_values(client: httpx.Client) -> None:
    assert api_create(client, email="a@b.co", firstName=5).status_code == 400
    assert api_create(client, email="a@b.co", userId="").status_code == 400
    assert api_create(client, email="a@b.co", id="x").status_code == 400
    assert api_create(client, email="a@b.co", teamId="x").status_code == 400
    assert client.post("/v1/contacts/create", json={"firstName": "No email"}).status_code == 400


def test_delete(client: httpx.Client) -> None:
    api_create(client, email="ann@example.com", userId="u1")
    api_create(client, email="bob@example.com", userId="u2")
    response = client.post("/v1/contacts/delete", json={"email": "ANN@example.com"})
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Contact deleted."}
    assert client.post("/v1/contacts/delete", json={"email": "ann@example.com"}).status_code == 404
    assert client.post("/v1/contacts/delete", json={"userId": "u2"}).status_code == 200
    assert client.post("/v1/contacts/delete", json={"email": "x@y.co", "userId": "u3"}).status_code == 400
    assert client.post("/v1/contacts/delete", json={}).status_code == 400
    assert api_find(client, userId="u2") == []


# -- update: the upsert ----------------------------------------------------------------------------


def test_update_creates_when_nothing_matches(client: httpx.Client) -> None:
    response = api_update(client, email="new@example.com", userId="u9", lastName="New")
    assert response.status_code == 200
    contact = the_contact(client, "new@example.com")
    assert contact["id"] == response.json()["id"]
    assert (contact["subscribed"], contact["source"], contact["userId"]) == (True, "API", "u9")


def test_update_matched_by_email_gets_the_user_id(client: httpx.Client) -> None:
    created = api_create(client, email="Ann@example.com", firstName="Ann").json()["id"]
    assert api_update(client, email="ann@example.com", userId="u1", lastName="Lee").json()["id"] == created
    contact = the_contact(client, "ann@example.com")
    assert (contact["email"], contact["userId"], contact["firstName"], contact["lastName"]) == (
        "Ann@example.com",
        "u1",
        "Ann",
        "Lee",
    )


def test_update_matched_by_user_id_changes_the_email(client: httpx.Client) -> None:
    created = api_create(client, email="old@example.com", userId="u1").json()["id"]
    assert api_update(client, email="new@example.com", userId="u1").json()["id"] == created
    assert api_find(client, email="old@example.com") == []
    assert the_contact(client, "new@example.com")["id"] == created
    assert api_update(client, userId="u1", firstName="Only by id").status_code == 200
    assert the_contact(client, "new@example.com")["firstName"] == "Only by id"


def test_update_matching_two_contacts_is_400(client: httpx.Client) -> None:
    api_create(client, email="ann@example.com", userId="u1")
    api_create(client, email="bob@example.com", userId="u2")
    response = api_update(client, email="ann@example.com", userId="u2")
    assert response.status_code == 400
    assert "Multiple contacts found" in response.json()["message"]


def test_update_needs_an_identifier_and_an_email_to_create(client: httpx.Client) -> None:
    assert api_update(client, firstName="Nobody").status_code == 400
    assert api_update(client, userId="unknown", firstName="Nobody").status_code == 400
    assert api_update(client, email=None, userId=None).status_code == 400


# -- values ----------------------------------------------------------------------------------------


def test_string_length_limit_counts_the_json_quotes(client: httpx.Client) -> None:
    assert api_create(client, email="a@example.com", firstName="x" * 498).status_code == 200
    too_long = api_create(client, email="b@example.com", firstName="x" * 499)
    assert too_long.status_code == 400
    assert too_long.json()["message"] == "Some body key or value is longer than allowable"
    assert api_update(client, email="a@example.com", lastName="y" * 499).status_code == 400
    assert the_contact(client, "a@example.com")["lastName"] is None


def test_null_clears_and_omitted_keys_are_left_alone(client: httpx.Client) -> None:
    api_create(client, email="ann@example.com", firstName="Ann", lastName="Lee", plan="pro")
    api_update(client, email="ann@example.com", firstName=None, plan=None)
    contact = the_contact(client, "ann@example.com")
    assert contact["firstName"] is None
    assert contact["lastName"] == "Lee"
    assert "plan" not in contact
    assert api_update(client, email="ann@example.com", email_typo=None).status_code == 400  # not camelCase


def test_subscribed_defaults_true_and_true_resubscribes(client: httpx.Client) -> None:
    api_create(client, email="ann@example.com")
    assert the_contact(client, "ann@example.com")["subscribed"] is True
    api_update(client, email="ann@example.com", subscribed=False)
    api_update(client, email="ann@example.com", firstName="Still out")
    assert the_contact(client, "ann@example.com")["subscribed"] is False
    api_update(client, email="ann@example.com", subscribed=True)
    assert the_contact(client, "ann@example.com")["subscribed"] is True
    assert api_update(client, email="ann@example.com", subscribed="yes").status_code == 400
    assert api_update(client, email="ann@example.com", subscribed=None).status_code == 400


def test_mailing_lists_add_remove_and_validation(client: httpx.Client) -> None:
    api_create(client, email="ann@example.com", mailingLists={"news": True, "beta": False})
    assert the_contact(client, "ann@example.com")["mailingLists"] == {"news": True}
    api_update(client, email="ann@example.com", mailingLists={"news": False, "beta": True})
    assert the_contact(client, "ann@example.com")["mailingLists"] == {"beta": True}
    assert api_update(client, email="ann@example.com", mailingLists={"missing": True}).status_code == 400
    assert api_update(client, email="ann@example.com", mailingLists={"news": "yes"}).status_code == 400
    assert api_update(client, email="ann@example.com", mailingLists=["news"]).status_code == 400


def test_unsubscribed_contact_cannot_be_added_to_a_list(client: httpx.Client) -> None:
    assert (
        api_create(client, email="out@example.com", subscribed=False, mailingLists={"news": True}).status_code
        == 400
    )
    api_create(client, email="ann@example.com", mailingLists={"beta": True})
    rejected = api_update(client, email="ann@example.com", subscribed=False, mailingLists={"news": True})
    assert rejected.status_code == 400
    assert the_contact(client, "ann@example.com")["subscribed"] is True  # a rejected request changes nothing
    api_update(client, email="ann@example.com", subscribed=False)
    assert api_update(client, email="ann@example.com", mailingLists={"news": True}).status_code == 400
    assert api_update(client, email="ann@example.com", mailingLists={"beta": False}).status_code == 200
    assert (
        api_update(client, email="ann@example.com", subscribed=True, mailingLists={"news": True}).status_code
        == 200
    )


def test_get_lists(client: httpx.Client) -> None:
    assert client.get("/v1/lists").json() == [
        {"id": "news", "name": "Newsletter", "description": None, "isPublic": True},
        {"id": "beta", "name": "Beta testers", "description": None, "isPublic": False},
    ]


# -- properties ------------------------------------------------------------------------------------


def test_properties_list_and_create(client: httpx.Client) -> None:
    standard = client.get("/v1/contacts/properties").json()
    assert {"key": "firstName", "label": "First Name", "type": "string"} in standard
    assert {p["key"] for p in standard} >= {"email", "subscribed", "userGroup", "userId"}
    assert client.get("/v1/contacts/properties", params={"list": "custom"}).json() == []
    created = client.post("/v1/contacts/properties", json={"name": "planTier", "type": "number"})
    assert created.json() == {"success": True}
    assert client.get("/v1/contacts/properties", params={"list": "custom"}).json() == [
        {"key": "planTier", "label": "Plan Tier", "type": "number"}
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "planTier", "type": "number"},  # duplicate
        {"name": "email", "type": "string"},  # a standard one
        {"name": "teamId", "type": "string"},  # reserved
        {"name": "PlanTier", "type": "string"},
        {"name": "plan_tier", "type": "string"},
        {"name": "score", "type": "integer"},
        {"name": "score"},
    ],
)
def test_property_creation_errors(client: httpx.Client, emu: LoopsEmulator, body: dict[str, Any]) -> None:
    emu.add_property("planTier", "number")
    assert client.post("/v1/contacts/properties", json=body).status_code == 400


def test_unknown_properties_are_auto_created_as_strings_unless_strict(
    client: httpx.Client, emu: LoopsEmulator
) -> None:
    assert api_create(client, email="ann@example.com", favouriteColour="red").status_code == 200
    assert the_contact(client, "ann@example.com")["favouriteColour"] == "red"
    assert {"key": "favouriteColour", "label": "Favourite Colour", "type": "string"} in client.get(
        "/v1/contacts/properties", params={"list": "custom"}
    ).json()
    emu.configure(strict_properties=True)
    strict = api_update(client, email="ann@example.com", shoeSize="42")
    assert strict.status_code == 400
    assert "shoeSize" in strict.json()["message"]
    assert api_update(client, email="ann@example.com", favouriteColour="blue").status_code == 200


@pytest.mark.parametrize(
    ("type_", "value", "stored"),
    [
        ("number", 42, 42),
        ("number", "4.5", 4.5),
        ("number", "-3", -3),
        ("boolean", True, True),
        ("boolean", "false", False),
        ("date", 1_700_000_000_000, 1_700_000_000_000),
        ("date", "1700000000000", "1700000000000"),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "2024-02-29T10:30", "2024-02-29T10:30"),
        ("date", "2024-02-29 10:30:15.123+02:00", "2024-02-29 10:30:15.123+02:00"),
        ("date", "2024-02-29T10:30:15Z", "2024-02-29T10:30:15Z"),
        ("string", "text", "text"),
        ("string", 7, 7),
    ],
)
def test_typed_properties_accept(
    client: httpx.Client, emu: LoopsEmulator, type_: str, value: Any, stored: Any
) -> None:
    emu.add_property("prop", type_)
    assert api_create(client, email="ann@example.com", prop=value).status_code == 200
    assert the_contact(client, "ann@example.com")["prop"] == stored


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("number", "abc"),
        ("number", True),
        ("number", "nan"),
        ("boolean", "yes"),
        ("boolean", 1),
        ("date", "29/02/2024"),
        ("date", "2024-02-30"),
        ("date", "2024-02-29T10"),
        ("date", True),
        ("string", {"nested": "object"}),
        ("string", ["a"]),
    ],
)
def test_typed_property_mismatch_is_400_naming_it(
    client: httpx.Client, emu: LoopsEmulator, type_: str, value: Any
) -> None:
    emu.add_property("prop", type_)
    response = api_create(client, email="ann@example.com", prop=value)
    assert response.status_code == 400
    assert "prop" in response.json()["message"]


# -- inspection ------------------------------------------------------------------------------------


def test_stats_and_request_log(client: httpx.Client, emu: LoopsEmulator) -> None:
    api_create(client, email="ann@example.com")
    api_create(client, email="ann@example.com")
    api_find(client, email="ann@example.com")
    client.get("/v1/api-key", headers={"Authorization": "Bearer wrong"})
    assert emu.stats() == {
        "requests": 4,
        "by_endpoint": {"POST /v1/contacts/create": 2, "GET /v1/contacts/find": 1, "GET /v1/api-key": 1},
        "by_status": {"200": 2, "409": 1, "401": 1},
        "writes": 1,
        "rate_limited": 0,
        "dropped": 0,
        "outage": 0,
        "background": {"requests": 0, "rate_limited": 0},
    }
    log = emu.request_log()
    assert log[0] == {
        "method": "POST",
        "path": "/v1/contacts/create",
        "query": {},
        "json": {"email": "ann@example.com"},
        "status": 200,
        "dropped": False,
        "outage": False,
        "at": 1000.0,  # the fake clock's reading when the request arrived
    }
    assert log[2]["query"] == {"email": "ann@example.com"}
    assert log[2]["json"] is None
    assert [entry["status"] for entry in log] == [200, 409, 200, 401]


def test_seed_contact_and_reset(client: httpx.Client, emu: LoopsEmulator) -> None:
    emu.add_property("score", "number")
    emu.seed(
        [
            {"id": "c-seeded", "email": "Ann@example.com", "score": "3", "mailingLists": {"news": True}},
            {"email": "out@example.com", "subscribed": False, "mailingLists": {"news": True}, "team": "x"},
        ]
    )
    ann = emu.contact("ann@example.com")
    assert ann is not None
    assert (ann["id"], ann["score"], ann["mailingLists"]) == ("c-seeded", 3, {"news": True})
    assert [c["email"] for c in emu.contacts()] == ["Ann@example.com", "out@example.com"]
    assert emu.stats()["requests"] == 0
    assert the_contact(client, "out@example.com")["team"] == "x"
    for duplicate in ({"email": "ann@example.com"}, {"id": "c-seeded", "email": "new@example.com"}):
        with pytest.raises(ValueError):
            emu.seed([duplicate])
    with pytest.raises(ValueError):
        emu.add_property("score", "number")
    emu.reset()
    assert emu.contacts() == []
    assert emu.stats()["requests"] == 0
    assert emu.request_log() == []
    custom = client.get("/v1/contacts/properties", params={"list": "custom"}).json()
    assert [p["key"] for p in custom] == ["score", "team"]
    assert len(client.get("/v1/lists").json()) == 2
