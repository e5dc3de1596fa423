"""The replay player's child process (``python -m safety.service.player``): what it writes.

The child batches the records that fall due together into one write; whatever the batching,
the stream must carry every playable frame of the log, in order, with its time and data, the
skipped and bad lines reported, and the end of the pass last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from safety.io.logs import read_log
from safety.service.player import FRAME, FRAME_EXTENDED, HEADER, LOG_ERROR, PASS, SKIPPED

# Real server, player or benchmark processes: the slow part of the suite (CI runs it all).
pytestmark = pytest.mark.slow

Record = tuple[int, float, int, bytes]


def records(stream: bytes) -> list[Record]:
    out: list[Record] = []
    at = 0
    while at < len(stream):
        kind, t, _sent, number, n = HEADER.unpack_from(stream, at)
        at += HEADER.size
        out.append((kind, t, number, stream[at : at + n]))
        at += n
    assert at == len(stream)  # no record cut short
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("player") / "drive.log"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--frames", "5000", "--quiet"],
        check=True,
    )
    lines = path.read_text().splitlines(keepends=True)
    # An error frame (skipped) and a line that is not a frame (reported) in the middle.
    error_frame = lines[10].split()[0] + " vcan0 20000080#0000000000000000\n"
    path.write_text("".join([*lines[:100], error_frame, "this is not a candump line\n", *lines[100:]]))
    return path


@pytest.mark.parametrize("speed", ["0", "400"])
def test_the_child_writes_every_playable_frame_in_order_then_the_pass(log: Path, speed: str) -> None:
    played = subprocess.run(
        [sys.executable, "-m", "safety.service.player", str(log), "", speed, "once"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    got = records(played.stdout)
    expected = [
        (FRAME_EXTENDED if f.is_extended_id else FRAME, f.timestamp, f.arbitration_id, bytes(f.data))
        for f in read_log(log, on_error=lambda error: None)
        if not (f.is_error_frame or f.is_remote_frame)
    ]
    assert [r for r in got if r[0] <= FRAME_EXTENDED] == expected
    assert [r[2] for r in got if r[0] == SKIPPED] == [1]
    errors = [json.loads(r[3]) for r in got if r[0] == LOG_ERROR]
    assert len(errors) == 1 and errors[0]["line"] == 102
    assert got[-1][0] == PASS and [r[0] for r in got].count(PASS) == 1
