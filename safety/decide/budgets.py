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
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safety.model.decision import Decision, Outcome
from safety.model.request import REQUEST_FIELDS
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
    """A queued request that became deliverable (with its new decision) or expired.

    ``owner`` is who queued it (see :meth:`DeferralQueue.hold`): its event is for that owner
    alone, so it is not part of :meth:`to_dict` (what goes on the wire).
    """

    request_id: str
    kind: str  # "deliverable" | "expired"
    time: float
    decision: Decision | None = None
    owner: Hashable = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "time": self.time,
            "decision": None if self.decision is None else self.decision.to_dict(),
        }


@dataclass(frozen=True)
class DeferralLimits:
    """What the deferral queue holds at most; past a limit a request is decided, not queued."""

    per_owner: int = 64  # entries one owner (a client) may have queued
    total: int = 1024  # entries in all
    max_ttl_ms: int = 600_000  # how long one may be kept (10 min)
    max_text_chars: int = 4096  # characters in a request's string fields (its text, id, app, task)


QUEUED = " (queued until deliverable or expired)"
_FREE_TEXT = tuple(name for name, spec in REQUEST_FIELDS.items() if spec.kind == "string")  # id, app, text, task_id


@dataclass
class DeferralQueue:
    """Deferred requests kept until deliverable or expired, by (owner, request id).

    The owner is whoever asked (the decision service passes the peer's identity; in process it
    is None unless the caller says): one owner's request never replaces, and is never reported
    to, another's, whatever ids they choose.  Bounded by :class:`DeferralLimits`.
    """

    limits: DeferralLimits = field(default_factory=DeferralLimits)
    pending: dict[tuple[Hashable, str], tuple[dict[str, Any], float]] = field(default_factory=dict)
    expired_count: int = 0
    delivered_count: int = 0
    refused_count: int = 0
    _per_owner: dict[Hashable, int] = field(default_factory=dict)

    def hold(self, request: Mapping[str, Any], now: float | None, owner: Hashable = None) -> str:
        """Queue a deferred ``request`` (one with ``id`` and ``ttl_ms``) for ``owner``.

        Returns what to add to the decision's reason: ``""`` when there is nothing to queue,
        :data:`QUEUED`, or why it was not queued (a limit).
        """
        request_id, ttl = request.get("id"), request.get("ttl_ms")
        if request_id is None or ttl is None or now is None:
            return ""
        limits = self.limits
        key = (owner, request_id)
        replacing = key in self.pending
        why = ""
        if ttl > limits.max_ttl_ms:
            why = f"ttl_ms {ttl} is over the {limits.max_ttl_ms} ms a request may be queued"
        elif (chars := sum(len(v) for f in _FREE_TEXT if type(v := request.get(f)) is str)) > limits.max_text_chars:
            why = f"the request holds {chars} characters of text; at most {limits.max_text_chars} are queued"
        elif not replacing and self._per_owner.get(owner, 0) >= limits.per_owner:
            why = f"this client has {limits.per_owner} requests queued, its limit"
        elif not replacing and len(self.pending) >= limits.total:
            why = f"the queue holds {limits.total} requests, its limit"
        if why:
            self.refused_count += 1
            return f" (not queued: {why})"
        if not replacing:
            self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
        self.pending[key] = (dict(request), now + ttl / 1000.0)
        return QUEUED

    def _drop(self, key: tuple[Hashable, str]) -> None:
        del self.pending[key]
        owner = key[0]
        left = self._per_owner[owner] - 1
        if left:
            self._per_owner[owner] = left
        else:
            del self._per_owner[owner]

    def next_deadline(self) -> float | None:
        """When the first queued request expires (None when the queue is empty)."""
        return min((entry[1] for entry in self.pending.values()), default=None)

    def release(
        self,
        now: float,
        permitted: Callable[[Mapping[str, Any]], bool],
        deliver: Callable[[Mapping[str, Any], Hashable], Decision],
    ) -> list[DeferredEvent]:
        """Re-decide every queued request at ``now``, oldest deadline first.

        ``permitted`` is asked first (a verdict: no budget, no log); only a request it lets go is
        decided for real by ``deliver`` (budgets, decision log, never queued again), so a queue of
        requests that stay deferred costs verdicts only and writes no records.
        """
        events: list[DeferredEvent] = []
        for key, (request, deadline) in sorted(self.pending.items(), key=lambda item: item[1][1]):
            owner, request_id = key
            if now >= deadline:
                self._drop(key)
                self.expired_count += 1
                events.append(DeferredEvent(request_id, "expired", now, owner=owner))
                continue
            if not permitted(request):
                continue
            decision = deliver(request, owner)
            if decision.permitted:
                self._drop(key)
                self.delivered_count += 1
                events.append(DeferredEvent(request_id, "deliverable", now, decision, owner))
        return events
