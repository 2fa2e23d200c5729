"""A Loops team's data: contacts, custom properties and mailing lists, and the contacts endpoints' logic.

Not thread-safe: LoopsEmulator holds a lock around every call.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bulksync.emulator.rules import (
    READ_ONLY_FIELDS,
    RESERVED_NAMES,
    STANDARD_CHECKS,
    STANDARD_NAMES,
    STANDARD_PROPERTIES,
    check_lengths,
    check_mailing_lists,
    check_property_name,
    check_property_type,
    coerce,
    identifier,
    normalize_email,
    property_label,
)
from bulksync.emulator.wire import ApiError

_CONTACT_FIELDS = ("email", "firstName", "lastName", "source", "subscribed", "userGroup", "userId")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class _Contact:
    id: str
    data: dict[str, Any]
    lists: dict[str, bool] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """The contact as `find` returns it."""
        standard = {key: self.data.get(key) for key in _CONTACT_FIELDS}
        custom = {key: value for key, value in self.data.items() if key not in standard}
        return {"id": self.id, **standard, "mailingLists": dict(self.lists), "optInStatus": None, **custom}


@dataclass
class _Write:
    """A validated contact body: fields to set (None clears) and list memberships to change."""

    fields: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, bool] = field(default_factory=dict)
    new_properties: list[str] = field(default_factory=list)


class Team:
    """The contacts, custom properties and mailing lists of one Loops team."""

    def __init__(self, seed: int | None = None) -> None:
        # A stream of its own, so creating contacts does not shift the emulator's fault draws.
        self._id_rng = random.Random(seed)
        self._properties: dict[str, str] = {}
        self._lists: dict[str, dict[str, Any]] = {}
        self.clear()

    def clear(self) -> None:
        """Forget every contact; keep properties and lists."""
        self._contacts: dict[str, _Contact] = {}
        self._by_email: dict[str, str] = {}
        self._by_user_id: dict[str, str] = {}

    # -- endpoints: each takes the parsed request and returns the JSON payload, or raises ApiError ------

    def create(self, body: Mapping[str, Any], strict: bool) -> dict[str, Any]:
        """POST /v1/contacts/create."""
        if body.get("email") is None:
            raise ApiError(400, "email is required.")
        write = self._parse_write(body, strict)
        self._check_list_additions(None, write)
        self._check_unique(write)
        return {"success": True, "id": self._insert(write).id}

    def update(self, body: Mapping[str, Any], strict: bool) -> dict[str, Any]:
        """PUT /v1/contacts/update: change the contact matched on email or userId, or create one."""
        write = self._parse_write(body, strict)
        email, user_id = write.fields.get("email"), write.fields.get("userId")
        if email is None and user_id is None:
            raise ApiError(400, "email or userId is required.")
        by_email = self._by_email.get(normalize_email(email)) if email else None
        by_user_id = self._by_user_id.get(user_id) if user_id else None
        if by_email and by_user_id and by_email != by_user_id:
            raise ApiError(400, "Multiple contacts found.")
        target_id = by_email or by_user_id
        if target_id is None:
            if email is None:
                raise ApiError(400, "No contact found with this userId; an email is needed to create one.")
            self._check_list_additions(None, write)
            return {"success": True, "id": self._insert(write).id}
        contact = self._contacts[target_id]
        if by_email:
            write.fields.pop("email", None)  # matched on it: the stored spelling stays
        self._check_list_additions(contact, write)
        self._apply(contact, write)
        return {"success": True, "id": contact.id}

    def find(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        """GET /v1/contacts/find."""
        found = self._lookup(*identifier(query))
        return [self._contacts[found].view()] if found else []

    def delete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/contacts/delete."""
        found = self._lookup(*identifier(body))
        if found is None:
            raise ApiError(404, "Contact not found.")
        self._unindex(self._contacts.pop(found))
        return {"success": True, "message": "Contact deleted."}

    def list_properties(self, custom_only: bool) -> list[dict[str, str]]:
        """GET /v1/contacts/properties: every property, or (?list=custom) the custom ones."""
        custom = list(self._properties.items())
        chosen = custom if custom_only else [*STANDARD_PROPERTIES, *custom]
        return [{"key": name, "label": property_label(name), "type": type_} for name, type_ in chosen]

    def create_property(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/contacts/properties."""
        self._register_property(body.get("name"), body.get("type"))
        return {"success": True}

    def list_lists(self) -> list[dict[str, Any]]:
        """GET /v1/lists."""
        return [dict(mailing_list) for mailing_list in self._lists.values()]

    # -- setup and inspection, around the API ------------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        """Every contact, as `find` would return it."""
        return [contact.view() for contact in self._contacts.values()]

    def view_of(self, email: str) -> dict[str, Any] | None:
        """The contact with this email (trimmed, case-insensitive), or None."""
        found = self._lookup(email, None)
        return self._contacts[found].view() if found else None

    def seed(self, contacts: Iterable[Mapping[str, Any]]) -> None:
        """Add contacts as they are given, `id` included, unknown properties as strings. Raises ValueError."""
        for given in contacts:
            data = {key: value for key, value in given.items() if key not in READ_ONLY_FIELDS}
            try:
                if "email" not in data:
                    raise ApiError(400, "email is required.")
                if given.get("id") in self._contacts:
                    raise ApiError(409, "A contact with this id already exists.")
                write = self._parse_write(data, strict=False)
                self._check_unique(write)
            except ApiError as error:
                raise ValueError(f"cannot seed {dict(given)!r}: {error.message}") from None
            self._insert(write, contact_id=given.get("id"))

    def add_property(self, name: str, type_: str) -> None:
        """Create a custom property, as POST /v1/contacts/properties would. Raises ValueError."""
        try:
            self._register_property(name, type_)
        except ApiError as error:
            raise ValueError(error.message) from None

    def add_list(self, list_id: str, name: str, is_public: bool) -> None:
        """Create (or replace) a mailing list."""
        self._lists[list_id] = {"id": list_id, "name": name, "description": None, "isPublic": is_public}

    # -- contact bodies and storage ------------------------------------------------------------------------

    def _register_property(self, name: Any, type_: Any) -> None:
        check_property_type(type_)
        check_property_name(name)
        if name in self._properties or name in STANDARD_NAMES:
            raise ApiError(400, f"A property named {name!r} already exists.")
        self._properties[name] = type_

    def _parse_write(self, body: Mapping[str, Any], strict: bool) -> _Write:
        check_lengths(dict(body))
        write = _Write()
        for key, value in body.items():
            if key == "mailingLists":
                write.lists = self._parse_lists(value)
            elif key in READ_ONLY_FIELDS or key in RESERVED_NAMES:
                raise ApiError(400, f"{key} cannot be set.")
            elif key in STANDARD_CHECKS:
                write.fields[key] = STANDARD_CHECKS[key](value)
            else:
                write.fields[key] = self._parse_custom(key, value, strict, write)
        return write

    def _parse_custom(self, key: str, value: Any, strict: bool, write: _Write) -> Any:
        type_ = self._properties.get(key)
        if type_ is None:
            if strict:
                raise ApiError(400, f"Unknown contact property {key!r}: create it first.")
            check_property_name(key)
            if value is not None:
                write.new_properties.append(key)
            type_ = "string"
        return None if value is None else coerce(key, type_, value)

    def _parse_lists(self, value: Any) -> dict[str, bool]:
        lists = check_mailing_lists(value)
        unknown = [list_id for list_id in lists if list_id not in self._lists]
        if unknown:
            raise ApiError(400, f"Unknown mailing list {unknown[0]!r}.")
        return lists

    def _check_list_additions(self, contact: _Contact | None, write: _Write) -> None:
        subscribed = write.fields.get("subscribed", contact.data["subscribed"] if contact else True)
        current = contact.lists if contact else {}
        if not subscribed and any(on and list_id not in current for list_id, on in write.lists.items()):
            raise ApiError(400, "An unsubscribed contact cannot be added to a mailing list.")

    def _check_unique(self, write: _Write) -> None:
        if normalize_email(write.fields["email"]) in self._by_email:
            raise ApiError(409, "A contact with this email already exists.")
        user_id = write.fields.get("userId")
        if user_id is not None and user_id in self._by_user_id:
            raise ApiError(409, "A contact with this userId already exists.")

    def _insert(self, write: _Write, contact_id: str | None = None) -> _Contact:
        contact = _Contact(contact_id or self._new_id(), {key: None for key in _CONTACT_FIELDS})
        contact.data.update(source="API", subscribed=True)
        self._contacts[contact.id] = contact
        self._apply(contact, write)
        return contact

    def _apply(self, contact: _Contact, write: _Write) -> None:
        self._unindex(contact)
        for key, value in write.fields.items():
            if value is None and key not in _CONTACT_FIELDS:
                contact.data.pop(key, None)
            else:
                contact.data[key] = value
        for list_id, on in write.lists.items():
            if on:
                contact.lists[list_id] = True
            else:
                contact.lists.pop(list_id, None)
        for name in write.new_properties:
            self._properties.setdefault(name, "string")
        self._index(contact)

    def _lookup(self, email: str | None, user_id: str | None) -> str | None:
        if email is not None:
            return self._by_email.get(normalize_email(email))
        return self._by_user_id.get(user_id or "")

    def _index(self, contact: _Contact) -> None:
        self._by_email[normalize_email(contact.data["email"])] = contact.id
        if contact.data["userId"] is not None:
            self._by_user_id[contact.data["userId"]] = contact.id

    def _unindex(self, contact: _Contact) -> None:
        if contact.data["email"] is not None:
            self._by_email.pop(normalize_email(contact.data["email"]), None)
        self._by_user_id.pop(contact.data["userId"] or "", None)

    def _new_id(self) -> str:
        # Loops ids are 25-character cuids such as "cll6ag0ad00000ml46f0h7wxy".
        return "c" + "".join(self._id_rng.choices(_ID_ALPHABET, k=24))
