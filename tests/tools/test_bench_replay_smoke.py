"""Smoke test of ``tools/bench_replay.py``: the three commands run on a small candump and BLF log.

No timing is asserted: the machine is shared and noisy, and the figures are for people to read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_replay_small_runs_all_three_commands() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_replay.py"), "--frames", "20000", "--blf-frames", "3000", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| candump") or line.startswith("| BLF")]
    assert [row.split(" | ")[1] for row in rows] == ["columnar", "streaming", "baseline"] * 2
    assert "20,000 frames" in rows[0] and "3,000 frames" in rows[3]


def test_the_baseline_decodes_every_mapped_frame(tmp_path: Path) -> None:
    path = tmp_path / "two.log"
    # One mapped frame (VEHICLE_SPEED, 0x0B4) and one the demo profile does not map.
    path.write_text("(1700000000.000000) can0 0B4#E803000000000000\n(1700000000.000100) can0 300#00\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "baseline_replay.py"), str(path), "--vehicle", str(ROOT / "dbc" / "demo_sedan.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "frames read: 2, decoded: 1, signals: 5\n"
