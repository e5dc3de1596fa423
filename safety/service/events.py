"""Push events: what a subscriber is told when the state or the restrictions change.

:class:`Watcher` looks at the engine at the live clock's time (on every tick of the server's
loop) and turns changes into event objects, in a fixed order within one look: ``policy``,
``stale``, ``driving_state``, ``workload``, ``restrictions``, ``deferred``.  Restrictions are
the outcomes of the built-in probe set (``safety.replay.timeline.BUILTIN_PROBES``), asked as verdicts
(:meth:`safety.engine.engine.EngineView.verdict`): the rules only, so probes never count against the
run-time budgets, never queue, and never fill the decision log.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from safety.client.protocol import PROTOCOL_VERSION
from safety.engine.engine import Engine, EngineView
from safety.replay.timeline import BUILTIN_PROBES


class Watcher:
    """Turns changes of the engine's state into events; one per service, used on the loop only."""

    def __init__(self, engine: Engine, probes: Iterable[Mapping[str, Any]] = BUILTIN_PROBES) -> None:
        self.engine = engine
        self.probes = [dict(p) for p in probes]
        self.seq = 0
        self.time: float | None = None
        self.driving_state: str | None = None
        self.workload: str | None = None
        self.restrictions: dict[str, str] = {}
        self.stale: list[str] = []
        self.unknown: dict[str, str] = {}
        self.policy_hash = engine.policy.hash
        self._view: EngineView | None = None
        self._checked = False
        self.owned: list[tuple[Hashable, dict[str, Any]]] = []  # deferred events, each for one owner

    def _event(self, name: str, /, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"v": PROTOCOL_VERSION, "event": name, "seq": self.seq, "time": self.time, **fields}

    def snapshot_event(self) -> dict[str, Any]:
        """Everything a new subscriber needs to start from (sent right after ``subscribe``)."""
        return self._event(
            "snapshot",
            driving_state=self.driving_state,
            workload=self.workload,
            restrictions=dict(self.restrictions),
            stale=list(self.stale),
            unknown=dict(self.unknown),
            policy_hash=self.policy_hash,
        )

    def heartbeat_event(self) -> dict[str, Any]:
        return self._event("heartbeat")

    def shutdown_event(self) -> dict[str, Any]:
        return self._event("shutdown")

    def check(self, now: float | None) -> list[dict[str, Any]]:
        """Events for what changed since the last check, at time ``now`` (None before any frame).

        The first check only takes the baseline (a subscriber starts from ``snapshot``).
        """
        engine = self.engine
        self.time = now
        if now is None and self._checked and engine.policy.hash == self.policy_hash:
            return []  # no frame yet and the same policy: nothing can have changed
        # One read of the state values and the policy in force (the same consistent read
        # decide() makes), so a reload in between cannot pair an old state with a new policy.
        view = engine.view(now)
        if self._checked and view.unchanged_since(self._view):
            return self._release_deferred(now, False)
        policy, values = view.policy, view.values
        snap = engine.state(now)
        stale = sorted(name for name, why in snap.unknown.items() if why.startswith("stale"))
        unknown = dict(sorted(snap.unknown.items()))
        driving, workload = values.get("driving_state"), values.get("workload")
        restrictions = {str(p["id"]): view.verdict(p).outcome.value for p in self.probes}
        events: list[dict[str, Any]] = []
        if self._checked:
            if policy.hash != self.policy_hash:
                events.append(
                    self._event("policy", policy_hash=policy.hash, policy_name=policy.name, previous=self.policy_hash)
                )
            if stale != self.stale:
                events.append(self._event("stale", signals=stale, unknown=unknown))
            if driving != self.driving_state:
                events.append(self._event("driving_state", value=driving, previous=self.driving_state))
            if workload != self.workload:
                events.append(self._event("workload", value=workload, previous=self.workload))
            if restrictions != self.restrictions:
                diff = {
                    probe: {"from": self.restrictions.get(probe), "to": outcome}
                    for probe, outcome in restrictions.items()
                    if self.restrictions.get(probe) != outcome
                }
                events.append(self._event("restrictions", restrictions=restrictions, changed=diff))
        self._checked = True
        self._view = view
        self.policy_hash = policy.hash
        self.stale, self.unknown = stale, unknown
        self.driving_state, self.workload, self.restrictions = driving, workload, restrictions
        return events + self._release_deferred(now, True)

    def _release_deferred(self, now: float | None, changed: bool) -> list[dict[str, Any]]:
        """Re-decide the queue; its ``deferred`` events go to :attr:`owned`, never into the broadcast.

        The queue is re-decided only when the state changed or a deadline passed (a re-decision
        is a verdict per entry; only a delivered one is decided for real and logged).
        """
        queue = self.engine.deferred
        if not queue.pending or now is None:
            return []
        deadline = queue.next_deadline()
        if not changed and (deadline is None or now < deadline):
            return []
        for ev in self.engine.release_deferred(now):
            event = self._event(
                "deferred",
                request_id=ev.request_id,
                kind=ev.kind,
                decision=None if ev.decision is None else ev.decision.to_dict(),
            )
            self.owned.append((ev.owner, event))
        return []

    def take_owned(self) -> list[tuple[Hashable, dict[str, Any]]]:
        """The ``deferred`` events since the last call, each with the owner it is for alone."""
        owned, self.owned = self.owned, []
        return owned
