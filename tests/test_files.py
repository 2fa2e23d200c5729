"""files.py: private when bulksync creates a file, untouched when it exists; outputs never on inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulksync.errors import ConfigError
from bulksync.files import create_private, open_private, refuse_clashes


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_file_bulksync_creates_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with open_private(tmp_path / "a" / "new.txt") as fh:
            fh.write("x")
        create_private(tmp_path / "state.db")
    finally:
        os.umask(old)

    assert mode(tmp_path / "a" / "new.txt") == 0o600 and mode(tmp_path / "state.db") == 0o600


def test_an_existing_file_keeps_its_mode_and_is_truncated_or_appended(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    path.write_text("first\n")
    path.chmod(0o640)

    with open_private(path, append=True) as fh:
        fh.write("second\n")
    assert path.read_text() == "first\nsecond\n" and mode(path) == 0o640

    with open_private(path) as fh:
        fh.write("only\n")
    assert path.read_text() == "only\n" and mode(path) == 0o640


def test_a_dangling_symlink_creates_its_target_privately(tmp_path: Path) -> None:
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")

    with open_private(tmp_path / "link.csv") as fh:
        fh.write("x")

    assert (tmp_path / "target.csv").read_text() == "x" and mode(tmp_path / "target.csv") == 0o600


def test_dev_null_is_written_and_never_chmodded() -> None:
    before = os.stat("/dev/null").st_mode
    with open_private(Path("/dev/null")) as fh:
        fh.write("gone")
    assert os.stat("/dev/null").st_mode == before


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("in.csv", "--report in.csv is SOURCE"),
        ("./sub/../in.csv", "--report sub/../in.csv is SOURCE"),
        ("hard.csv", "--report hard.csv is SOURCE"),
        ("s.db", "--report s.db is --state"),
        ("s.db-wal", "--report s.db-wal is a file bulksync keeps beside the state"),
        ("s.db.lock", "--report s.db.lock is a file bulksync keeps beside the state"),
    ],
)
def test_an_output_on_an_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "in.csv").write_text("email\n")
    os.link(tmp_path / "in.csv", tmp_path / "hard.csv")

    with pytest.raises(ConfigError) as refused:
        refuse_clashes({"SOURCE": Path("in.csv"), "--state": Path("s.db")}, {"--report": Path(output)})

    assert str(refused.value).startswith(message)


def test_outputs_may_share_a_device_but_not_a_file(tmp_path: Path) -> None:
    refuse_clashes({}, {"--report": Path("/dev/null"), "--summary-json": Path("/dev/null")})
    refuse_clashes({"--state": tmp_path / "s.db"}, {"--report": tmp_path / "s.db.report.csv"})  # only a prefix
    with pytest.raises(ConfigError, match="are the same file"):
        refuse_clashes({}, {"--report": tmp_path / "x", "--summary-json": tmp_path / "x"})
