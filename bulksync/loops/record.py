"""Writing what Loops confirmed into the state: after confirmation, never before, in small transactions."""

from __future__ import annotations

from bulksync.config import Clock
from bulksync.loops.push import Outcome
from bulksync.plan.actions import applied, held_back
from bulksync.state.store import Record, StateStore, Tombstone

STATE_COMMIT_EVERY = 200
STATE_COMMIT_SECONDS = 1.0
SNAPSHOT_TRACK_LIMIT = 200_000


class StateRecorder:
    """Collects confirmed outcomes and commits them every ``STATE_COMMIT_EVERY`` or every second,
    so a crash loses at most the last few confirmations (the next run settles them)."""

    def __init__(self, state: StateStore, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._saves: list[Record] = []
        self._forgets: list[str] = []
        self._tombstones: list[Tombstone] = []
        self._last_flush = clock()
        # Every key written and its new hash (None: forgotten), to refresh the hash snapshot at the end;
        # after a run writing very many contacts the snapshot is read back from the database instead.
        self.changes: dict[str, int | None] | None = {}

    def add(self, outcome: Outcome) -> None:
        """Take one outcome; raises (and so stops the run) once the state can take no more writes,
        having taken it first: a confirmed write the state then lacks is counted in ``unsaved``."""
        self._take(outcome)
        self._state.check_alive()
        pending = len(self._saves) + len(self._forgets)
        if pending >= STATE_COMMIT_EVERY or self._clock() - self._last_flush >= STATE_COMMIT_SECONDS:
            self.flush()

    def _take(self, outcome: Outcome) -> None:
        action = outcome.action
        if not outcome.ok or outcome.sent is None:
            return
        if action.kind == "delete":
            self._forgets.append(action.key)
            if outcome.tombstone is not None:
                self._tombstones.append(outcome.tombstone)
            self._track(action.key, None)
        else:
            assert action.row_hash is not None
            after = applied(action.before, outcome.sent)
            held = held_back(action, outcome.sent)
            self._saves.append((action.key, action.row_hash, after, held, outcome.contact_id))
            self._track(action.key, action.row_hash)

    def _track(self, key: str, row_hash: int | None) -> None:
        if self.changes is not None:
            self.changes[key] = row_hash
            if len(self.changes) > SNAPSHOT_TRACK_LIMIT:
                self.changes = None

    @property
    def unsaved(self) -> int:
        """Confirmed writes not in the state yet: after a commit failed, what the next run sends again."""
        return len(self._saves) + len(self._forgets)

    def flush(self) -> None:
        if self._saves:
            self._state.save(self._saves)
            self._saves = []
        if self._tombstones:  # before the contacts go: a crash between leaves both, and a re-run deletes again
            self._state.save_tombstones(self._tombstones)
            self._tombstones = []
        if self._forgets:
            self._state.forget(self._forgets)
            self._forgets = []
        self._last_flush = self._clock()
