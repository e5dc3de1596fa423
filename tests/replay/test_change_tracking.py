"""A replay re-decides only where the state's change count moved: it must never miss a change.

The oracle: the same replay with the change count moving at every look (every frame and every
instant something may expire is decided).  Lines are written only where the driving state,
the workload or an outcome changes, so both must write the same timeline; a change the
tracking misses (a watched cell, a watched value, a signal known again, a derived state) is a
line missing or late.  On the demo drive, the real logs (skipped when absent) and random
drives (hypothesis).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_columnar import RAV4_TSS2, SPEED_BANDS, drives

from safety import Engine
from safety.replay.timeline import BUILTIN_PROBES, replay_file
from safety.vehicle.state import VehicleState


class AlwaysChanged(VehicleState):
    """A vehicle state whose change count moves at every read: every look decides again."""

    @property  # type: ignore[override]
    def changes(self) -> int:
        self._looks = getattr(self, "_looks", 0) + 1
        return self._looks

    @changes.setter
    def changes(self, value: int) -> None:
        pass


def timelines(log: Path, vehicle: Path | str = DEMO_VEHICLE, policy: Path | str = DEFAULT_POLICY, **kw: object) -> tuple[str, str]:
    """(the replay's timeline, the oracle's) of ``log``."""
    out = []
    for oracle in (False, True):
        engine = Engine.load(vehicle, policy)
        if oracle:
            engine._state.__class__ = AlwaysChanged
            engine._state.fast_repeats = False  # every sample takes the full path too
        text = io.StringIO()
        replay_file(engine, log, BUILTIN_PROBES, text, **kw)  # type: ignore[arg-type]
        out.append(text.getvalue())
    return out[0], out[1]


def test_the_oracle_decides_at_every_look(tmp_path: Path) -> None:
    state = AlwaysChanged({"speed": 1.0})
    assert state.changes != state.changes


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, SPEED_BANDS])
def test_the_demo_drive(drive_log: Path, policy: Path) -> None:
    replayed, oracle = timelines(drive_log, policy=policy, reasons=True)
    assert replayed == oracle and replayed.count("\n") > 10


@pytest.mark.parametrize("log", ["rav4_2020-02-03_drive.log.gz", "rav4_2020-03-02_steering.log.gz"])
def test_real_logs(log: str) -> None:
    path = shared("verifiedcan_rav4_tss2", log)
    for policy in (DEFAULT_POLICY, SPEED_BANDS):
        replayed, oracle = timelines(path, RAV4_TSS2, policy)
        assert replayed == oracle


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drives(), st.sampled_from([DEFAULT_POLICY, SPEED_BANDS]), st.sampled_from([None, 0.3]))
def test_random_drives(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[float, str]], policy: Path, sample_every: float | None
) -> None:
    path = tmp_path_factory.mktemp("drive") / "random.log"
    path.write_text("".join(line + "\n" for _, line in lines))
    replayed, oracle = timelines(path, policy=policy, sample_every=sample_every, reasons=True)
    assert replayed == oracle
