"""Comparing a faulty replay's timeline with the clean one: where it is looser, when it recovers.

Timelines are the JSONL lines ``drivegate replay`` writes (dicts with ``t``, ``driving_state``,
``workload`` and ``decisions``).  Each line holds until the next, so two timelines are compared
as step functions at every time either of them changes (:func:`safety.model.steps.aligned`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safety.model.decision import Outcome
from safety.model.steps import Line, aligned

__all__ = ["Loosening", "TimelineDifference", "compare_timelines"]


@dataclass(frozen=True)
class Loosening:
    """A time where the faulty timeline decided a probe less restrictively than the clean one."""

    t: float
    probe: str
    clean: str
    faulty: str


@dataclass
class TimelineDifference:
    """How a faulty timeline differs from the clean one."""

    looser: list[Loosening] = field(default_factory=list)  # must stay empty: fail closed
    first_difference: float | None = None  # the first time they differ (None: never)
    equal_again: float | None = None  # from this time on they agree to the end (None: never differed)
    stricter_seconds: dict[str, float] = field(default_factory=dict)  # per probe, time more restrictive


def _view(line: Line) -> tuple[Any, Any, Mapping[str, str]]:
    return line.get("driving_state"), line.get("workload"), line.get("decisions", {})


def compare_timelines(clean: Sequence[Line], faulty: Sequence[Line]) -> TimelineDifference:
    """Compare two timelines of the same drive (same probes) at every change of either."""
    result = TimelineDifference()
    steps = list(aligned(clean, faulty))
    differing = False
    for k, (t, (clean_line, faulty_line)) in enumerate(steps):
        a, b = _view(clean_line), _view(faulty_line)
        span = (steps[k + 1][0] - t) if k + 1 < len(steps) else 0.0
        for probe, outcome in a[2].items():
            other = b[2].get(probe)
            if other is None:
                continue
            clean_rank, faulty_rank = Outcome(outcome).rank, Outcome(other).rank
            if faulty_rank < clean_rank:
                result.looser.append(Loosening(t, probe, outcome, other))
            elif faulty_rank > clean_rank:
                result.stricter_seconds[probe] = result.stricter_seconds.get(probe, 0.0) + span
        if a != b:
            if result.first_difference is None:
                result.first_difference = t
            differing = True
        elif differing:
            result.equal_again = t
            differing = False
    if differing:
        result.equal_again = None  # still different at the end
        if result.first_difference is not None:
            result.equal_again = float("inf")
    return result
