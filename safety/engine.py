"""The Engine: frames in, decisions out.  The in-process API of DriveGate.

Thread safety: frames may arrive on a bus thread (``can.Notifier(bus, [engine.on_frame])``)
while decisions are asked from others; one lock guards the vehicle state.

Fail closed: ``decide`` never raises and never allows on error.  A malformed request, an
unknown field or value, or an internal error gives ``deny`` with a reason naming it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import can

from .decision import Decision, Outcome
from .evaluate import Evaluator, RuleTrace
from .frames import FrameDecoder
from .policy import CompiledPolicy, load_policy
from .profile import VehicleProfile, load_profile
from .request import validate_request
from .state import StateSnapshot, VehicleState

INVALID_REQUEST_RULE = "request-invalid"
INTERNAL_ERROR_RULE = "internal-error"


class Engine:
    """Decides, from the vehicle state, what the assistant may do right now.

    Build it with :meth:`Engine.load`; feed it frames with :meth:`on_frame`; ask it with
    :meth:`decide`.  Time comes from the frames (or the caller's ``now``), never from a
    clock, so a replay gives the same decisions every time.
    """

    def __init__(self, profile: VehicleProfile, policy: CompiledPolicy) -> None:
        self.profile = profile
        self.policy = policy
        self._lock = threading.Lock()
        self._state = VehicleState(
            profile.max_ages(),
            policy.state_config,
            watch=policy.thresholds,
            watch_values=policy.watched_values,
        )
        self._decoder = FrameDecoder(profile, self._state.update)
        self._evaluator = Evaluator(policy)
        self.frames_seen = 0
        self.frames_ignored = 0  # error and remote frames
        self._snap_values: Mapping[str, Any] | None = None
        self._snap_changes = -1
        self._snap_now = -math.inf
        self.warnings = tuple(
            f"policy workload trigger on '{t.signal}' is ignored: the vehicle profile does not provide it"
            for t in policy.state_config.triggers
            if not self._state.provides(t.signal)
        )

    @classmethod
    def load(cls, vehicle: str | Path, policy: str | Path) -> Engine:
        """Load a vehicle profile (and its DBC) and a policy.  Raises ``LoadError`` listing every problem."""
        return cls(load_profile(vehicle), load_policy(policy))

    # ------------------------------------------------------------------ input
    def on_frame(self, msg: can.Message) -> None:
        """Take one frame from a python-can bus or log.  Never raises on bad frames."""
        if msg.is_error_frame or msg.is_remote_frame:
            self.frames_ignored += 1
            return
        try:
            timestamp = float(msg.timestamp)
            data = bytes(msg.data)
        except (TypeError, ValueError):
            self.frames_ignored += 1
            return
        channel = msg.channel if isinstance(msg.channel, str) else None
        with self._lock:
            self.frames_seen += 1
            self._decoder.feed(timestamp, msg.arbitration_id, data, channel)

    __call__ = on_frame  # so an Engine is itself a python-can MessageRecipient

    @property
    def frames_decoded(self) -> int:
        return self._decoder.frames_decoded

    # ------------------------------------------------------------------ decisions
    def decide(self, request: Mapping[str, Any], now: float | None = None, *, explain: bool = False) -> Decision:
        """Decide one request at time ``now`` (default: the latest frame's time).

        Never raises: a malformed request or an internal error gives ``deny``.
        With ``explain=True`` the reason lists every rule's result.
        """
        request_id = _request_id(request)
        try:
            problem = validate_request(request)
            values, state_time = self._values(now)
            if problem is not None:
                return Decision(
                    Outcome.DENY,
                    (INVALID_REQUEST_RULE,),
                    f"invalid request: {problem.message}",
                    {"field": problem.location.field},
                    self.policy.hash,
                    state_time,
                    request_id,
                )
            if explain:
                trace: list[RuleTrace] = []
                verdict = self._evaluator.evaluate(values, request, trace)
                shown = {True: "holds", False: "does not hold", None: "unknown (may hold)"}
                lines = [
                    f"{t.rule}: {shown[t.result]} -> {t.outcome.value}{' (exception)' if t.exception else ''}"
                    for t in trace
                ]
                reason = verdict.reason + "\n" + "\n".join(lines)
            else:
                verdict = self._evaluator.verdict(values, request)
                reason = verdict.reason
            return Decision(
                verdict.outcome,
                verdict.rules,
                reason,
                verdict.constraints,
                self.policy.hash,
                state_time,
                request_id,
            )
        except Exception as exc:  # fail closed: an error while deciding is never an allow
            return Decision(
                Outcome.DENY,
                (INTERNAL_ERROR_RULE,),
                f"internal error while deciding ({exc!r}); denied",
                {},
                self.policy.hash,
                None,
                request_id,
            )

    def _values(self, now: float | None) -> tuple[Mapping[str, Any], float | None]:
        """State values at ``now`` for the evaluator; reused while no decision-relevant change happened."""
        state = self._state
        with self._lock:
            if now is None:
                now = state.latest_time
            if now is None:
                return state.snapshot(None).values, None
            if now >= self._snap_now:
                state.expire(now)
                if state.changes == self._snap_changes and self._snap_values is not None:
                    self._snap_now = now
                    return self._snap_values, now
                values = state.snapshot(now).values
                self._snap_values, self._snap_changes, self._snap_now = values, state.changes, now
                return values, now
            # A ``now`` earlier than one already asked: compute afresh, leave the cache alone.
            return state.snapshot(now).values, now

    def state(self, now: float | None = None) -> StateSnapshot:
        """The vehicle state at ``now`` (default: the latest frame's time)."""
        with self._lock:
            return self._state.snapshot(now)

    @property
    def counters(self) -> dict[str, Any]:
        """Implausible and invalid sample counts per signal, and frame counts."""
        with self._lock:
            return {
                "frames_seen": self.frames_seen,
                "frames_decoded": self._decoder.frames_decoded,
                "frames_ignored": self.frames_ignored,
                "implausible": dict(self._state.counters.implausible),
                "invalid": dict(self._state.counters.invalid),
            }


def _request_id(request: Any) -> str | None:
    if isinstance(request, Mapping):
        rid = request.get("id")
        if isinstance(rid, str):
            return rid
    return None
