"""Smoke test of ``tools/bench.py --quick``: it runs, its sanity checks pass, it reports the floors.

No timing is asserted: the machine is shared and noisy, and the bench is for people to read.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

# Real server, player or benchmark processes: the slow part of the suite (CI runs it all).
pytestmark = pytest.mark.slow


def test_bench_quick_runs_and_reports_p99_and_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--no-service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # --quick takes about 10 s here; the margin is for a loaded CI machine, not a target.
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "decide() p99 (gc enabled):" in out
    assert "decide() p99 (gc disabled):" in out
    assert "replay ratio ours/baseline:" in out
    # Ours and the baseline decoded the same frames and wrote the same timeline.
    assert "identical: yes" in out
    assert "(agree)" in out
    # The Markdown summary table is printed.
    assert "| Measure" in out
    assert "Ratio ours / baseline" in out
