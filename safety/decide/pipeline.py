"""The one decision path: request + state values + time -> :class:`~safety.model.decision.Decision`.

Every part of DriveGate that decides goes through :class:`DecisionPipeline`: the engine's
``decide`` and ``verdict`` (and its views), the decision service, policy tests and the simulated
car, replay probes and explanations.  The steps, in order:

1. **validate** the request (:func:`~safety.model.request.validate_request`): an invalid one is
   denied with rule ``request-invalid`` before any rule is looked at;
2. **evaluate** the compiled rules on the state values (:class:`~safety.decide.evaluate.Evaluator`,
   cached by cell);
3. drop the degrade **constraints the request already meets**
   (:func:`~safety.decide.constraints.split_met`): a degrade left with none is an ``allow``;
4. apply the run-time **budgets** (:class:`~safety.decide.budgets.BudgetTracker`) when asked to:
   they only ever make a decision stricter, and they remember what each decision consumed;
5. stamp the **Decision** with the policy hash, the state time and the request id.

An error inside any step gives ``deny`` with rule ``internal-error``: an error while deciding is
never an allow.  Explanations narrate a decision made here (:meth:`DecisionPipeline.explain`),
so an explanation can never disagree with the decision it explains.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safety.decide.budgets import Adjustment, BudgetTracker
from safety.decide.constraints import split_met
from safety.decide.evaluate import Evaluator
from safety.decide.explain import Explainer, Explanation
from safety.errors import Location, RequestError
from safety.model.decision import Decision, Outcome
from safety.model.request import shown, validate_request
from safety.model.rules import INTERNAL_ERROR_RULE, INVALID_REQUEST_RULE
from safety.policy.compile import CompiledPolicy


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision with what explains it: the request's problem, if invalid, and any budget's change."""

    decision: Decision
    problem: RequestError | None = None
    adjustment: Adjustment | None = None
    met: Mapping[str, Any] | None = None  # degrade constraints the request already met (dropped)


class DecisionPipeline:
    """Decides requests under one compiled policy: validate, evaluate, budgets, Decision.

    One pipeline per policy in force; its budget tracker (the only state it keeps) is guarded by
    its own lock, so decisions may be asked from several threads.
    """

    __slots__ = ("_budget_lock", "_explainer", "budgets", "evaluator", "has_budgets", "policy")

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.evaluator = Evaluator(policy)
        self.budgets = BudgetTracker(policy.doc.budgets)
        config = policy.doc.budgets
        self.has_budgets = (
            config.rate_max is not None or config.glance_single_s is not None or config.glance_task_s is not None
        )
        self._budget_lock = threading.Lock()
        self._explainer: Explainer | None = None

    def decide(
        self,
        values: Mapping[str, Any],
        request: Mapping[str, Any],
        time: float | None,
        *,
        budgets: bool = False,
        explain: bool = False,
        why_unknown: Mapping[str, str] | None = None,
    ) -> Decided:
        """Decide ``request`` on the state ``values`` at ``time``; never raises.

        ``budgets``: apply (and consume) the run-time budgets, as ``Engine.decide`` does;
        without it the decision is the rules' alone, with no side effect.  ``explain``: append
        the whole explanation to the reason (saying why each unknown signal is unknown, from
        ``why_unknown``).
        """
        policy = self.policy
        request_id = request_id_of(request)
        try:
            problem = validate_request(request)
            if problem is not None:
                return Decided(invalid_request(problem, policy.hash, time, request_id), problem)
            verdict = self.evaluator.verdict(values, request)
            outcome, rules, constraints, reason = verdict.outcome, verdict.rules, verdict.constraints, verdict.reason
            met = None
            if outcome is Outcome.DEGRADE:
                remaining, met = split_met(constraints, request)
                if not met:
                    met = None
                elif remaining:
                    constraints = remaining
                else:
                    outcome, constraints = Outcome.ALLOW, {}
                    reason = f"{reason} (the request already meets the constraints)"
            adjustment = None
            if budgets and self.has_budgets:
                with self._budget_lock:
                    adjustment = self.budgets.check(request, outcome, constraints, values.get("driving_state"), time)
                if adjustment is not None:
                    outcome, rules, constraints = adjustment.outcome, (*rules, adjustment.rule), adjustment.constraints
                    reason = f"{reason}; {adjustment.reason}"
            decision = Decision(outcome, rules, reason, constraints, policy.hash, time, request_id)
            decided = Decided(decision, None, adjustment, met)
            if explain:
                text = self.narrate(values, request, decided, time=time, why_unknown=why_unknown).render()
                # A decision's reason goes to whoever asked (over the socket: another user's app):
                # it names the policy file, never the directories it lives in.
                text = text.replace(policy.file, os.path.basename(policy.file))
                decided = Decided(
                    Decision(outcome, rules, f"{reason}\n{text}", constraints, policy.hash, time, request_id),
                    None,
                    adjustment,
                    met,
                )
            return decided
        except Exception as exc:  # fail closed: an error while deciding is never an allow
            return Decided(internal_error(exc, policy.hash, request_id))

    def explain(
        self,
        values: Mapping[str, Any],
        request: Mapping[str, Any],
        *,
        time: float | None = None,
        why_unknown: Mapping[str, str] | None = None,
    ) -> Explanation:
        """Decide ``request`` (rules only, no budget consumed) and explain that decision."""
        decided = self.decide(values, request, time)
        return self.narrate(values, request, decided, time=time, why_unknown=why_unknown)

    def narrate(
        self,
        values: Mapping[str, Any],
        request: Mapping[str, Any],
        decided: Decided,
        *,
        time: float | None = None,
        why_unknown: Mapping[str, str] | None = None,
    ) -> Explanation:
        """The explanation of a decision this pipeline made on ``values`` for ``request``."""
        if self._explainer is None:
            self._explainer = Explainer(self.policy, self.evaluator)
        return self._explainer.explain(
            values,
            request,
            decided.decision,
            problem=decided.problem,
            budget=decided.adjustment,
            met=decided.met,
            time=time,
            why_unknown=why_unknown,
        )


def invalid_request(
    problem: RequestError, policy_hash: str, state_time: float | None, request_id: str | None
) -> Decision:
    """The decision on a request that failed validation: deny, naming the field."""
    return Decision(
        Outcome.DENY,
        (INVALID_REQUEST_RULE,),
        f"invalid request: {problem.message}",
        {"field": problem.location.field},
        policy_hash,
        state_time,
        request_id,
    )


def bad_now(now: Any, policy_hash: str, request_id: str | None) -> Decision:
    """The decision when the caller's ``now`` is not a finite number: an invalid call, denied."""
    problem = RequestError(
        f"now must be a finite number of seconds, got {shown(now)}", Location(field="now"), code="bad-request"
    )
    return invalid_request(problem, policy_hash, None, request_id)


def internal_error(exc: BaseException, policy_hash: str, request_id: str | None) -> Decision:
    """The decision when deciding itself failed: deny, never allow."""
    return Decision(
        Outcome.DENY,
        (INTERNAL_ERROR_RULE,),
        f"internal error while deciding ({exc!r}); denied",
        {},
        policy_hash,
        None,
        request_id,
    )


def request_id_of(request: Any) -> str | None:
    """The request's ``id`` when it is a string (echoed in the decision), else None.

    Never raises: it is read in the handlers of errors, for requests that may be anything
    (a Mapping whose ``get`` raises included).
    """
    if isinstance(request, Mapping):
        try:
            rid = request.get("id")
        except Exception:  # a hostile mapping: no id to echo
            return None
        if isinstance(rid, str):
            return rid
    return None
