"""``tools/hostile.py`` against a real ``drivegate serve``: every count of issue #11 is 0.

The README's table comes from a longer run (``python tools/hostile.py --seconds 10``); this runs
each attack for one second and asserts what the table promises: no crash, no hang, no wrong
allow, no record lost, the well-behaved client served throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_every_attack_ends_with_zero_crashes_hangs_wrong_allows_and_lost_records() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "hostile.py"), "--seconds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    figures = json.loads(result.stdout)
    surfaces = {row["surface"]: row for row in figures["surfaces"]}
    assert set(surfaces) == {"quiet", "protocol", "explain", "deferral", "connections", "reload"}
    for name, row in surfaces.items():
        assert (row["crashes"], row["hangs"], row["wrong_allows"]) == (0, 0, 0), row
        assert row["good_failed"] == 0 and row["good_calls"] > 0, row
        if name != "quiet":
            assert row["inputs"] > 0, row
    end = figures["end"]
    assert end["records_lost"] == 0 and end["exit"] == 0 and end["records"] >= end["records_expected_at_least"]
