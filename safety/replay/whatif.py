"""What-if over recorded drives: where two policies decide differently on real driving.

``lint --compare`` compares two policies over the whole state space; a what-if compares them
where cars actually were.  Each drive is replayed once per policy (the columnar replay, each
policy with its own state thresholds, exactly as ``drivegate replay`` would); the two
timelines are step functions (a line holds until the next), compared at every time either
changes.  For each probe the intervals where the outcomes differ are kept, with the state at
their start, and totalled by direction (NEW looser: less restrictive, or stricter), probe and
outcome pair, also as minutes per hour of log time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safety.engine.engine import Engine
from safety.model.decision import Outcome
from safety.model.steps import Line, aligned
from safety.replay.columnar import timeline_lines
from safety.replay.timeline import ReplaySummary

LOOSER, STRICTER = "looser", "stricter"


@dataclass(frozen=True)
class Interval:
    """A time span of one drive where NEW decides a probe differently from OLD."""

    log: str
    probe: str
    start: float
    end: float  # equal to start for a difference at one instant (the drive's last time)
    old: str
    new: str
    direction: str  # "looser": NEW is less restrictive; "stricter": more
    state: Mapping[str, Any]  # at the start: speed, gear, steering_angle, driving_state, workload (NEW's; old_* OLD's)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 6), "state": dict(self.state)}


@dataclass
class DriveComparison:
    """One drive: its length, and where the policies differ."""

    log: str
    seconds: float
    intervals: list[Interval] = field(default_factory=list)
    old_summary: ReplaySummary | None = None
    new_summary: ReplaySummary | None = None


@dataclass
class WhatIf:
    """Every drive compared, and the totals."""

    drives: list[DriveComparison] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(d.seconds for d in self.drives)

    @property
    def intervals(self) -> list[Interval]:
        return [i for d in self.drives for i in d.intervals]

    @property
    def looser(self) -> bool:
        """Whether NEW decides less restrictively than OLD anywhere, even for an instant."""
        return any(i.direction == LOOSER for i in self.intervals)

    def totals(self) -> dict[str, dict[str, dict[str, float]]]:
        """direction -> probe -> "old -> new" -> seconds."""
        out: dict[str, dict[str, dict[str, float]]] = {LOOSER: {}, STRICTER: {}}
        for i in self.intervals:
            pairs = out[i.direction].setdefault(i.probe, {})
            pair = f"{i.old} -> {i.new}"
            pairs[pair] = pairs.get(pair, 0.0) + i.seconds
        return out

    def per_hour(self, seconds: float) -> float:
        """``seconds`` as minutes per hour of the drives' log time."""
        return seconds / 60.0 / (self.seconds / 3600.0) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        totals = self.totals()
        return {
            "drives": [{"log": d.log, "seconds": round(d.seconds, 6), "intervals": len(d.intervals)} for d in self.drives],
            "seconds": round(self.seconds, 6),
            "looser": self.looser,
            "totals": {
                direction: {
                    probe: {
                        pair: {"seconds": round(s, 6), "minutes_per_hour": round(self.per_hour(s), 6)}
                        for pair, s in sorted(pairs.items())
                    }
                    for probe, pairs in sorted(by_probe.items())
                }
                for direction, by_probe in totals.items()
            },
        }


def compare_drive(log: str, old: Sequence[Line], new: Sequence[Line], end: float) -> list[Interval]:
    """The intervals where ``new`` decides a probe differently from ``old`` (two timelines of the
    same drive and probes), up to ``end`` (the drive's last time)."""
    open_: dict[str, tuple[float, str, str, Mapping[str, Any]]] = {}  # probe -> (start, old, new, state)
    out: list[Interval] = []

    def close(probe: str, at: float) -> None:
        start, a, b, state = open_.pop(probe)
        direction = LOOSER if Outcome(b).rank < Outcome(a).rank else STRICTER
        out.append(Interval(log, probe, start, at, a, b, direction, state))

    for t, (a, b) in aligned(old, new):
        here = b if b["t"] == t else a  # the line written at t: its values are those at t
        for probe, outcome in b["decisions"].items():
            before = a["decisions"].get(probe)
            current = open_.get(probe)
            if current is not None and (current[1], current[2]) != (before, outcome):
                close(probe, t)
            if before is not None and before != outcome and probe not in open_:
                state = {
                    "speed": here.get("speed"),
                    "gear": here.get("gear"),
                    "steering_angle": here.get("steering_angle"),
                    "driving_state": b.get("driving_state"),
                    "workload": b.get("workload"),
                    "old_driving_state": a.get("driving_state"),
                    "old_workload": a.get("workload"),
                }
                open_[probe] = (t, before, outcome, state)
    for probe in list(open_):
        close(probe, max(end, open_[probe][0]))
    out.sort(key=lambda interval: (interval.start, interval.probe))
    return out


