"""Smoke test of ``tools/fuzz.py --quick``: every target runs under atheris and finds nothing.

The README's fuzz counts come from a full run (``python tools/fuzz.py``); this keeps the harness
working.  Skipped where atheris is not installed (it is in the test extra on Linux x86-64).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed"),
]


def test_fuzz_quick_runs_every_target_without_a_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fuzz.py"), "--quick"],
        cwd=tmp_path,  # libFuzzer writes crash-* files to the working directory
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    table = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}
    assert set(table) == {"candump", "logs", "frames", "protocol"}
    assert all(cells[-1] == "0" for cells in table.values()), table
    assert int(table["frames"][1].replace(",", "")) > 1000  # frames went through the engine
    assert int(table["protocol"][2].replace(",", "")) > 1000  # protocol lines through the server
    assert not list(tmp_path.glob("crash-*"))
