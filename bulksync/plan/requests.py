"""Which request each planned action makes: shared by the push (which sends it) and the plan file
(which shows it), so a plan records exactly what ``apply`` will send."""

from __future__ import annotations

from collections.abc import Mapping

from bulksync.config import CreateVia
from bulksync.plan.actions import Action

Sent = dict[str, str | None]

ENDPOINTS = {"create": "POST /v1/contacts/create", "update": "PUT /v1/contacts/update",
             "delete": "POST /v1/contacts/delete"}


def first_request(action: Action, create_via: CreateVia) -> tuple[str, Sent]:
    """Which endpoint an action starts with, and the fields it sends there."""
    if action.kind == "delete":
        return "delete", action.send
    if action.kind == "create" and create_via == "create":
        return "create", action.send
    if action.kind == "create":  # Loops' upsert: a contact that exists keeps its subscription
        return "update", without_resubscribe(action.send)
    return "update", action.send


def without_resubscribe(send: Mapping[str, str | None]) -> Sent:
    """An update to a contact that may exist must never carry ``subscribed: true``."""
    return {name: value for name, value in send.items() if not (name == "subscribed" and value == "true")}
