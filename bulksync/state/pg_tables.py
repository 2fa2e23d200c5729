"""The tables of a PostgreSQL state (one schema per audience, ``{s}``), and the migrations between
their versions."""

from __future__ import annotations

from typing import LiteralString

SCHEMA_VERSION = "1"
# A later bulksync migrates an older schema here: version -> the statements that bring it to the next.
MIGRATIONS: dict[str, tuple[LiteralString, ...]] = {}
TABLES: tuple[LiteralString, ...] = (
    "CREATE TABLE {s}.meta (name text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE {s}.contacts (
        key text COLLATE "C" PRIMARY KEY,
        row_hash bigint NOT NULL,
        held_back boolean NOT NULL DEFAULT false,
        fields text NOT NULL,
        synced_at text NOT NULL,
        loops_id text
    )""",
    """CREATE TABLE {s}.tombstones (
        key text COLLATE "C" PRIMARY KEY,
        deleted_at text NOT NULL,
        unsubscribed boolean NOT NULL,
        left_lists text[] NOT NULL
    )""",
    """CREATE TABLE {s}.runner (
        only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
        pid integer, host text, started text, backend integer
    )""",
)
