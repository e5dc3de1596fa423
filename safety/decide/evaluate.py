"""Evaluate a compiled policy: how rule outcomes combine into one decision.

The combination, documented for policy authors (README, "Rule combination"):

1. Every rule whose condition holds contributes its outcome; if none holds, the policy's
   ``default`` does.
2. The most restrictive contribution wins: ``deny`` > ``defer`` > ``degrade`` > ``allow``.
   Several ``degrade`` rules merge their constraints, each to the strictest (shortest
   text, fewest items, voice over visual); several ``defer`` rules take the longest wait.
3. Exceptions (``exception: true``) cap the result: if an exception rule holds, the
   decision is never more restrictive than the most restrictive such exception (e.g.
   critical priority always gets through by voice).  Constraints of rules that hold at
   the capped rank still apply.
4. Unknown values (stale or invalid signals, unknown driving state or workload, optional
   request fields left out) are evaluated as every value they could take: the policy is
   evaluated once per combination of the cells of the unknown fields, and the most
   restrictive result wins.  Unknown state is therefore the most demanding state it could
   be.  (Past ``MAX_WORLDS`` combinations, three-valued logic gives a sound
   over-approximation: a rule whose condition is unknown is taken to hold, and an
   exception whose condition is unknown is not.)

The result depends only on the cells of the state and request (see ``compile``), so it
is cached per cell key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safety.model.decision import Outcome
from safety.policy.compile import CompiledPolicy, CompiledRule

_MAX_CACHE = 65536
MAX_WORLDS = 4096


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer before it is stamped with request id, time and hash."""

    outcome: Outcome
    rules: tuple[str, ...]
    reason: str
    constraints: Mapping[str, Any]


def merge_constraints(rules: Sequence[CompiledRule]) -> dict[str, Any]:
    """The strictest combination of several rules' constraints."""
    return _merge_dicts([rule.constraints for rule in rules])