def what_if(
    vehicle: str | Path,
    old_policy: str | Path,
    new_policy: str | Path,
    logs: Sequence[str | Path],
    probes: Sequence[Mapping[str, Any]],
    *,
    progress: Callable[[int, str], None] | None = None,
) -> WhatIf:
    """Replay every log under both policies (a fresh engine each) and compare them
    (``progress(i, log)`` is called before the i-th log)."""
    result = WhatIf()
    Engine.load(vehicle, old_policy)  # both load, or the error says which before any replay
    Engine.load(vehicle, new_policy)
    for n, log in enumerate(logs):
        if progress is not None:
            progress(n, str(log))
        old_lines, old_summary = timeline_lines(Engine.load(vehicle, old_policy), log, probes)
        new_lines, new_summary = timeline_lines(Engine.load(vehicle, new_policy), log, probes)
        first, last = old_summary.first_time, old_summary.last_time
        seconds = 0.0 if first is None or last is None else last - first
        intervals = compare_drive(str(log), old_lines, new_lines, last if last is not None else 0.0)
        result.drives.append(DriveComparison(str(log), seconds, intervals, old_summary, new_summary))
    return result


def write_results(result: WhatIf, directory: Path) -> None:
    """``intervals.jsonl`` (one line per interval) and ``summary.json`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "intervals.jsonl").open("w", encoding="utf-8") as f:
        for interval in result.intervals:
            f.write(json.dumps(interval.to_dict(), separators=(", ", ": ")) + "\n")
    (directory / "summary.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")


def format_report(result: WhatIf, old_name: str, new_name: str, *, examples: int = 10) -> str:
    """The text a reviewer reads: looser first (with examples), then stricter, then per drive."""
    hours = result.seconds / 3600.0
    lines = [f"whatif: {old_name} -> {new_name}: {len(result.drives)} drive(s), {result.seconds:.1f} s ({hours:.3f} h) of log time"]
    totals = result.totals()
    for direction in (LOOSER, STRICTER):
        found = [i for i in result.intervals if i.direction == direction]
        title = "NEW IS LOOSER" if direction == LOOSER else "NEW is stricter"
        if not found:
            lines.append(f"{title}: nowhere" if direction == LOOSER else "NEW is stricter: nowhere")
            continue
        lines.append(f"{title} in {len(found)} interval(s); per probe and outcome pair (min/h: per hour of log time):")
        for probe, pairs in sorted(totals[direction].items()):
            for pair, s in sorted(pairs.items()):
                lines.append(f"  {probe}: {pair}: {s:.1f} s ({result.per_hour(s):.2f} min/h)")
        for i in found[:examples]:
            st = i.state
            lines.append(
                f"  e.g. {i.log} t={i.start:.3f}..{i.end:.3f} ({i.seconds:.2f} s) {i.probe} {i.old} -> {i.new}: "
                f"speed {st['speed']}, gear {st['gear']}, driving state {st['driving_state']}, workload {st['workload']}"
            )
        if len(found) > examples:
            lines.append(f"  ... and {len(found) - examples} more (--out DIR writes them all)")
    for drive in result.drives:
        looser = sum(1 for i in drive.intervals if i.direction == LOOSER)
        lines.append(
            f"drive {drive.log}: {drive.seconds:.1f} s, {len(drive.intervals)} differing interval(s), {looser} looser"
        )
    return "\n".join(lines)
