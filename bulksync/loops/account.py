"""What the Loops account holds that a sync needs: its contact properties (with types) and lists.

Fetched with two GETs and remembered in the state file, so a nightly run with nothing new costs
no request beyond the key check; it is fetched again when the source names a property or list the
remembered copy does not know.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bulksync.fields import MAILING_LISTS, STANDARD_FIELDS, is_list_field
from bulksync.source.batch import Source
from bulksync.source.mapping import apply_mapping, identity_mapping, lists_by_name, property_types
from bulksync.source.mapping_spec import MappingSpec
from bulksync.state.store import StateStore, utc_now

META_KEY = "account"


class AccountReader(Protocol):
    def properties(self) -> list[dict[str, Any]]: ...

    def lists(self) -> list[dict[str, Any]]: ...


class AskedOnce:
    """``loops``' properties and lists, each asked once: a scan started over (a JSONL source whose
    later batch changed its header) asks Loops no more than the first one did."""

    def __init__(self, loops: AccountReader) -> None:
        self.properties = functools.cache(loops.properties)
        self.lists = functools.cache(loops.lists)


@dataclass(frozen=True)
class Account:
    properties: dict[str, str] = field(default_factory=dict)  # name -> string|number|boolean|date
    lists: dict[str, str] = field(default_factory=dict)  # list name -> id

    def knows(self, fields: Iterable[str], list_refs: Iterable[str]) -> bool:
        list_known = set(self.lists) | set(self.lists.values())
        return all(name in self.properties for name in custom_fields(fields)) and all(
            ref in list_known for ref in list_refs
        )

    def missing(self, fields: Iterable[str]) -> list[str]:
        return [name for name in custom_fields(fields) if name not in self.properties]


def custom_fields(fields: Iterable[str]) -> list[str]:
    """The fields that are custom properties (not standard fields, not lists)."""
    return [
        name for name in fields if name not in STANDARD_FIELDS and name != MAILING_LISTS and not is_list_field(name)
    ]


def account_for(
    state: StateStore, loops: AccountReader | None, fields: list[str], list_refs: list[str]
) -> Account | None:
    """The account as far as a run needs it: the state's remembered copy, fetched again (and
    remembered) only when ``fields`` or ``list_refs`` name something that copy does not know."""
    account = remembered(state)
    needed = bool(custom_fields(fields) or list_refs)  # otherwise nothing to type, nothing to check
    if loops is not None and needed and (account is None or not account.knows(fields, list_refs)):
        account = fetch_account(loops)
        remember(state, account)
    return account


def mapped_source(source: Source, spec: MappingSpec | None, account: Account | None) -> Source:
    """``source`` mapped by ``spec`` (without one, named like Loops fields), its values typed as the
    account's properties say and the mapping's list names resolved, when the account is known."""
    if spec is not None:
        lists = account.lists if account and spec.list_refs() else None
        return apply_mapping(source, spec, lists, account_types=account.properties if account else None)
    if account is not None:
        return identity_mapping(source, account_types=account.properties)
    return source


def fetch_account(client: AccountReader) -> Account:
    return Account(property_types(client.properties()), lists_by_name(client.lists()))


def remembered(state: StateStore) -> Account | None:
    text = state.meta(META_KEY)
    if not text:
        return None
    try:
        data = json.loads(text)
        return Account(dict(data["properties"]), dict(data["lists"]))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache is only a cache: fetch again


def remember(state: StateStore, account: Account) -> None:
    if not state.readonly:
        data = {"properties": account.properties, "lists": account.lists, "fetched_at": utc_now()}
        state.set_meta({META_KEY: json.dumps(data, sort_keys=True)})
