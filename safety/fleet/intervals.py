"""Decision intervals: a replay's timeline as rows, one per probe and span of the same decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safety.model.steps import Line, aligned


def decision_rows(
    log: str, lines: Sequence[Line], end: float, other: Sequence[Line] | None = None
) -> list[dict[str, Any]]:
    """One row per probe and maximal span where its outcome and deciding rules (and, with
    ``other``, the other policy's outcome) stay the same.

    ``lines`` is a timeline written with rules (each line holds until the next); ``other`` the
    other policy's timeline of the same drive and probes; ``end`` the drive's last time (the
    last span ends there).  Rows: ``log``, ``probe``, ``start``, ``end``, ``outcome``,
    ``rules``, ``other_outcome`` (None without ``other``), in order of probe, then start.
    """
    spans: dict[str, list[Any]] = {}  # probe -> [start, outcome, rules, other outcome]
    rows: list[dict[str, Any]] = []

    def close(probe: str, at: float) -> None:
        start, outcome, rules, other_outcome = spans.pop(probe)
        rows.append(
            {
                "log": log,
                "probe": probe,
                "start": start,
                "end": at,
                "outcome": outcome,
                "rules": list(rules),
                "other_outcome": other_outcome,
            }
        )

    for t, current_lines in aligned(lines, *([other] if other is not None else [])):
        line = current_lines[0]
        for probe, outcome in line["decisions"].items():
            rules = tuple(line["rules"][probe])
            other_outcome = current_lines[1]["decisions"].get(probe) if other is not None else None
            key = [outcome, rules, other_outcome]
            current = spans.get(probe)
            if current is not None and current[1:] == key:
                continue
            if current is not None:
                close(probe, t)
            spans[probe] = [t, *key]
    for probe in list(spans):
        close(probe, max(end, spans[probe][0]))
    rows.sort(key=lambda row: (row["probe"], row["start"]))
    return rows
