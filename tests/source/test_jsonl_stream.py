"""JSONL in batches (jsonl_reader.py, jsonl_fast.py, spool.py): every column and its kind known from
the whole file, yet the file never whole in memory; polars' fast reading of a batch taken only when
it matches the line-by-line parser exactly. And ``check`` and ``state baseline`` a batch at a time.
(Starting over when a later batch changes the header: test_jsonl_restart.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksync.check import TypeMismatch, run_check
from bulksync.columns import ROW
from bulksync.emulator import LoopsEmulator
from bulksync.loops.client import LoopsClient
from bulksync.source import csv_reader, jsonl_fast, jsonl_reader, spool
from bulksync.source.jsonl_reader import _Chunk, _parse
from bulksync.source.read import open_source, read_source
from bulksync.sync import record_baseline
from tests.helpers import state_fields


def lines(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 30)  # a line a batch
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)  # every batch through the temporary file


@pytest.mark.usefixtures("small_batches")
def test_columns_and_kinds_come_from_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    path.write_text(lines({"email": "a@x.io", "mixed": 1}, {"email": "b@x.io", "seats": 2},
                          {"email": "c@x.io", "mixed": "two"}, {"email": "d@x.io", "late": True}))

    header, batches = open_source(path).consume(lambda stream: (stream.header, list(stream.batches)))

    assert header.columns == ["email", "mixed", "seats", "late"]
    assert header.kinds == {"email": "string", "mixed": "string", "seats": "number", "late": "boolean"}
    assert len(batches) == 4
    assert all(batch.frame.columns == [ROW, "email", "mixed", "seats", "late"] for batch in batches)
    assert [row for batch in batches for row in batch.frame.rows()] == [
        (1, "a@x.io", "1", None, None), (2, "b@x.io", None, "2", None),
        (3, "c@x.io", "two", None, None), (4, "d@x.io", None, None, "true"),
    ]


@pytest.mark.usefixtures("small_batches")
def test_malformed_lines_keep_their_numbers_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"email": "a@x.io"}\n\n\n{"email": "b@x.io" "x": 1}\n[1]\n{"email": "c@x.io"}\n')

    source = read_source(path)

    assert source.frame.rows() == [(1, "a@x.io"), (6, "c@x.io")]
    assert source.malformed == [(4, "malformed JSON at column 20: Expecting ',' delimiter"),
                                (5, "line is JSON list, not an object")]


def test_the_spool_replays_what_it_was_given_and_closes_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 100)
    kept: spool.Spool[int] = spool.Spool()
    frames = [pl.DataFrame({"n": list(range(start, start + 50))}) for start in (0, 50, 100)]
    for number, frame in enumerate(frames):
        kept.add(frame, number)
    spilled = kept._file
    assert spilled is not None and not spilled.closed  # past 100 bytes: on disk

    replayed = list(kept.replay())

    assert [(frame.to_dict(as_series=False), number) for frame, number in replayed] == [
        (frame.to_dict(as_series=False), number) for number, frame in enumerate(frames)]
    assert spilled.closed


def test_an_unfinished_replay_still_closes_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "MEMORY_BYTES", 0)
    kept: spool.Spool[None] = spool.Spool()
    kept.add(pl.DataFrame({"n": [1]}), None)
    kept.add(pl.DataFrame({"n": [2]}), None)
    spilled = kept._file
    replay = kept.replay()
    next(replay)

    del replay

    assert spilled is not None and spilled.closed


# -- the fast path agrees with the line-by-line parser ---------------------------------------------------

KEYS = st.sampled_from(["email", "a", "b", "name"])
SCALARS = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6),
    st.sampled_from(["02134", '":', "null", 'say "hi"', "a\\b", "é", "😀", "12:30"]),
    st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1.0, -0.0, 1e20]),
)
PLAIN = SCALARS.filter(lambda value: not isinstance(value, float))  # the fast path's own: most values are plain
VALUES = st.one_of(PLAIN, PLAIN, PLAIN, SCALARS, st.lists(SCALARS, max_size=2),
                   st.dictionaries(KEYS, SCALARS, max_size=2))


@st.composite
def jsonl_lines(draw: st.DrawFn) -> bytes:
    """Lines as exporters write them: compact or spaced, ASCII-escaped or not, now and then a repeated
    key (never with a null: the one difference the fast path leaves), a blank or a broken line."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        pairs = list(draw(st.dictionaries(KEYS, VALUES, max_size=4)).items())
        if pairs and draw(st.integers(0, 9)) == 0 and pairs[0][1] is not None:
            pairs.append((pairs[0][0], "again"))
        style = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")]))
        ascii_only = draw(st.booleans())
        body = style[0].join(json.dumps(k, ensure_ascii=ascii_only) + style[1] + json.dumps(v, ensure_ascii=ascii_only)
                             for k, v in pairs)
        out.append("{" + body + "}" if draw(st.integers(0, 19)) else draw(st.sampled_from(["", "[1]", "{"])))
    return ("\n".join(out) + "\n").encode()


def both(data: bytes) -> tuple[Any, Any]:
    count = data.count(b"\n")
    chunk = _Chunk(data, 10, count, False)
    return jsonl_fast.parse(data, 10, count), _parse(Path("x.jsonl"), chunk)


