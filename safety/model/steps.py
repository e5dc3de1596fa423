"""Timelines (the lines ``drivegate replay`` writes) as step functions: each line holds until the
next, so several timelines of one drive are compared at every time any of them changes (what-if,
fleet rows, fault injection)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Line = Mapping[str, Any]


def aligned(*timelines: Sequence[Line]) -> Iterator[tuple[float, tuple[Line, ...]]]:
    """``(t, lines)`` at every time a line of any timeline starts, with the line of each in force
    then; from the first time every timeline has begun."""
    times = sorted({line["t"] for timeline in timelines for line in timeline})
    index = [-1] * len(timelines)
    for t in times:
        for k, timeline in enumerate(timelines):
            while index[k] + 1 < len(timeline) and timeline[index[k] + 1]["t"] <= t:
                index[k] += 1
        if min(index) >= 0:
            yield t, tuple(timeline[i] for timeline, i in zip(timelines, index, strict=True))
