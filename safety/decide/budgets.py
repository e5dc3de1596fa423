"""Run-time interaction budgets and the deferral queue: the stateful part of deciding.

Rules are stateless (state + request -> outcome).  Some limits need memory across
requests, and are applied after the rules, only ever making a decision stricter:

* the NHTSA glance budget: while not parked, a visual step whose estimated glance is
  longer than the single-glance budget (2 s), or that would take its task past the task
  budget (12 s eyes-off-road), is read aloud instead; cumulative time resets when parked;
* a notification rate limit while not parked: past ``max`` per ``window_s`` the rest are
  deferred until the window has room (critical priority is exempt);
* the deferral queue: a deferred request that carries ``ttl_ms`` (and an ``id``) is kept;
  ``release`` re-decides the queue and reports which requests became deliverable and
  which expired (dropped and counted).  Volvo IDIS holds for seconds; Android Automotive
  has no deferral at all.

Time comes from the caller's ``now`` only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safety.model.decision import Decision, Outcome
from safety.model.rules import GLANCE_RULE, RATE_RULE, TASK_RULE
from safety.policy.model import Budgets


@dataclass(frozen=True)
class Adjustment:
    """How a budget changed a decision."""

    outcome: Outcome
    rule: str
    reason: str
    constraints: Mapping[str, Any]


@dataclass
class BudgetTracker:
    """Glance time per task and notification times; one per Engine, guarded by its lock."""

    config: Budgets
    task_seconds: dict[str, float] = field(default_factory=dict)
    notification_times: deque[float] = field(default_factory=deque)

    def check(
        self,
        request: Mapping[str, Any],
        outcome: Outcome,
        constraints: Mapping[str, Any],
        driving_state: str | None,
        now: float | None,
    ) -> Adjustment | None:
        """Apply the budgets to a permitted decision; record what it consumes."""
        cfg = self.config
        if driving_state == "parked":
            # NHTSA ties its limits to driving: parked resets every task's eyes-off-road time.
            self.task_seconds.clear()
            return None
        if outcome not in (Outcome.ALLOW, Outcome.DEGRADE) or now is None:
            return None
        if cfg.rate_max is not None and request.get("kind") == "notification" and request.get("priority") != "critical":
            times = self.notification_times
            while times and times[0] <= now - cfg.rate_window_s:
                times.popleft()
            if len(times) >= cfg.rate_max:
                wait_ms = max(1, round((times[0] + cfg.rate_window_s - now) * 1000))
                return Adjustment(
                    Outcome.DEFER,
                    RATE_RULE,
                    f"notification rate budget: {cfg.rate_max} per {cfg.rate_window_s:g} s while driving"
                    + (f" ({cfg.rate_ref})" if cfg.rate_ref else ""),
                    {"retry_after_ms": wait_ms, "until": "the notification budget has room"},
                )
            times.append(now)
        visual = request.get("modality") == "visual" and constraints.get("modality") not in ("voice", "audio")
        glance_ms = request.get("glance_ms")
        if not visual or glance_ms is None:
            return None
        glance = glance_ms / 1000.0
        ref = f" ({cfg.glance_ref})" if cfg.glance_ref else ""
        if cfg.glance_single_s is not None and glance > cfg.glance_single_s:
            return Adjustment(
                Outcome.DEGRADE,
                GLANCE_RULE,
                f"a {glance:g} s glance exceeds the single-glance budget of {cfg.glance_single_s:g} s; "
                f"read aloud instead{ref}",
                {**constraints, "modality": "voice"},
            )
        task = request.get("task_id")
        if task is not None and cfg.glance_task_s is not None:
            spent = self.task_seconds.get(task, 0.0)
            if spent + glance > cfg.glance_task_s:
                return Adjustment(
                    Outcome.DEGRADE,
                    TASK_RULE,
                    f"task '{task}' would take {spent + glance:g} s of eyes-off-road time, over the "
                    f"budget of {cfg.glance_task_s:g} s; read aloud instead{ref}",
                    {**constraints, "modality": "voice"},
                )
            self.task_seconds[task] = spent + glance
        return None


@dataclass(frozen=True)
class DeferredEvent:
    """A queued request that became deliverable (with its new decision) or expired."""

    request_id: str
    kind: str  # "deliverable" | "expired"
    time: float
    decision: Decision | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "time": self.time,
            "decision": None if self.decision is None else self.decision.to_dict(),
        }


@dataclass
class DeferralQueue:
    """Deferred requests kept until deliverable or expired (by request id)."""

    pending: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    expired_count: int = 0
    delivered_count: int = 0

    def hold(self, request: Mapping[str, Any], now: float | None) -> bool:
        request_id, ttl = request.get("id"), request.get("ttl_ms")
        if request_id is None or ttl is None or now is None:
            return False
        self.pending[request_id] = (dict(request), now + ttl / 1000.0)
        return True

    def release(self, now: float, decide: Callable[[Mapping[str, Any]], Decision]) -> list[DeferredEvent]:
        """Re-decide every queued request at ``now``, oldest deadline first."""
        events: list[DeferredEvent] = []
        for request_id, (request, deadline) in sorted(self.pending.items(), key=lambda item: item[1][1]):
            if now >= deadline:
                del self.pending[request_id]
                self.expired_count += 1
                events.append(DeferredEvent(request_id, "expired", now))
                continue
            decision = decide(request)
            if decision.permitted:
                del self.pending[request_id]
                self.delivered_count += 1
                events.append(DeferredEvent(request_id, "deliverable", now, decision))
        return events
