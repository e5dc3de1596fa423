"""The Engine: frames in, decisions out.  The in-process API of DriveGate.

Thread safety: frames may arrive on a bus thread (``can.Notifier(bus, [engine.on_frame])``)
while decisions are asked from others; one lock guards the vehicle state.

Fail closed: ``decide`` never raises and never allows on error.  A malformed request, an
unknown field or value, or an internal error gives ``deny`` with a reason naming it.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import can
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safety.audit.decisionlog import DecisionLog
from safety.decide.budgets import DeferralQueue, DeferredEvent
from safety.decide.explain import Explanation
from safety.decide.pipeline import DecisionPipeline, bad_now, internal_error, request_id_of
from safety.engine.gate import PolicyCheck, load_gated_policy, reload_checks
from safety.errors import PolicyCheckError
from safety.model.decision import Decision, Outcome
from safety.model.rules import INTERNAL_ERROR_RULE
from safety.policy import CompiledPolicy
from safety.vehicle.frames import FrameDecoder
from safety.vehicle.profile import VehicleProfile, load_profile
from safety.vehicle.state import StateSnapshot, VehicleState


class Engine:
    """Decides, from the vehicle state, what the assistant may do right now.

    Build it with :meth:`Engine.load`; feed it frames with :meth:`on_frame`; ask it with
    :meth:`decide`.  Time comes from the frames (or the caller's ``now``), never from a
    clock, so a replay gives the same decisions every time.
    """

    def __init__(
        self,
        profile: VehicleProfile,
        policy: CompiledPolicy,
        *,
        decision_log: DecisionLog | None = None,
        ids: Callable[[], str] | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        fail_closed_on_log_error: bool = False,
    ) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self.frames_seen = 0
        self.frames_ignored = 0  # error and remote frames
        self._decoded_before = 0  # frames decoded by decoders replaced on reload
        self._decoder: FrameDecoder
        self._install(policy, None)
        self._pending: CompiledPolicy | None = None
        self.decision_log = decision_log
        counter = itertools.count(1)
        # Ids and the evaluation-time clock are injected (OPA style) so tests and replays are exact;
        # the clock only measures how long a decision took, it never feeds one.
        self._next_id = ids or (lambda: f"d-{next(counter):08d}")
        self._clock_ns = clock_ns
        self.deferred = DeferralQueue()
        # Off by default: the audit trail failing should not by itself take the assistant away;
        # a deployment whose safety case needs every decision recorded turns it on.
        self.fail_closed_on_log_error = fail_closed_on_log_error

    def _install(self, policy: CompiledPolicy, previous: VehicleState | None) -> None:
        """Make ``policy`` the active one; caller holds the lock (or is the constructor)."""
        if previous is None:
            state = VehicleState(
                self.profile.max_ages(),
                policy.state_config,
                watch=policy.thresholds,
                watch_values=policy.watched_values,
                resolution=self.profile.resolutions(),
                cross_checks=self.profile.cross_checks,
            )
        else:
            state = previous.carry_over(
                policy.state_config, watch=policy.thresholds, watch_values=policy.watched_values
            )
            self._decoded_before += self._decoder.frames_decoded
        self._state = state
        decoder = FrameDecoder(self.profile, state.update, on_rebase=state.rebase)
        if previous is not None:
            decoder.carry_from(self._decoder)
        self._decoder = decoder
        self._pipeline = DecisionPipeline(policy)
        self._snap_values: Mapping[str, Any] | None = None
        self._snap_changes = -1
        self._snap_now = -math.inf
        self.warnings = self.profile.warnings + tuple(
            f"policy workload trigger on '{t.signal}' is ignored: the vehicle profile does not provide it"
            for t in policy.state_config.triggers
            if not state.provides(t.signal)
        )

    @classmethod
    def load(
        cls,
        vehicle: str | Path,
        policy: str | Path,
        *,
        decision_log: str | Path | DecisionLog | None = None,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> Engine:
        """Load a vehicle profile (and its DBC) and a policy.  Raises ``LoadError`` listing every problem.

        With ``trusted_keys`` (see :func:`safety.policy.signing.load_public_keys`) the policy must be
        signed by one of them (``drivegate sign``), else ``SignatureError``; the bytes verified
        are the bytes compiled.
        """
        log = DecisionLog(decision_log) if isinstance(decision_log, str | Path) else decision_log
        return cls(load_profile(vehicle), load_gated_policy(policy, trusted_keys)[0], decision_log=log)

    # ------------------------------------------------------------------ policy changes
    def reload(
        self,
        policy: str | Path | CompiledPolicy,
        *,
        tests: Sequence[str | Path] = (),
        min_coverage: float | None = None,
        checks: Iterable[PolicyCheck] | None = None,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> str:
        """Swap to a new policy atomically; return "active" or "pending".

        The new policy is loaded, linted (its error findings) and its ``tests`` run, with the
        suites the policy names itself (``tests:``; they must pass, covering at least
        ``min_coverage`` percent of its rules); ``checks``
        replaces the lint with checks of the caller's own.  On any failure this raises
        (``LoadError`` or ``PolicyCheckError``) and the old policy stays in force.  Decisions in flight see the
        old or the new policy, never a mix.  A policy with ``activation: {require_parked:
        true}`` is held pending until the car is parked (as Android Automotive stages new
        restrictions).  With ``trusted_keys`` the file must be signed by one of them
        (``SignatureError`` otherwise), and the test suites signed with it must pass too.
        ``cancelled``, asked after the checks, refuses the swap when it says True (a caller
        that gave up waiting).
        """
        if isinstance(policy, CompiledPolicy):
            if trusted_keys is not None:
                raise TypeError("trusted_keys needs the policy's path: a signature covers the file")
            new = policy
        else:
            new, signed_tests = load_gated_policy(policy, trusted_keys)
            tests = [*tests, *signed_tests]
        tests = [*tests, *new.doc.suites]
        problems = [problem for check in reload_checks(checks, tests, min_coverage) for problem in check(new)]
        if self.policy.doc.suites and not new.doc.suites:
            # A file cut short loses what follows the cut: a policy that named its suites and now
            # names none is more likely half-written than meant (keep tests: near the top).
            problems.append(
                "the policy in force names its test suites (tests:) and this one names none: a file cut short? "
                "(write a temporary file and rename it over the policy)"
            )
        if cancelled is not None and cancelled():
            # The caller stopped waiting (its time limit): a result nobody awaits must not swap.
            problems.append("the reload was cancelled (its checks took longer than the caller's time limit)")
        if problems:
            raise PolicyCheckError(new.file, problems)
        with self._lock:
            if new.requires_parked_to_activate and self._state.snapshot(None).driving_state != "parked":
                self._pending = new
                return "pending"
            self._pending = None
            self._install(new, self._state)
            return "active"

    @property
    def policy(self) -> CompiledPolicy:
        """The policy in force (the one its decision pipeline decides with)."""
        return self._pipeline.policy

    @property
    def pending_policy(self) -> CompiledPolicy | None:
        """A policy waiting for the car to be parked, if any."""
        return self._pending

    def _activate_pending(self) -> None:
        # Caller holds the lock.  Cheap unless a policy is pending.
        pending = self._pending
        if pending is not None and self._state.snapshot(None).driving_state == "parked":
            self._pending = None
            self._install(pending, self._state)

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
            self._decoder.feed(timestamp, msg.arbitration_id, data, channel, bool(msg.is_extended_id), bool(msg.is_fd))
            if self._pending is not None:
                self._activate_pending()

    __call__ = on_frame  # so an Engine is itself a python-can MessageRecipient

    @property
    def frames_decoded(self) -> int:
        return self._decoded_before + self._decoder.frames_decoded

    # ------------------------------------------------------------------ decisions
    def decide(
        self, request: Mapping[str, Any], now: float | None = None, *, explain: bool = False, owner: Hashable = None
    ) -> Decision:
        """Decide one request at time ``now`` (default: the latest frame's time).

        Never raises: a malformed request or an internal error gives ``deny``.
        With ``explain=True`` the reason lists every rule's result.  Applies the policy's
        run-time budgets, queues a deferred request that carries ``id`` and ``ttl_ms`` (see
        :meth:`release_deferred`) for ``owner`` (who asks: the decision service passes the
        client's identity, so one client's request ids never touch another's queued requests),
        and writes the decision log when one is configured.
        """
        return self._decide(request, now, explain, owner, queue=True)

    def _decide(
        self, request: Mapping[str, Any], now: float | None, explain: bool, owner: Hashable, *, queue: bool
    ) -> Decision:
        started = self._clock_ns()
        try:
            if now is not None and not _finite(now):
                decision = bad_now(now, self.policy.hash, request_id_of(request))
                if self.decision_log is not None:
                    self._log(decision, request, {}, None, started)
                return decision
            values, state_time, pipeline = self._values(now)
            why_unknown = None
            if explain and state_time is not None:
                with self._lock:
                    why_unknown = self._state.snapshot(state_time).unknown
            decision = pipeline.decide(
                values, request, state_time, budgets=True, explain=explain, why_unknown=why_unknown
            ).decision
            if queue and decision.outcome is Outcome.DEFER:
                note = self.deferred.hold(request, state_time, owner)
                if note:
                    decision = replace(decision, reason=decision.reason + note)
        except Exception as exc:  # fail closed: an error while deciding is never an allow
            values, state_time = {}, None
            decision = internal_error(exc, self.policy.hash, request_id_of(request))
        log = self.decision_log
        if log is not None and not self._log(decision, request, values, state_time, started):  # noqa: SIM102
            # (two conditions: the record is written whatever the second says)
            if self.fail_closed_on_log_error and decision.outcome is not Outcome.DENY:
                decision = replace(
                    decision,
                    outcome=Outcome.DENY,
                    rules=(INTERNAL_ERROR_RULE,),
                    reason=f"{log.error or self.last_log_error}; denied: no decision goes unrecorded "
                    "(fail_closed_on_log_error)",
                    constraints={},
                )
        return decision

    def verdict(self, request: Mapping[str, Any], now: float | None = None) -> Decision:
        """What the rules decide for ``request`` at ``now`` (default: the latest frame's time); no side effects.

        The request is validated as :meth:`decide` does (an invalid one gives the same
        ``deny``, rule ``request-invalid``) and the rules are evaluated on the same state, so
        the outcome, rules, reason and constraints are :meth:`decide`'s whenever the run-time
        budgets leave a decision alone.  Unlike :meth:`decide` it consumes no budget (nor
        applies one), queues no deferral and writes no decision log: ask it as often as you
        like, e.g. to probe the restrictions in force.  Never raises: an internal error gives
        ``deny`` with rule ``internal-error``.  Several verdicts that must see one state and one
        policy (across a concurrent :meth:`reload`) are asked of one :meth:`view`.
        """
        policy_hash = self.policy.hash
        if now is not None and not _finite(now):
            return bad_now(now, policy_hash, request_id_of(request))
        try:
            view = self.view(now)
        except Exception as exc:  # fail closed, as decide()
            return internal_error(exc, policy_hash, request_id_of(request))
        return view.verdict(request)

    def view(self, now: float | None = None) -> EngineView:
        """One consistent read of the state values at ``now`` and the policy in force (cheap).

        ``now`` defaults to the latest frame's time.  See :class:`EngineView`: it gives
        side-effect-free verdicts, all on that one read, and tells whether anything a decision
        can see changed since an earlier view.
        """
        return EngineView(*self._values(now))

    def explain(self, request: Mapping[str, Any], now: float | None = None) -> Explanation:
        """The whole evaluation of ``request`` at ``now``, as data (consumes no budget)."""
        values, state_time, pipeline = self._values(now)
        with self._lock:
            unknown = self._state.snapshot(state_time).unknown if state_time is not None else {}
        return pipeline.explain(values, request, time=state_time, why_unknown=unknown)

    def _log(
        self,
        decision: Decision,
        request: Any,
        values: Mapping[str, Any],
        state_time: float | None,
        started: int,
    ) -> bool:
        """Write the decision's record; False (counted, the reason kept) when it could not be."""
        try:
            ages = self._state.ages(state_time) if state_time is not None else {}
            elapsed_us = (self._clock_ns() - started) / 1000.0
            assert self.decision_log is not None
            self.decision_log.write(self._next_id(), decision, request, values, ages, elapsed_us)
        except Exception as exc:  # the audit log never turns a decision into a crash
            self.log_errors += 1
            self.last_log_error = repr(exc)
            return False
        return True

    log_errors = 0
    last_log_error = ""

    def close(self) -> None:
        """Finish the decision log, if any (the engine still decides; it stops logging)."""
        log, self.decision_log = self.decision_log, None
        if log is not None:
            log.close()

    def release_deferred(self, now: float | None = None) -> list[DeferredEvent]:
        """Re-decide the deferred queue at ``now``: which requests became deliverable, which expired.

        Each queued request is first asked as a verdict on one view of the state (no budget, no
        decision log); only one that may now go ahead is decided for real (budgets applied, its
        record written) and reported, with the owner that queued it.  A request re-decided as
        still deferred keeps its deadline: ``ttl_ms`` counts from when it was queued.
        """
        if now is None:
            now = self._state.latest_time
        if now is None or not self.deferred.pending:
            return []
        at = now
        view = self.view(at)
        request_key = view.policy.request_key
        # One verdict per distinct request cell: on one view every request of a cell gets the
        # same outcome, so a queue of 1,000 like requests costs one evaluation, not 1,000.
        permitted_in_cell: dict[tuple[Any, ...], bool] = {}

        def permitted(request: Mapping[str, Any]) -> bool:
            key = request_key(request)
            found = permitted_in_cell.get(key)
            if found is None:
                found = permitted_in_cell[key] = view.verdict(request).permitted
            return found

        return self.deferred.release(
            at, permitted, lambda request, owner: self._decide(request, at, False, owner, queue=False)
        )

    def _values(self, now: float | None) -> tuple[Mapping[str, Any], float | None, DecisionPipeline]:
        """State values at ``now``, with the decision pipeline of the policy in force, read together.

        The values are reused while no decision-relevant change happened.
        """
        with self._lock:
            state, pipeline = self._state, self._pipeline
            if now is None:
                now = state.latest_time
            if now is None:
                return state.snapshot(None).values, None, pipeline
            if now >= self._snap_now:
                state.expire(now)
                if state.changes == self._snap_changes and self._snap_values is not None:
                    self._snap_now = now
                    return self._snap_values, now, pipeline
                values = state.snapshot(now).values
                self._snap_values, self._snap_changes, self._snap_now = values, state.changes, now
                return values, now, pipeline
            # A ``now`` earlier than one already asked: compute afresh, leave the cache alone.
            return state.snapshot(now).values, now, pipeline

    def state(self, now: float | None = None) -> StateSnapshot:
        """The vehicle state at ``now`` (default: the latest frame's time), with the end-to-end
        check counts of every protected message (``integrity``)."""
        with self._lock:
            snapshot = self._state.snapshot(now)
            counts = {name: dict(checker.counts) for name, checker in self._decoder.e2e.items()}
        return replace(snapshot, integrity=counts, health=self.health())

    def health(self) -> dict[str, str]:
        """What is wrong with the engine itself, by part; empty when all is well.

        ``decision_log``: the last record could not be written (a full disk, say), and why.  The
        engine keeps deciding meanwhile; with ``fail_closed_on_log_error`` it denies instead.
        """
        log = self.decision_log
        if log is not None and log.error:
            return {"decision_log": log.error}
        return {}

    @property
    def counters(self) -> dict[str, Any]:
        """Frame counts, frames refused (by reason), and per signal the samples that gave no value (by cause)."""
        with self._lock:
            return {
                "frames_seen": self.frames_seen,
                "frames_decoded": self.frames_decoded,
                "deferred_pending": len(self.deferred.pending),
                "deferred_expired": self.deferred.expired_count,
                "deferred_delivered": self.deferred.delivered_count,
                "deferred_refused": self.deferred.refused_count,
                "decision_log_errors": self.log_errors,
                "frames_ignored": self.frames_ignored,
                "implausible": dict(self._state.counters.implausible),
                "invalid": dict(self._state.counters.invalid),
                "truncated": dict(self._state.counters.truncated),
                "integrity": dict(self._state.counters.integrity),
                "frames_rejected": dict(self._decoder.rejected),
                "e2e": {name: dict(c.counts) for name, c in self._decoder.e2e.items()},
            }


def _finite(now: Any) -> bool:
    try:
        return math.isfinite(now)
    except Exception:  # not a number, or one whose __float__ raises
        return False


class EngineView:
    """One consistent read of an :class:`Engine`: the state values at ``time`` and the policy in force.

    Made by :meth:`Engine.view`.  It is a read, not a copy: a :meth:`~Engine.reload` or new
    frames after it do not change it, and its verdicts keep using its state and policy.

    ``values`` is the state a decision sees (read-only).  The engine hands out the same values
    while nothing a decision can see has changed, so numbers within one cell of the policy's
    thresholds may be those of the last change; :meth:`unchanged_since` tells, cheaply, whether
    two views would give the same verdicts.
    """

    __slots__ = ("_pipeline", "_values", "policy", "time", "values")

    def __init__(self, values: Mapping[str, Any], time: float | None, pipeline: DecisionPipeline) -> None:
        self._values = values
        self.values: Mapping[str, Any] = MappingProxyType(values)
        self.time = time
        self.policy = pipeline.policy
        self._pipeline = pipeline

    def verdict(self, request: Mapping[str, Any]) -> Decision:
        """What the rules decide for ``request`` on this view; as :meth:`Engine.verdict` (no side effects, never raises)."""
        return self._pipeline.decide(self._values, request, self.time).decision

    def unchanged_since(self, earlier: EngineView | None) -> bool:
        """True when ``earlier`` read the same state values under the same policy: every verdict is the same.

        Only ``time`` may differ.  Identity tests only: a change of anything a decision can
        see (a threshold crossed, a signal gone stale, a reload) always gives False; a False
        without such a change is possible (before the first frame, or a ``now`` earlier than
        one already asked), and only costs the caller a recomputation.
        """
        return earlier is not None and earlier._values is self._values and earlier.policy.hash == self.policy.hash
