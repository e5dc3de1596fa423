"""Deferrals over a replayed drive: what the engine's deferral queue would have done with a probe.

A probe is a request the assistant keeps asking.  Where the policy defers it, the assistant
queues it with a time to live (``ttl_ms``, as ``Engine.decide`` queues a deferred request);
the queue re-decides it at every change and it is *released* (deliverable) at the first change
where the probe may go ahead (allow or degrade) before its deadline, else *expired* at the
deadline, exactly as :class:`~safety.decide.budgets.DeferralQueue` orders the two (a release
due at the deadline itself is an expiry).  While one is queued, a new defer queues nothing.
A deferral still queued when the drive ends is *pending*.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safety.model.steps import Line

#: The time to live of a probe that gives none (``ttl_ms``): a minute, as a chat message might wait.
DEFAULT_TTL_S = 60.0

_PERMITTED = frozenset({"allow", "degrade"})


def probe_ttl_s(probe: Mapping[str, Any]) -> float:
    """The time to live, in seconds, a deferral of ``probe`` is queued with (its ``ttl_ms``, else
    :data:`DEFAULT_TTL_S`)."""
    ttl_ms = probe.get("ttl_ms")
    return DEFAULT_TTL_S if ttl_ms is None else float(ttl_ms) / 1000.0


@dataclass
class Deferrals:
    """One probe's deferrals over one drive."""

    queued: int = 0
    released: int = 0
    expired: int = 0
    pending: int = 0
    waits: list[float] = field(default_factory=list)  # seconds from queued to released, each

    @property
    def median_wait(self) -> float | None:
        return statistics.median(self.waits) if self.waits else None


def deferrals(lines: Sequence[Line], probe: str, ttl_s: float, end: float | None = None) -> Deferrals:
    """The deferrals of ``probe`` over a timeline (each line holds until the next; the drive ends
    at ``end``, default the last line's time)."""
    found = Deferrals()
    queued_at: float | None = None
    for line in lines:
        t, outcome = line["t"], line["decisions"][probe]
        if queued_at is not None:
            deadline = queued_at + ttl_s
            if t >= deadline:
                found.expired += 1
                queued_at = None
            elif outcome in _PERMITTED:
                found.released += 1
                found.waits.append(t - queued_at)
                queued_at = None
        if queued_at is None and outcome == "defer":
            found.queued += 1
            queued_at = t
    if queued_at is not None:
        last = lines[-1]["t"] if end is None else end
        if last >= queued_at + ttl_s:
            found.expired += 1
        else:
            found.pending += 1
    return found
