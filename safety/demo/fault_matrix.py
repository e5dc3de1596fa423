"""The demo drive's fault matrix: every fault kind injected into the scripted drive, replayed
with the default policy and compared with the clean replay.

``tests/faults/test_fault_matrix.py`` asserts on these cases; ``tools/fault_matrix.py`` prints
the table in the README.  Most faults start at 24 s, when the demo sedan cruises at 45 km/h,
and last 3 s; one is at highway speed, one while parked.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safety.builtin import DEFAULT_POLICY, DEMO_VEHICLE
from safety.engine.engine import Engine
from safety.faults import Injector, parse_fault
from safety.faults.compare import TimelineDifference, compare_timelines
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay.timeline import BUILTIN_PROBES, ReplaySummary, replay_file, replay_virtual
from safety.vehicle.profile import load_profile

__all__ = ["DEMO_FAULTS", "FaultCase", "FaultRun", "replay_timeline", "run_fault"]

#: Requests NHTSA's visual-manual guidelines lock out while driving (video, manual text entry,
#: images), which the default policy must never allow while the car moves.
LOCKED_WHILE_DRIVING = ("video", "keyboard", "image")


@dataclass(frozen=True)
class FaultCase:
    """One fault of the matrix: the signal it must make unknown (None: it must change nothing) and why."""

    spec: str
    signal: str | None
    reason: str  # how the unknown signal's reason starts


DEMO_FAULTS: tuple[FaultCase, ...] = (
    FaultCase("drop:VEHICLE_SPEED@24+3", "speed", "stale: last frame"),
    FaultCase("drop:TRANSMISSION@24+3", "gear", "stale: last frame"),
    FaultCase("drop:STEERING@88+2", "steering_angle", "stale: last frame"),
    FaultCase("silence@24+3", "speed", "stale: last frame"),
    FaultCase("freeze-counter:VEHICLE_SPEED@24+3", "speed", "integrity failure: counter frozen at"),
    FaultCase("skip-counter:STEERING@24+3", "steering_angle", "integrity failure: counter jumped"),
    FaultCase("bad-checksum:TRANSMISSION@24+3", "gear", "integrity failure: checksum"),
    FaultCase("reorder:VEHICLE_SPEED@24+3", "speed", "integrity failure: counter jumped"),
    FaultCase("sna:VEHICLE_SPEED@24+3,signal=VehicleSpeed", "speed", "invalid value (DBC marks it not available)"),
    FaultCase("sna:TRANSMISSION@2+2,signal=GearPosition", "gear", "invalid value (DBC marks it not available)"),
    FaultCase("truncate:VEHICLE_SPEED@24+3,length=1", "speed", "truncated frame: 1 bytes received, 8 needed"),
    FaultCase("backwards@24+3", "speed", "stale: last frame"),
    # A single sealed outlier: plausibility rejects it and keeps the last accepted value.
    FaultCase("spike:VEHICLE_SPEED@24,count=1,signal=VehicleSpeed,value=0", None, ""),
    # Repeated frames: the E2E checker drops each repeat (REPEATED).
    FaultCase("duplicate:VEHICLE_SPEED@24+3", None, ""),
    # Error frames carry no data: skipped and counted.
    FaultCase("error-frames@24+3,rate=500", None, ""),
)


@dataclass
class FaultRun:
    """One case run: the faulty timeline, its summary and counters, and how it differs from the clean one."""

    case: FaultCase
    changed: int
    lines: list[dict[str, Any]]
    summary: ReplaySummary
    counters: dict[str, Any]
    difference: TimelineDifference
    locked_allowed_while_moving: int  # lines allowing a LOCKED_WHILE_DRIVING request while the clean drive moves


def replay_timeline(
    log: str | Path, *, virtual: bool = False, sample_every: float = 0.5
) -> tuple[list[dict[str, Any]], ReplaySummary, Engine]:
    """Replay ``log`` with the demo sedan and the default policy; the timeline lines (with reasons)."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    out = io.StringIO()
    if virtual:
        summary = replay_virtual(engine, log, BUILTIN_PROBES, out, sample_every, 0.0, reasons=True)
    else:
        summary = replay_file(engine, log, BUILTIN_PROBES, out, sample_every, reasons=True)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary, engine


def _moving(clean: list[dict[str, Any]], t: float) -> bool:
    current = None
    for line in clean:
        if line["t"] > t:
            break
        current = line
    return current is not None and current["driving_state"] == "moving"


def run_fault(drive: Path, clean: list[dict[str, Any]], case: FaultCase, out: Path) -> FaultRun:
    """Inject ``case`` into ``drive`` (writing ``out``), replay it and compare with ``clean``."""
    injector = Injector([parse_fault(case.spec)], load_profile(DEMO_VEHICLE))
    write_frames(out, injector.run(read_log(drive, on_error=None)))
    lines, summary, engine = replay_timeline(out)
    locked = sum(
        1
        for line in lines
        if any(line["decisions"][p] == "allow" for p in LOCKED_WHILE_DRIVING) and _moving(clean, line["t"])
    )
    return FaultRun(
        case,
        injector.changed[case.spec],
        lines,
        summary,
        engine.counters,
        compare_timelines(clean, lines),
        locked,
    )
