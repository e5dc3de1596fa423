"""``drivegate inject`` as a user runs it: a real process, then ``drivegate replay`` on its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def drivegate(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def test_inject_then_replay_shows_the_fault_with_its_reason(tmp_path: Path) -> None:
    assert drivegate("gen-drive", "--out", "drive.log", cwd=tmp_path).returncode == 0
    done = drivegate(
        "inject", "drive.log", "--vehicle", "demo-sedan",
        "--fault", "bad-checksum:VEHICLE_SPEED@24+1",
        "--fault", "drop:TRANSMISSION@60+2",
        "--out", "faulty.log.gz",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "bad-checksum:VEHICLE_SPEED@24+1: 50 frames changed",
        "drop:TRANSMISSION@60+2: 20 frames changed",
        "faulty.log.gz: 51932 frames written",
    ]
    replayed = drivegate(
        "replay", "faulty.log.gz", "--vehicle", "demo-sedan", "--policy", "default", "--reasons", cwd=tmp_path
    )
    assert replayed.returncode == 0, replayed.stderr
    lines = [json.loads(line) for line in replayed.stdout.splitlines()]
    reasons = {line["unknown"].get("speed", "") for line in lines}
    assert any(r.startswith("integrity failure: checksum") for r in reasons)
    assert any(line["unknown"].get("gear", "").startswith("stale") for line in lines)
    assert "integrity failures: gear 2, speed 52" in replayed.stderr  # the gear's counter jumps after the gap


def test_a_fault_that_changes_nothing_exits_1_and_a_bad_one_2(tmp_path: Path) -> None:
    assert drivegate("gen-drive", "--out", "drive.log", "--frames", "2000", cwd=tmp_path).returncode == 0
    idle = drivegate(
        "inject",
        "drive.log",
        "--vehicle",
        "demo-sedan",
        "--fault",
        "drop:VEHICLE_SPEED@500",
        "--out",
        "o.log",
        cwd=tmp_path,
    )
    assert idle.returncode == 1
    assert idle.stderr.splitlines()[-1] == (
        "drop:VEHICLE_SPEED@500: changed nothing (its window is outside the log, or its message never occurs)"
    )
    bad = drivegate(
        "inject", "drive.log", "--vehicle", "demo-sedan", "--fault", "drop", "--fault", "spike:NOPE,signal=x,value=1",
        "--out", "o.log", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "field '--fault': fault-spec: 'drop': drop needs a message: drop:MESSAGE (a DBC message name or frame id)"
    ]
    suffix = drivegate(
        "inject", "drive.log", "--vehicle", "demo-sedan", "--fault", "silence", "--out", "o.txt", cwd=tmp_path
    )
    assert suffix.returncode == 2
    assert "cannot write a log with suffix '.txt'" in suffix.stderr
    same = drivegate(
        "inject", "drive.log", "--vehicle", "demo-sedan", "--fault", "silence", "--out", "./drive.log", cwd=tmp_path
    )
    assert same.returncode == 2 and "--out must not be the log being read" in same.stderr