def _merge_dicts(all_constraints: list[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for constraints in all_constraints:
        for key, value in constraints.items():
            if key not in merged:
                merged[key] = value
            elif key in ("max_text_length", "max_list_items"):
                merged[key] = min(merged[key], value)
            elif key == "retry_after_ms":
                merged[key] = max(merged[key], value)
            elif key == "modality":
                merged[key] = "voice" if "voice" in (merged[key], value) else value
            elif key == "until":
                # Each part once: a value may itself be a join (one world's merged constraints).
                parts = merged[key].split("; ")
                parts += [part for part in value.split("; ") if part not in parts]
                merged[key] = "; ".join(parts)
    return merged


class Evaluator:
    """Evaluates one compiled policy, caching verdicts by cell key."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self._cache: dict[tuple[Any, ...], Verdict] = {}
        # The engine passes the same state mapping while nothing decision-relevant changed
        # (it is never mutated), so its cell key is computed once per change, not per decision.
        # One attribute holding (mapping, key): replaced whole, so threads never see a mix.
        self._state_key: tuple[Mapping[str, Any] | None, tuple[Any, ...]] = (None, ())

    def verdict(self, state: Mapping[str, Any], request: Mapping[str, Any]) -> Verdict:
        policy = self.policy
        last_state, state_key = self._state_key
        if state is not last_state:
            state_key = policy.state_key(state)
            self._state_key = (state, state_key)
        key = (state_key, policy.request_key(request))
        # The cache only saves time (a verdict is a pure function of the key): mutating its
        # reads and writes changes no result, only makes every test slow (minutes per mutant).
        found = self._cache.get(key)  # pragma: no mutate
        if found is not None:
            return found
        result = self.evaluate(state, request)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[key] = result  # pragma: no mutate
        return result

    def evaluate(self, state: Mapping[str, Any], request: Mapping[str, Any]) -> Verdict:
        """Evaluate every rule (no cache)."""
        policy = self.policy
        unknown_state = [name for name, _ in policy.state_cells if state.get(name) is None]
        unknown_request = [name for name, _ in policy.request_cells if request.get(name) is None]
        worlds = 1
        for name in (*unknown_state, *unknown_request):
            worlds *= len(policy.representatives[name])
        if worlds == 1 or worlds > MAX_WORLDS:
            verdict = self._evaluate_once(state, request)
        else:
            verdict = self._evaluate_worlds(state, request, unknown_state, unknown_request)
        if unknown_state:
            verdict = Verdict(
                verdict.outcome,
                verdict.rules,
                f"{verdict.reason} [unknown: {', '.join(unknown_state)}; treated as the most demanding driving]",
                verdict.constraints,
            )
        return verdict

    def _evaluate_worlds(
        self,
        state: Mapping[str, Any],
        request: Mapping[str, Any],
        unknown_state: list[str],
        unknown_request: list[str],
    ) -> Verdict:
        """The most restrictive verdict over every value the unknown fields could take."""
        reps = self.policy.representatives
        names = [*unknown_state, *unknown_request]
        worst: list[Verdict] = []
        for combo in itertools.product(*(reps[n] for n in names)):
            world_state = dict(state)
            world_request = dict(request)
            for name, value in zip(names, combo, strict=True):
                (world_state if name in unknown_state else world_request)[name] = value
            verdict = self._evaluate_once(world_state, world_request)
            if not worst or verdict.outcome.rank > worst[0].outcome.rank:
                worst = [verdict]
            elif verdict.outcome.rank == worst[0].outcome.rank:
                worst.append(verdict)
        rules = tuple(dict.fromkeys(r for v in worst for r in v.rules))
        reason = "; ".join(dict.fromkeys(part for v in worst for part in v.reason.split("; ")))
        constraints = _merge_dicts([v.constraints for v in worst])
        return Verdict(worst[0].outcome, rules, reason, constraints)

    def _evaluate_once(self, state: Mapping[str, Any], request: Mapping[str, Any]) -> Verdict:
        results = []
        for rule in self.policy.rules:
            result = rule.test(state, request)
            if result is not False:
                results.append((rule, result))
        c = combine(self.policy, results)
        return Verdict(c.outcome, c.rules, "; ".join(dict.fromkeys(c.reasons)), c.constraints)


@dataclass(frozen=True, slots=True)
class Combined:
    """How the outcomes of the rules that hold (or may) combine: the decision and each step to it.

    The one implementation of the combination: the evaluator takes its result, and
    ``safety.decide.explain`` narrates its steps, so the two cannot drift apart.
    """

    contributing: tuple[tuple[CompiledRule, bool], ...]  # (rule, certainly holds): ordinary rules
    exceptions: tuple[tuple[CompiledRule, bool], ...]
    certain: bool  # some ordinary rule certainly holds: the default is not used
    use_default: bool  # the default contributes (no rule certainly holds)
    rank: int  # the most restrictive contribution, before any cap
    deciding: tuple[CompiledRule, ...]  # the ordinary rules at ``rank``
    cap_rank: int | None  # with an exception that certainly holds: the rank it caps at
    capping: tuple[CompiledRule, ...]  # the exceptions at ``cap_rank``
    same_rank: tuple[CompiledRule, ...]  # ordinary rules at ``cap_rank`` (their constraints still apply)
    outcome: Outcome
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    constraints: Mapping[str, Any]


def combine(policy: CompiledPolicy, holding: Sequence[tuple[CompiledRule, bool | None]]) -> Combined:
    """Combine the rules that hold (True) or may hold (None), in policy order."""
    contributing = tuple((r, res is True) for r, res in holding if not r.exception)
    exceptions = tuple((r, res is True) for r, res in holding if r.exception)
    certain = any(sure for _, sure in contributing)
    top_rank = max((r.rank for r, _ in contributing), default=-1)
    default_rank = policy.default.rank
    use_default = not certain and default_rank >= top_rank
    rank = top_rank if certain else max(top_rank, default_rank)
    deciding = tuple(r for r, _ in contributing if r.rank == rank)
    outcome = Outcome(_OUTCOME_BY_RANK[rank])
    constraints = merge_constraints(deciding)
    reasons = [r.reason for r in deciding]
    rule_ids = [r.id for r in deciding]
    if use_default and rank == default_rank:
        reasons.append(policy.default_reason)
    cap_rank: int | None = None
    capping: tuple[CompiledRule, ...] = ()
    same_rank: tuple[CompiledRule, ...] = ()
    if any(sure for _, sure in exceptions):
        # Over every exception that may hold, not only the certain ones: of the caps that may
        # apply, the most restrictive (fail closed when an exception's condition is unknown).
        cap_rank = max(r.rank for r, _ in exceptions)
        capping = tuple(r for r, _ in exceptions if r.rank == cap_rank)
        if cap_rank < rank:
            outcome = Outcome(_OUTCOME_BY_RANK[cap_rank])
            # Rules that hold at the capped rank still apply: a capped keyboard request
            # keeps its voice input (the cap relaxes the outcome, never the constraints).
            same_rank = tuple(r for r, _ in contributing if r.rank == cap_rank)
            constraints = merge_constraints([*same_rank, *capping])
            reasons = [f"{r.reason} (instead of {_OUTCOME_BY_RANK[rank]})" for r in capping]
            reasons += [r.reason for r in same_rank]
            rule_ids = [r.id for r in capping] + [r.id for r in same_rank]
        elif cap_rank == rank:
            constraints = merge_constraints([*deciding, *capping])
            reasons += [r.reason for r in capping]
            rule_ids += [r.id for r in capping]
    return Combined(
        contributing,
        exceptions,
        certain,
        use_default,
        rank,
        deciding,
        cap_rank,
        capping,
        same_rank,
        outcome,
        tuple(rule_ids),
        tuple(reasons),
        constraints,
    )


_OUTCOME_BY_RANK = {o.rank: o.value for o in Outcome}
