"""The decision log's files: mapped and write appenders, crash recovery, one writer per mapped file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, killed_after, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Engine
from safety.audit.appendfile import WINDOW_BYTES, MappedAppender, WriteAppender
from safety.audit.decisionlog import DecisionLog, read_lines

APPENDERS = {"mmap": MappedAppender, "write": WriteAppender}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(APPENDERS)),
    sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=12),
    reopen_after=st.integers(0, 12),
)
def test_the_file_holds_exactly_what_was_appended(
    tmp_path: Path, kind: str, sizes: list[int], reopen_after: int
) -> None:
    path = tmp_path / f"{kind}-{len(sizes)}-{reopen_after}.log"
    path.unlink(missing_ok=True)
    records = [bytes([65 + i % 26]) * (n - 1) + b"\n" for i, n in enumerate(sizes)]
    file = APPENDERS[kind](str(path))
    for i, record in enumerate(records):
        if i == reopen_after:  # closed and opened again midway: appends continue after the last record
            file.close()
            file = APPENDERS[kind](str(path))
        file.append(record)
        assert file.size == sum(map(len, records[: i + 1]))
    file.close()
    assert path.read_bytes() == b"".join(records)


def test_a_record_larger_than_the_window(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    file = MappedAppender(str(path))
    big = b"x" * (WINDOW_BYTES * 2 + 5) + b"\n"
    file.append(b"first\n")
    file.append(big)
    file.append(b"last\n")
    file.close()
    assert path.read_bytes() == b"first\n" + big + b"last\n"


def test_a_killed_writer_loses_nothing_and_the_next_open_trims_the_padding(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    script = (
        "import sys\n"
        "from safety.audit.appendfile import MappedAppender\n"
        f"f = MappedAppender({str(path)!r})\n"
        "for i in range(1000):\n"
        "    f.append(b'record %d\\n' % i)\n"
        "f.append(b'cut short')\n"  # as if killed in the middle of copying a record
    )
    killed_after(script)
    assert path.stat().st_size == WINDOW_BYTES  # still padded: nobody closed it
    assert read_lines(path)[-2:] == ["record 999", "cut short"]
    file = MappedAppender(str(path))
    file.append(b"after the crash\n")
    file.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[:2] == [b"record 0", b"record 1"] and len(lines) == 1003
    assert lines[-3:] == [b"cut short", b"after the crash", b""]  # the torn record stays a line of its own


def test_one_writer_per_mapped_file(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    first = DecisionLog(path)
    with pytest.raises(OSError, match="another process is writing this decision log"):
        DecisionLog(path)
    first.close()
    DecisionLog(path).close()  # free again once closed
    shared = [DecisionLog(path, writer="write"), DecisionLog(path, writer="write")]  # write(): shareable
    for log in shared:
        log.close()
    with pytest.raises(ValueError, match="writer must be one of mmap, write, got 'fast'"):
        DecisionLog(path, writer="fast")  # type: ignore[arg-type]


def test_fsync_and_rotation_with_either_writer(tmp_path: Path) -> None:
    for kind in ("mmap", "write"):
        path = tmp_path / f"{kind}.jsonl"
        log = DecisionLog(path, writer=kind, fsync=True, max_bytes=4000, backups=1)  # type: ignore[arg-type]
        engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=log)
        for i in range(40):
            engine.decide(request(id=f"r{i}"))
        engine.close()
        assert log.writer == kind
        assert sorted(p.name for p in tmp_path.glob(f"{kind}.*")) == [f"{kind}.jsonl", f"{kind}.jsonl.1"]
        assert all(p.stat().st_size <= 4000 for p in tmp_path.glob(f"{kind}.*"))
        assert json.loads(read_lines(path)[-1])["request"]["id"] == "r39"


def test_a_file_that_cannot_be_mapped_falls_back_to_write(tmp_path: Path) -> None:
    # A FIFO (a log consumer reading a pipe) cannot be mapped: the log writes to it instead.
    fifo = tmp_path / "decisions.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = DecisionLog(fifo)
        assert log.writer == "write"
        engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=log)
        engine.decide(request(id="piped"))
        engine.close()
        record = json.loads(os.read(reader, 65536).decode())
        assert record["request"]["id"] == "piped"
    finally:
        os.close(reader)
