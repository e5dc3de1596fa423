"""The fault matrix: the demo drive replayed with every fault kind, against the clean replay.

For each fault: nothing is ever decided less restrictively than in the clean drive (in
particular nothing the default policy locks out while driving is allowed), the unknown signal
carries the right reason while the fault lasts, and the timeline is the clean one again
within a few seconds of the fault's end.  The figures of README's fault matrix come from
``tools/fault_matrix.py``, which runs these same cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_VEHICLE

from safety.cli.gen_drive import DEFAULT_START_TIME, candump_lines, write_log
from safety.demo.fault_matrix import DEMO_FAULTS, FaultCase, replay_timeline, run_fault
from safety.faults import Injector, parse_fault
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay.timeline import ReplaySummary
from safety.vehicle.profile import load_profile

RECOVERY_S = 2.5  # the dwell before a less demanding state (1.5 s) and the E2E recovery frames, with room

# What each case's counters must show, beyond the timeline.
CHECKS: dict[str, Callable[[ReplaySummary, dict[str, Any]], bool]] = {
    "freeze-counter:VEHICLE_SPEED@24+3": lambda s, c: s.integrity["speed"] >= 100,
    "backwards@24+3": lambda s, c: s.frames_rejected.get("out-of-order", 0) > 0,
    "spike:VEHICLE_SPEED@24,count=1,signal=VehicleSpeed,value=0": lambda s, c: s.implausible == {"speed": 1},
    "duplicate:VEHICLE_SPEED@24+3": lambda s, c: c["e2e"]["VEHICLE_SPEED"].get("repeated", 0) == 150,
    "error-frames@24+3,rate=500": lambda s, c: s.frames_skipped == 1500,
}


def timeline(log: Path, *, virtual: bool = False) -> tuple[list[dict[str, Any]], ReplaySummary, Any]:
    return replay_timeline(log, virtual=virtual)


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    with path.open("w", encoding="ascii") as out:
        write_log(out, candump_lines(start_time=DEFAULT_START_TIME, channel="can0", frames=None))
    lines, _, _ = timeline(path)
    return path, lines


def inject(drive: Path, spec: str, out: Path) -> dict[str, int]:
    injector = Injector([parse_fault(spec)], load_profile(DEMO_VEHICLE))
    write_frames(out, injector.run(read_log(drive, on_error=None)))
    return injector.changed


def test_the_matrix_covers_every_fault_kind() -> None:
    from safety.faults import KINDS

    assert {parse_fault(case.spec).kind for case in DEMO_FAULTS} == set(KINDS)


@pytest.mark.parametrize("case", DEMO_FAULTS, ids=[c.spec for c in DEMO_FAULTS])
def test_a_fault_fails_closed_says_why_and_recovers(
    drive: tuple[Path, list[dict[str, Any]]], tmp_path: Path, case: FaultCase
) -> None:
    log, clean = drive
    run = run_fault(log, clean, case, tmp_path / "faulty.log")
    assert run.changed > 0
    spec = parse_fault(case.spec)
    t0 = clean[0]["t"]
    start, end = t0 + spec.start, t0 + min(spec.end, spec.start + 3.0)

    assert run.difference.looser == [], "a fault made a decision less restrictive"
    # NHTSA's lockouts, counted on their own: never allowed while the clean drive is moving.
    assert run.locked_allowed_while_moving == 0
    if case.signal is None:
        assert run.difference.first_difference is None, "this fault must change nothing"
        assert run.lines == clean
    else:
        during = [line for line in run.lines if start <= line["t"] <= end + 0.5]
        reasons = {line["unknown"].get(case.signal, "") for line in during}
        assert any(r.startswith(case.reason) for r in reasons), sorted(reasons)
        first, again = run.difference.first_difference, run.difference.equal_again
        assert first is not None and start <= first <= start + 0.5
        assert again is not None and again <= end + RECOVERY_S
        assert run.difference.stricter_seconds, "an unknown signal must make something more restrictive"
    assert CHECKS.get(case.spec, lambda s, c: True)(run.summary, run.counters)


def test_a_parked_car_with_an_unreadable_gear_locks_video_out(
    drive: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Parked, video is allowed; with the gear SNA for 2 s it is not, and it is again after."""
    log, clean = drive
    inject(log, "sna:TRANSMISSION@2+2,signal=GearPosition", tmp_path / "faulty.log")
    faulty, _, _ = timeline(tmp_path / "faulty.log")
    t0 = clean[0]["t"]

    def video_at(lines: list[dict[str, Any]], t: float) -> str:
        return str([line for line in lines if line["t"] <= t0 + t][-1]["decisions"]["video"])

    assert [video_at(clean, t) for t in (1.0, 3.0, 6.0)] == ["allow", "allow", "allow"]
    assert [video_at(faulty, t) for t in (1.0, 3.0, 6.0)] == ["allow", "deny", "allow"]


def test_a_silent_bus_shows_as_unknown_from_when_it_went_stale(
    drive: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Found while building the matrix: a file replay saw a silent bus only when frames came back.

    Between frames nobody asked, so three seconds of silence left no trace in the timeline; now
    each signal goes unknown at the time its age passes max_age, as a caller asking then would see.
    """
    log, clean = drive
    inject(log, "silence@24+3", tmp_path / "faulty.log")
    faulty, summary, _ = timeline(tmp_path / "faulty.log")
    t0 = clean[0]["t"]
    during = [line for line in faulty if t0 + 24.0 < line["t"] < t0 + 27.0]
    # The gear (max_age 300 ms) goes stale first and makes the driving state unknown; the lines of
    # --sample-every 0.5 go on through the silence, each with every signal stale.
    unknown = [line for line in during if line["driving_state"] is None]
    assert unknown[0]["t"] <= t0 + 24.0 + 0.3 + 0.02 and unknown[0]["unknown"]["gear"].startswith("stale")
    samples = [round(line["t"] - t0, 2) for line in during if line["unknown"].get("speed", "").startswith("stale")]
    assert samples == [24.5, 25.0, 25.5, 26.0, 26.5]
    assert summary.unknown_seconds["speed"]["stale"] == pytest.approx(2.7, abs=0.05)


def test_the_virtual_bus_sees_the_faults_as_the_file_replay_does(
    drive: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    log, _ = drive
    specs = ["bad-checksum:TRANSMISSION@24+1", "drop:VEHICLE_SPEED@40+2", "truncate:STEERING@90+1,length=3"]
    injector = Injector([parse_fault(s) for s in specs], load_profile(DEMO_VEHICLE))
    write_frames(tmp_path / "faulty.log", injector.run(read_log(log, on_error=None)))
    from_file, file_summary, _ = timeline(tmp_path / "faulty.log")
    from_bus, bus_summary, _ = timeline(tmp_path / "faulty.log", virtual=True)
    assert from_bus == from_file
    assert bus_summary.integrity == file_summary.integrity and bus_summary.integrity["gear"] > 0
    assert bus_summary.truncated == {"steering_angle": 100, "steering_rate": 100}
    assert not math.isnan(bus_summary.unknown_seconds["speed"]["stale"])
