"""push_all's waits: a stop is seen even while every request hangs, and hung workers never hold the exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from bulksync.loops.push import NOT_SENT, UNANSWERED, Outcome, push_all
from bulksync.plan.actions import Action
from tests.helpers import ROOT, wait_until


def create(email: str) -> Action:
    return Action("create", email, 1, 99, {}, {"email": email}, ("email",))


class Hanging:
    """An ``execute`` whose requests never come back until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, action: Action) -> Outcome:
        with self._lock:
            self.started.append(action.key)
        self.release.wait()
        return Outcome(action, True, dict(action.send), 200, 1)


def run_in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_stop_ends_the_wait_although_every_request_hangs() -> None:
    execute, stop = Hanging(), threading.Event()
    handed: list[Outcome] = []
    actions = [create(f"u{i}@example.com") for i in range(2)]
    try:
        pushing = run_in_thread(lambda: push_all(actions, execute, 4, handed.append, should_stop=stop.is_set,
                                                 grace_s=0.2))
        wait_until(lambda: len(execute.started) == 2, "both requests in flight")
        stop.set()
        pushing.join(timeout=20)  # the bound; the grace is 0.2 s

        assert not pushing.is_alive()
        assert [(o.action.key, o.ok, o.error) for o in handed] == [
            ("u0@example.com", False, UNANSWERED), ("u1@example.com", False, UNANSWERED)
        ]
    finally:
        execute.release.set()


def test_a_stop_while_the_queue_is_full_starts_the_grace() -> None:
    execute, stop = Hanging(), threading.Event()
    handed: list[Outcome] = []
    actions = [create(f"u{i}@example.com") for i in range(10)]
    try:
        pushing = run_in_thread(lambda: push_all(actions, execute, 1, handed.append, should_stop=stop.is_set,
                                                 grace_s=0.2))
        wait_until(lambda: execute.started == ["u0@example.com"], "the first request in flight")
        stop.set()
        pushing.join(timeout=20)

        assert not pushing.is_alive()
        # One in flight (its fate unknown); one queued behind it, never started: surely not sent.
        assert [(o.action.key, o.attempts, o.error) for o in handed] == [
            ("u0@example.com", 1, UNANSWERED), ("u1@example.com", 0, NOT_SENT)
        ]
        assert execute.started == ["u0@example.com"]
    finally:
        execute.release.set()


def test_without_a_stop_every_outcome_is_waited_for() -> None:
    execute = Hanging()
    handed: list[Outcome] = []
    pushing = run_in_thread(lambda: push_all([create("a@example.com")], execute, 2, handed.append))
    wait_until(lambda: execute.started == ["a@example.com"], "the request in flight")
    execute.release.set()
    pushing.join(timeout=20)

    assert not pushing.is_alive()
    assert [o.ok for o in handed] == [True]


def test_a_worker_stuck_after_the_grace_does_not_keep_the_process_alive() -> None:
    # ThreadPoolExecutor's atexit hook joins its workers: one stuck forever held the exit forever.
    script = textwrap.dedent("""
        import threading
        from bulksync.loops.push import push_all
        from bulksync.plan.actions import Action

        started, stop = threading.Event(), threading.Event()

        def execute(action):
            started.set()
            threading.Event().wait()  # a request that never comes back

        threading.Thread(target=lambda: (started.wait(), stop.set()), daemon=True).start()
        action = Action("create", "a@example.com", 1, 99, {}, {"email": "a@example.com"}, ("email",))
        push_all([action], execute, 2, lambda outcome: print(outcome.error), should_stop=stop.is_set, grace_s=0.2)
        print("returned")
    """)
    run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        out, err = run.communicate(timeout=30)  # the bound
    finally:
        run.kill()
        run.communicate()

    assert run.returncode == 0, err
    assert out == f"{UNANSWERED}\nreturned\n"
