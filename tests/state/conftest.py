"""A real PostgreSQL server for the state tests, started by the suite itself (bench/pgserver.py): one
per pytest(-xdist) worker, stopped at the end of the session. A server that cannot start fails every
test that needs it, saying why; none is skipped."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from bench.pgserver import PostgresServer, ServerProblem, running_server
from bulksync.location import StateLocation, StateURL
from bulksync.state import StateStore, open_state


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for this worker, stopped at the end of the session."""
    try:
        with running_server() as server:
            yield server
    except ServerProblem as problem:
        pytest.fail(str(problem), pytrace=False)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[StateURL]:
    """A state URL of a schema of this test's own (made by the first store that writes), dropped after."""
    schema = "t_" + secrets.token_hex(6)
    yield StateURL(postgres.url(schema))
    with postgres.admin() as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> StateLocation:
    """A state file, or a PostgreSQL state: the interface tests run on both."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    url: StateURL = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def any_store(location: StateLocation) -> Iterator[StateStore]:
    opened = open_state(location)
    yield opened
    opened.close()
