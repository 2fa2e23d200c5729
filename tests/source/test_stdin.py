"""Standard input as the source (``bulksync sync - --format csv``): read once, gzip told from the
bytes, and a pipe that closes early (its writer died mid-record, or a gzip stream without its end) is
an error naming it, exit 2, with nothing sent or deleted. Through real pipes between processes too."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bulksync.emulator import EmulatorServer, LoopsEmulator
from bulksync.source import jsonl_reader
from tests.helpers import by_email, spawn, writes

PEOPLE = 200


def export(people: int = PEOPLE) -> bytes:
    rows = "".join(f"user{n}@example.com,First{n},{n:05d}\n" for n in range(people))
    return ("email,firstName,zip\n" + rows).encode()


def jsonl(people: int = PEOPLE) -> bytes:
    return "".join(f'{{"email": "user{n}@example.com", "seats": {n}}}\n' for n in range(people)).encode()


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Give the in-process CLI these bytes as its standard input."""

    def feed(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    return feed


def test_a_csv_from_standard_input(cli: Any, emulator: LoopsEmulator, stdin: Any) -> None:
    stdin(export(3))

    result = cli("sync", "-", "--format", "csv", "--state", "state.db")

    assert result.status == 0, result.err
    assert {email: contact["zip"] for email, contact in by_email(emulator).items()} == {
        "user0@example.com": "00000", "user1@example.com": "00001", "user2@example.com": "00002"
    }


def test_gzip_on_standard_input_is_told_from_the_bytes(cli: Any, emulator: LoopsEmulator, stdin: Any) -> None:
    stdin(gzip.compress(export(3)))

    result = cli("sync", "-", "--format", "csv", "--state", "state.db")

    assert result.status == 0, result.err
    assert len(emulator.contacts()) == 3


def test_jsonl_read_once_in_many_batches(
    cli: Any, emulator: LoopsEmulator, stdin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 500)  # ~12 batches, each parsed once, from a pipe
    stdin(jsonl())

    result = cli("sync", "-", "--format", "jsonl", "--state", "state.db")

    assert result.status == 0, result.err
    assert by_email(emulator)["user199@example.com"]["seats"] == 199


def test_check_and_baseline_read_standard_input_once(cli: Any, emulator: LoopsEmulator, stdin: Any) -> None:
    stdin(b"email,firstName\na@x.io,Ada\nb@x.io,Bo\nc@x.io,Cy\n")
    checked = cli("check", "-", "--format", "csv")
    stdin(jsonl(3))
    recorded = cli("state", "baseline", "-", "--format", "jsonl", "--state", "state.db")

    assert checked.status == 0, checked.err
    assert "Source: <stdin> (3 rows)" in checked.out
    assert recorded.out == ("Recorded 3 contacts of <stdin> as already synced in state.db (0 rows rejected); "
                            "nothing was sent.\n")


def test_standard_input_needs_a_format(cli: Any, emulator: LoopsEmulator, stdin: Any) -> None:
    stdin(export(3))

    result = cli("sync", "-", "--state", "state.db")

    assert result.status == 2
    assert result.err == ("bulksync: error: reading standard input (-) needs --format csv, tsv or jsonl: it has no "
                          "name to tell by (gzip is recognised from the bytes)\n")
    assert emulator.request_log() == []


def test_parquet_cannot_come_from_standard_input(cli: Any, stdin: Any) -> None:
    stdin(b"PAR1")

    result = cli("sync", "-", "--format", "parquet", "--state", "state.db")

    assert (result.status, result.err) == (2, "bulksync: error: Parquet cannot be read from standard input (its "
                                              "index is at the end of the file); give its path or URL\n")


def test_a_report_beside_a_standard_input_source_is_no_clash(cli: Any, stdin: Any, workdir: Path) -> None:
    stdin(export(1))

    result = cli("sync", "-", "--format", "csv", "--state", "state.db", "--dry-run")

    assert result.status == 0, result.err
    assert (workdir / "report.csv").exists()


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("csv", export(10)[:-12], "<stdin>: line 11: the last record has 2 of 3 fields and no line end"),
        ("jsonl", jsonl(10)[:-8], "<stdin>: line 10: malformed JSON at column 32: Unterminated string starting at"),
    ],
)
def test_a_delete_missing_run_from_a_cut_stream_deletes_nothing(
    cli: Any, emulator: LoopsEmulator, stdin: Any, fmt: str, data: bytes, message: str
) -> None:
    stdin(export(PEOPLE) if fmt == "csv" else jsonl(PEOPLE))
    assert cli("sync", "-", "--format", fmt, "--state", "state.db").status == 0
    since = len(emulator.request_log())
    stdin(data)

    result = cli("sync", "-", "--format", fmt, "--state", "state.db", "--delete-missing", "--max-delete", "100%")

    assert result.status == 2
    assert result.err == (f"bulksync: error: {message}; the input stopped short (did the command writing it "
                          "fail?); nothing was sent\n")
    assert writes(emulator, since) == []
    assert len(emulator.contacts()) == PEOPLE


# -- real pipes ---------------------------------------------------------------------------------------


def writer(data: bytes, workdir: Path, *, then: str = "sys.exit(3)") -> subprocess.Popen[bytes]:
    """A process that writes ``data`` to its standard output and then dies (``then``), as ``pg_dump``
    or ``aws s3 cp`` would on a lost connection."""
    (workdir / "chunk.bin").write_bytes(data)
    script = ("import os, signal, sys\nsys.stdout.buffer.write(open('chunk.bin', 'rb').read())\n"
              f"sys.stdout.flush()\n{then}")
    return subprocess.Popen([sys.executable, "-c", script], cwd=workdir, stdout=subprocess.PIPE)


@pytest.mark.parametrize(
    ("data", "then", "error"),
    [
        (export()[: len(export()) // 2 + 7], "sys.exit(3)", "the last record has 1 of 3 fields and no line end"),
        (gzip.compress(export())[:-8], "os.kill(os.getpid(), signal.SIGKILL)",
         "cannot be read (Compressed file ended before the end-of-stream marker was reached); nothing was sent"),
    ],
    ids=["mid-record", "gzip-without-its-end"],
)
def test_a_pipe_whose_writer_dies_is_an_error_and_deletes_nothing(
    cli: Any, loops: EmulatorServer, emulator: LoopsEmulator, workdir: Path, data: bytes, then: str, error: str
) -> None:
    (workdir / "full.csv").write_bytes(export())
    assert cli("sync", "full.csv", "--state", "state.db").status == 0
    since = len(emulator.request_log())
    source = writer(data, workdir, then=then)

    run = spawn(loops, workdir, "sync", "-", "--format", "csv", "--state", "state.db", "--delete-missing",
                "--max-delete", "100%", "--report", "report.csv", stdin=source.stdout)
    assert source.stdout is not None
    source.stdout.close()  # the pipe is the child's now
    _, err = run.communicate(timeout=120)
    source.wait(timeout=60)

    assert run.returncode == 2, err
    assert err.startswith("bulksync: error: <stdin>: ") and error in err
    assert writes(emulator, since) == []
    assert len(emulator.contacts()) == PEOPLE
