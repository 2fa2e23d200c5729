"""The custom properties a run fills must exist in Loops: created when the user asks, else the run stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bulksync.errors import ConfigError
from bulksync.loops.account import Account, custom_fields, remember
from bulksync.source.mapping_spec import target_problem
from bulksync.state.store import StateStore

if TYPE_CHECKING:  # a dry run plans without loading httpx
    from bulksync.loops.connection import Connection


def ensure_properties(
    filled: list[str],
    types: dict[str, str],
    account: Account | None,
    loops: Connection | None,
    state: StateStore | None,
    *,
    create: bool,
    where: str,
    before_create: Callable[[], None] = lambda: None,
) -> list[str]:
    """Check (or, with ``create``, make) the custom properties among the ``filled`` fields, of
    ``types`` (a string unless said otherwise).

    Returns notes for the summary; a dry run (a read-only state) creates nothing and only notes, and
    so does a run without a state (an export) unless ``create``. ``before_create`` is called once
    every check has passed, just before the first property is created.
    """
    needed = {name: types.get(name, "string") for name in filled}
    if account is None:
        if not custom_fields(needed):
            return []
        return ["the account's properties are unknown (no API key): missing properties are not checked"]
    missing = {name: needed[name] for name in account.missing(needed)}
    if not missing:
        return []
    listed = ", ".join(f"{name} ({type_})" for name, type_ in missing.items())
    invalid = [problem for name in missing if (problem := target_problem(name))]
    if invalid:
        raise ConfigError(f"{where}: {'; '.join(invalid)}; rename the column or map it with --mapping")
    if state.readonly if state is not None else not create:
        verb = "will be created (--create-properties)" if create else "must exist first: pass --create-properties"
        return [f"Loops has no property {listed} yet; it {verb}"]
    if not create:
        raise ConfigError(
            f"Loops has no custom property {listed} yet; nothing was sent. Run 'bulksync check' to review "
            "the columns, or pass --create-properties to create them"
        )
    assert loops is not None
    before_create()
    for name, type_ in missing.items():
        loops.create_property(name, type_)
    if state is not None:
        remember(state, Account({**account.properties, **missing}, account.lists))
    return [f"created property {listed}"]