@settings(max_examples=400, deadline=None)
@given(jsonl_lines())
def test_the_fast_path_reads_a_batch_as_the_line_by_line_parser_does(data: bytes) -> None:
    fast, slow = both(data)

    if fast is not None:
        frame, kinds, malformed = slow
        assert malformed == fast[2] == []
        assert fast[0].to_dicts() == frame.select(fast[0].columns).to_dicts()
        assert set(fast[0].columns) == set(frame.columns)
        assert fast[1] == {name: kind for name, kind in kinds.items() if kind != {"number"} or name in fast[1]}


def test_plain_exports_take_the_fast_path() -> None:
    compact = b"".join(json.dumps({"email": f"u{n}@x.io", "seats": n, "vip": n % 2 == 0, "zip": f"{n:05d}",
                                   "gone": None}, separators=(",", ":")).encode() + b"\n" for n in range(50))
    spaced = "".join(json.dumps({"email": f"u{n}@x.io", "name": "Zoë 😀"}) + "\n" for n in range(50)).encode()
    escaped = "".join(json.dumps({"email": f"u{n}@x.io", "name": "Zoë\t"}, ensure_ascii=False) + "\n"
                      for n in range(50)).encode()  # json.dumps' \u00eb and \ud83d\ude00 ... and a \t

    timed = "".join(json.dumps({"email": f"u{n}@x.io", "seen": f"2024-01-01T12:{n:02d}", "url": "https://x.io:8080"})
                    + "\n" for n in range(50)).encode()  # colons in values: none ends a key spaced from it

    for data in (compact, spaced.replace(b"\\ud83d\\ude00", b""), escaped, timed):
        fast, slow = both(data)
        assert fast is not None
        assert fast[0].to_dicts() == slow[0].select(fast[0].columns).to_dicts()
        assert fast[1] == slow[1]


@pytest.mark.parametrize("data", [
    b'{"email": "a@x.io", "email": "b@x.io"}\n',  # a repeated key: rejected by the line-by-line parser
    b'{"email": "a@x.io", "score": 1.5}\n',  # a float's text is Python's to write
    b'{"email": "a@x.io", "tags": ["x"]}\n',
    b'{"email": "a\\"b@x.io"}\n',  # an escaped quote: the counts would be off
    b'{"email": "a@x.io", "name": "\\ud83d\\ude00"}\n',  # a surrogate escape (polars misreads a lone one)
    b'{"email": "a@x.io"}\n\n{"email": "b@x.io"}\n',  # a blank line: polars would renumber the rows
    b'{"email": "a@x.io", "__row": 1}\n',
], ids=["repeated", "float", "list", "quote", "surrogate", "blank", "reserved"])
def test_batches_the_fast_path_leaves_to_the_line_by_line_parser(data: bytes) -> None:
    assert both(data)[0] is None


# -- check and state baseline, a batch at a time --------------------------------------------------------


@pytest.fixture
def client() -> Iterator[LoopsClient]:
    emulator = LoopsEmulator(api_key="k", rate_limit=0)
    emulator.add_property("seats", "number")
    with LoopsClient("k", "https://loops.test/api", transport=emulator.transport()) as loops:
        yield loops


@pytest.mark.parametrize("name", ["in.csv", "in.jsonl"])
def test_check_counts_mismatches_over_every_batch(
    tmp_path: Path, client: LoopsClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(csv_reader, "BATCH_BYTES", 40)
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 40)
    seats = ["1", "many", "2", "lots", "x", "3", "y"]
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("email,seats\n" + "".join(f"u{n}@x.io,{s}\n" for n, s in enumerate(seats)))
    else:
        path.write_text(lines(*({"email": f"u{n}@x.io", "seats": s} for n, s in enumerate(seats))))
    stream = open_source(path)

    result = run_check(stream, None, client)

    assert result.rows == 7
    assert result.type_mismatches == [TypeMismatch("seats", "number", [(2, "many"), (4, "lots"), (5, "x")], 4)]


def test_baseline_of_a_jsonl_file_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 64)
    monkeypatch.chdir(tmp_path)
    Path("in.jsonl").write_text(lines(*({"email": f"u{n}@x.io", "seats": n} for n in range(30))))

    summary = record_baseline(Path("in.jsonl"), Path("state.db"))

    assert summary.unchanged == 30
    assert state_fields(tmp_path)["u29@x.io"]["seats"] == "29"


@given(st.binary(max_size=40).map(lambda b: bytes(b'":nul '[x % 6] for x in b)), st.integers(1, 7))
def test_counting_a_slice_at_a_time_counts_every_match_once(data: bytes, slice_bytes: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl_fast, "_COUNT_BYTES", slice_bytes)
        for sub in (b'"', b'":', b'":null', b'": null'):
            assert jsonl_fast._count(data, sub) == data.count(sub)


def test_a_nul_is_looked_for_only_in_the_batches_that_may_hold_one(
    cli: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "BATCH_BYTES", 40)
    (workdir / "in.jsonl").write_text(lines({"email": "a@x.io", "firstName": "Ada"},
                                            {"email": "b@x.io", "firstName": "B\u0000b"},
                                            {"email": "c@x.io", "firstName": "Cy\\u0000"}))

    batches = open_source(workdir / "in.jsonl").consume(lambda stream: list(stream.batches))
    result = cli("sync", "in.jsonl", "--state", "state.db", "--dry-run")

    # JSON writes a NUL as \u0000; the third line's "\\u0000" (a backslash, then u0000) only looks like one.
    assert [batch.may_hold_nul for batch in batches] == [False, True, True]
    rejected = [row for row in result.report() if row["action"] == "reject"]
    assert [(row["row"], row["error"]) for row in rejected] == [
        ("2", "firstName contains a NUL character; remove it from the source")]
