"""Smoke test of ``tools/bench.py --quick --service-only`` (``tools/bench_service.py``): it runs
end to end and its sanity checks pass.

No timing is asserted (the machine is shared and noisy; the bench is for people to read): only
that every figure is reported, no decision fell back, and no frame was dropped.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

# Real server, player or benchmark processes: the slow part of the suite (CI runs it all).
pytestmark = pytest.mark.slow


def test_bench_service_quick_runs_and_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--service-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # --quick takes about 20 s here; the margin is for a loaded CI machine, not a target.
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "1 client: round trip p50 / p99 / p99.9:",
        "4 clients: total decisions/s:",
        "machine baseline: bare asyncio echo server",
        "server CPU: bus alone / 1 client / 4 clients:",
        "| measure | result |",
    ):
        assert figure in out, figure
    assert "frames dropped (sent by the player − seen by the engine): 0 of" in out
    assert "fallback decisions (client-fallback): 0" in out
    assert "sanity: ok" in out
