"""A signal while the source is read (half a minute for 10M rows) or an export is written ends the
command at the next batch or file, before anything is sent: in-process, with the CLI's real handlers."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bulksync import export
from bulksync.cli import main
from bulksync.emulator import LoopsEmulator
from bulksync.plan import normalise, scan
from bulksync.report import upload
from bulksync.source import csv_reader, read
from tests.helpers import API_KEY, IN_PROCESS_URL, WRITES, state_fields


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_the_source_is_read_stops_before_anything_is_sent(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, status: int
) -> None:
    monkeypatch.setenv("LOOPS_API_KEY", API_KEY)
    monkeypatch.setenv("LOOPS_BASE_URL", IN_PROCESS_URL)
    team = LoopsEmulator(api_key=API_KEY, rate_limit=0, seed=1)
    (workdir / "people.csv").write_text("email\nold@x.io\n")
    assert main(["sync", "people.csv", "--state", "state.db"], out=io.StringIO(), err=io.StringIO(),
                transport=team.transport()) == 0
    before = state_fields(workdir)
    (workdir / "people.csv").write_text("email\n" + "".join(f"u{n}@x.io\n" for n in range(200)))
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 200)  # about twenty rows a batch,
    monkeypatch.setattr(read, "BLOCK_BYTES", 50)  # read from a file in blocks smaller than that
    checked: list[int] = []

    def signalled_on_the_third_batch(*args: Any, **kwargs: Any) -> Any:
        checked.append(1)
        if len(checked) == 3:
            os.kill(os.getpid(), signum)  # the handler runs in this, the main, thread before kill returns
        return normalise.validate(*args, **kwargs)

    monkeypatch.setattr(scan, "validate", signalled_on_the_third_batch)
    since = len(team.request_log())
    out, err = io.StringIO(), io.StringIO()

    result = main(["sync", "people.csv", "--state", "state.db", "--delete-missing", "--report", "report.csv"],
                  out=out, err=err, transport=team.transport())

    assert result == status
    assert err.getvalue().endswith("bulksync: error: stopped while the source was read: nothing was sent\n")
    assert len(checked) == 3  # the next batch was never checked
    assert [r for r in team.request_log()[since:] if f"{r['method']} {r['path']}" in WRITES] == []
    assert state_fields(workdir) == before
    assert not (workdir / "report.csv").exists()


def test_a_signal_mid_export_leaves_a_folder_without_a_manifest_and_says_so(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "people.csv").write_text("email\n" + "".join(f"u{n}@x.io\n" for n in range(10)))
    written: list[Path] = []

    def signalled_after_the_first_file(path: Path, frame: Any) -> None:
        upload.write_upload_file(path, frame)
        written.append(path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(export, "write_upload_file", signalled_after_the_first_file)
    err = io.StringIO()

    status = main(["export", "people.csv", "--to", "out", "--rows-per-file", "3"], out=io.StringIO(), err=err)

    assert status == 143
    assert err.getvalue().endswith("bulksync: error: stopped: out holds no manifest: it is not a finished "
                                   "export; run it again\n")
    assert [path.name for path in written] == [path.name for path in (workdir / "out").glob("*.csv")]
    assert len(written) == 1 and not (workdir / "out" / upload.MANIFEST).exists()
