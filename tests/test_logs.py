"""logs.py: each line to stderr and the log file in the same order, never the key."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

from bulksync import logs


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError("stderr is gone")


def test_threads_logging_at_once_give_both_streams_the_same_order(tmp_path: Path) -> None:
    err = io.StringIO()
    logs.configure(err, level=logging.INFO, secrets=[], log_file=tmp_path / "run.log")

    def chatter(name: str) -> None:
        for i in range(200):
            logs.log.warning("%s %d", name, i)

    threads = [threading.Thread(target=chatter, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs.configure(io.StringIO(), level=logging.WARNING, secrets=[])  # closes the log file

    lines = err.getvalue().splitlines()
    assert len(lines) == 800 and (tmp_path / "run.log").read_text().splitlines() == lines


def test_a_broken_stderr_does_not_cost_the_log_file_its_lines(tmp_path: Path) -> None:
    logging.raiseExceptions, previous = False, logging.raiseExceptions  # handleError stays quiet
    try:
        logs.configure(Broken(), level=logging.INFO, secrets=["s3cret-key"], log_file=tmp_path / "run.log")
        logs.log.warning("retrying with s3cret-key")
        logs.configure(io.StringIO(), level=logging.WARNING, secrets=[])
    finally:
        logging.raiseExceptions = previous

    [line] = (tmp_path / "run.log").read_text().splitlines()
    assert line.endswith(" WARNING retrying with [redacted]")


def test_configuring_again_closes_the_log_file_but_never_stderr(tmp_path: Path) -> None:
    err = io.StringIO()
    logs.configure(err, level=logging.INFO, secrets=[], log_file=tmp_path / "run.log")
    [handler] = logs.log.handlers

    logs.configure(err, level=logging.INFO, secrets=[])

    assert not err.closed and handler not in logs.log.handlers
    logs.log.warning("still here")
    assert err.getvalue().endswith("still here\n")


def test_psycopgs_own_lines_are_stamped_redacted_and_only_warnings(tmp_path: Path) -> None:
    err = io.StringIO()
    logs.configure(err, level=logging.DEBUG, secrets=["Pg-Secret-1"], log_file=tmp_path / "run.log", fmt="json")
    driver = logging.getLogger("psycopg")
    try:
        driver.warning("error ignored in rollback on %s: %s", "<connection>", "password Pg-Secret-1 refused")
        driver.info("connection attempt failed: host %s", "db.internal")  # its chatter, even with --debug
    finally:
        logs.configure(io.StringIO(), level=logging.WARNING, secrets=[])  # closes the log file

    [line] = err.getvalue().splitlines()
    assert json.loads(line) == {"time": json.loads(line)["time"], "level": "WARNING",
                                "message": "error ignored in rollback on <connection>: password [redacted] refused"}
    assert (tmp_path / "run.log").read_text().splitlines() == [line]
