"""A state that can take no more mid-run (a full disk): the run stops, the state holds only what it
recorded, the summary says how many confirmed writes it lacks, and the next run converges.

SQLite's own limit on the database's size (``PRAGMA max_page_count``) fails the commit with the real
``database or disk is full`` error, as a full file system does.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from bulksync.config import Runtime
from bulksync.emulator import LoopsEmulator
from bulksync.errors import StateError
from bulksync.state.sqlite import SQLiteStateStore
from bulksync.sync import run_sync
from tests.helpers import report_rows, run_config, state_fields

CONTACTS = 600


@pytest.fixture
def small_disk(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every state opened for writing may grow by a few pages only, until the event is set."""
    connect = SQLiteStateStore._connect
    freed = threading.Event()

    def limited(path: Path, readonly: bool, is_new: bool, *, immutable: bool) -> Any:
        store = connect(path, readonly, is_new, immutable=immutable)
        if not readonly and not freed.is_set():
            (pages,) = store._db.execute("PRAGMA page_count").fetchone()
            store._db.execute(f"PRAGMA max_page_count = {pages + 12}")
        return store

    monkeypatch.setattr(SQLiteStateStore, "_connect", staticmethod(limited))
    return freed


def test_a_full_disk_stops_the_run_and_the_summary_counts_what_the_state_lacks(
    workdir: Path, team: LoopsEmulator, runtime: Runtime, small_disk: threading.Event
) -> None:
    (workdir / "many.csv").write_text("email,firstName\n" + "".join(
        f"user{n}@example.com,First {n} {'x' * 60}\n" for n in range(CONTACTS)))

    with pytest.raises(StateError, match=r"could not write the state \(database or disk is full\)"):
        run_sync(run_config("many.csv"), runtime)

    summary = json.loads((workdir / "summary.json").read_text())
    recorded = len(state_fields(workdir))
    in_loops = len(team.contacts())
    assert 0 < recorded < in_loops < CONTACTS  # it stopped sending soon after the state took no more
    assert summary["created"] == in_loops  # what Loops confirmed ...
    assert summary["not_recorded"] == in_loops - recorded  # ... and how much of it the state lacks
    created = {row["key"] for row in report_rows(workdir) if (row["action"], row["status"]) == ("create", "ok")}
    assert created == {contact["email"] for contact in team.contacts()}  # those in flight are reported too

    small_disk.set()  # space freed
    again = run_sync(run_config("many.csv"), runtime)

    assert again.summary.created == CONTACTS - recorded  # the unrecorded ones are sent again, harmlessly
    assert (again.summary.failed, again.summary.not_recorded) == (0, 0)
    assert len(state_fields(workdir)) == len(team.contacts()) == CONTACTS
