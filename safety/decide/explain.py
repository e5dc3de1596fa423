"""Explanations: the whole evaluation of one request, as data and as text.

``explain(policy, values, request)`` answers *why*: each rule in policy order, whether it
held (three-valued: an unknown value makes a test unknown, and an unknown rule may hold),
and which leaf test decided that, with its ``file:line:col`` in the policy; how the
outcomes combined (the rules that contributed, the default, exception caps); when fields
are unknown, every world the evaluator considered (one per combination of the cells of the
unknown fields) grouped by result; and the final decision.

The decision is never recomputed here: it is the one the decision pipeline
(:mod:`safety.decide.pipeline`) made, so an explanation can never disagree with what the
engine decides.  The per-node results come from the
policy compiler (each sub-condition compiled with ``safety.policy.compile``), so the
three-valued semantics and comparisons are the engine's own; this module only chooses
which leaves to show.  The combination narrative mirrors ``Evaluator`` step by step (the
tests check it against the evaluator on every cell of the shipped policies).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safety.decide.budgets import Adjustment
from safety.decide.constraints import describe
from safety.decide.evaluate import MAX_WORLDS, Evaluator, combine
from safety.errors import RequestError
from safety.model.decision import Decision, Outcome
from safety.policy.compile import CompiledPolicy, CompiledRule, Predicate, compile_condition
from safety.policy.model import AllOf, Condition, FieldSpec, NotOf, Test, condition_fields

Tri = bool | None
_OPS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in", "not_in": "not in"}
_SHOWN = {True: "holds", False: "does not hold", None: "unknown (may hold)"}
_TRI = {True: "true", False: "false", None: "unknown"}


# ---------------------------------------------------------------------- the data
@dataclass(frozen=True)
class LeafResult:
    """One leaf test (``field op value``) and what it gave on this state and request."""

    field: str
    op: str
    value: Any  # the policy's constant
    actual: Any  # the value seen; None = unknown
    result: Tri
    location: str  # file:line:col in the policy
    negated: bool = False  # under an odd number of ``not``: the rule needs the opposite

    @property
    def text(self) -> str:
        return f"{self.field} {_OPS.get(self.op, self.op)} {_show(self.value, self.op)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.text,
            "field": self.field,
            "op": self.op,
            "value": _plain(self.value),
            "actual": _plain(self.actual),
            "result": self.result,
            "negated": self.negated,
            "location": self.location,
        }


@dataclass(frozen=True)
class RuleResult:
    """One rule on the actual state and request (unknown values left unknown)."""

    id: str
    ref: str
    outcome: Outcome
    exception: bool
    result: Tri
    location: str
    decided_by: tuple[LeafResult, ...]  # the leaves that settle ``result`` (empty: no condition)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "outcome": self.outcome.value,
            "exception": self.exception,
            "result": self.result,
            "location": self.location,
            "decided_by": [leaf.to_dict() for leaf in self.decided_by],
        }


@dataclass(frozen=True)
class Combination:
    """How the rules' outcomes combined in one evaluation (one world, or three-valued)."""

    contributing: tuple[tuple[str, Outcome, bool], ...]  # (rule, outcome, certain) non-exception rules that may hold
    default: Outcome
    default_used: bool
    default_note: str
    before_cap: Outcome  # the most restrictive contribution (or the default)
    exceptions: tuple[tuple[str, Outcome, bool], ...]
    cap_note: str  # what the exceptions did ("" when none held)
    outcome: Outcome
    rules: tuple[str, ...]
    constraints: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "contributing": [{"rule": r, "outcome": o.value, "certain": c} for r, o, c in self.contributing],
            "default": self.default.value,
            "default_used": self.default_used,
            "default_note": self.default_note,
            "before_cap": self.before_cap.value,
            "exceptions": [{"rule": r, "outcome": o.value, "certain": c} for r, o, c in self.exceptions],
            "cap_note": self.cap_note,
            "outcome": self.outcome.value,
            "rules": list(self.rules),
            "constraints": dict(self.constraints),
        }


@dataclass(frozen=True)
class WorldGroup:
    """Worlds that gave the same result, with the first of them as an example."""

    outcome: Outcome
    rules: tuple[str, ...]
    constraints: Mapping[str, Any]
    count: int
    example: Mapping[str, str]  # unknown field -> the value tried, with its cell (e.g. "31 (> 30)")
    combination: Combination  # how the example world combined

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "rules": list(self.rules),
            "constraints": dict(self.constraints),
            "count": self.count,
            "example": dict(self.example),
            "combination": self.combination.to_dict(),
        }


@dataclass(frozen=True)
class Worlds:
    """Unknown fields and the worlds tried for them (the most restrictive world wins)."""

    fields: tuple[tuple[str, tuple[str, ...]], ...]  # field -> the cells it could be in
    count: int
    groups: tuple[WorldGroup, ...]  # most restrictive first; empty past MAX_WORLDS
    three_valued: bool  # past MAX_WORLDS: one three-valued evaluation instead

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": {name: list(cells) for name, cells in self.fields},
            "count": self.count,
            "three_valued": self.three_valued,
            "groups": [g.to_dict() for g in self.groups],
        }


@dataclass(frozen=True)
class Final:
    outcome: Outcome
    rules: tuple[str, ...]
    constraints: Mapping[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "rules": list(self.rules),
            "constraints": dict(self.constraints),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Explanation:
    """The whole evaluation of one request."""

    policy: str
    policy_file: str
    policy_hash: str
    time: float | None
    state: Mapping[str, Any]  # canonical and derived fields; None = unknown
    why_unknown: Mapping[str, str]
    request: Mapping[str, Any]
    request_problem: str  # "" when the request is valid
    rules: tuple[RuleResult, ...]
    combination: Combination | None  # None when worlds decided (see ``worlds``) or the request is invalid
    worlds: Worlds | None
    budget: str  # how a run-time budget changed the decision ("" when none did)
    decision: Final
    met: str = ""  # the degrade constraints the request already met, dropped ("" when none were)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": {"name": self.policy, "file": self.policy_file, "hash": self.policy_hash},
            "time": self.time,
            "state": {k: _plain(v) for k, v in self.state.items()},
            "why_unknown": dict(self.why_unknown),
            "request": {k: _plain(v) for k, v in self.request.items()},
            "request_problem": self.request_problem or None,
            "rules": [r.to_dict() for r in self.rules],
            "combination": self.combination.to_dict() if self.combination else None,
            "worlds": self.worlds.to_dict() if self.worlds else None,
            "budget": self.budget or None,
            "constraints_met": self.met or None,
            "decision": self.decision.to_dict(),
        }

    def render(self) -> str:
        """The explanation as text, one fact per line."""
        return "\n".join(_render(self))


# ---------------------------------------------------------------------- building it
class Explainer:
    """Explains decisions of one compiled policy; sub-conditions are compiled once, on first use."""

    def __init__(self, policy: CompiledPolicy, evaluator: Evaluator | None = None) -> None:
        self.policy = policy
        self.evaluator = evaluator or Evaluator(policy)
        self._fields: dict[str, FieldSpec] = condition_fields(tuple(b.name for b in policy.doc.state.speed_bands))
        self._compiled: dict[int, tuple[Condition, Predicate]] = {}

    def explain(
        self,
        values: Mapping[str, Any],
        request: Mapping[str, Any],
        decision: Decision,
        *,
        problem: RequestError | None = None,
        budget: Adjustment | None = None,
        met: Mapping[str, Any] | None = None,
        time: float | None = None,
        why_unknown: Mapping[str, str] | None = None,
    ) -> Explanation:
        """Explain ``decision``, made on state ``values`` (a snapshot's values) for ``request``.

        The decision comes from :class:`~safety.decide.pipeline.DecisionPipeline` (use its
        ``explain``): this only narrates it.  ``problem`` is the request's validation problem
        (the decision then denied it before any rule); ``budget`` the run-time budget
        adjustment applied after the rules, if any (budgets keep history, so only the pipeline
        knows it); ``met`` the degrade constraints the request already met (dropped).
        """
        policy = self.policy
        head: dict[str, Any] = {
            "policy": policy.name,
            "policy_file": policy.file,
            "policy_hash": policy.hash,
            "time": time,
            "state": dict(values),
            "why_unknown": dict(why_unknown or {}),
            "request": dict(request) if isinstance(request, Mapping) else {},
        }
        final = Final(decision.outcome, decision.rules, dict(decision.constraints), decision.reason)
        if problem is not None:
            # An invalid request is denied before any rule is looked at.
            return Explanation(
                **head,
                request_problem=problem.message,
                rules=(),
                combination=None,
                worlds=None,
                budget="",
                decision=final,
            )
        rules = tuple(self._rule(rule, values, request) for rule in policy.rules)
        worlds = self._worlds(values, request)
        combination = None
        if worlds is None or worlds.three_valued:
            combination = self._combine([(rule, r.result) for rule, r in zip(policy.rules, rules, strict=True)])
        note = ""
        if budget is not None:
            before = self.evaluator.verdict(values, request).outcome
            note = f"{budget.reason}: {before.value} -> {budget.outcome.value} ({budget.rule})"
        met_note = ""
        if met:
            met_note = f"the request already meets the constraints ({describe(met)})"
            met_note += ": allow" if decision.outcome is Outcome.ALLOW else "; they are dropped"
        return Explanation(
            **head,
            request_problem="",
            rules=rules,
            combination=combination,
            worlds=worlds,
            budget=note,
            decision=final,
            met=met_note,
        )

    # -- rules and leaves
    def _predicate(self, cond: Condition) -> Predicate:
        found = self._compiled.get(id(cond))
        if found is None:
            # Keep the node with its predicate so its id() cannot be reused while cached.
            found = (cond, compile_condition(cond, self._fields))
            self._compiled[id(cond)] = found
        return found[1]

    def _rule(self, rule: CompiledRule, values: Mapping[str, Any], request: Mapping[str, Any]) -> RuleResult:
        result = rule.test(values, request)
        when = rule.source.when
        leaves = () if when is None else self._decisive(when, values, request, False)
        return RuleResult(rule.id, rule.ref, rule.outcome, rule.exception, result, str(rule.source.loc), tuple(leaves))

    def _decisive(self, cond: Condition, s: Mapping[str, Any], r: Mapping[str, Any], negated: bool) -> list[LeafResult]:
        """The leaves that settle ``cond``'s result: the first false (or unknown) part of an
        ``all``, the first true (or unknown) part of an ``any``, every part when all agree."""
        if isinstance(cond, Test):
            source = s if self._fields[cond.field].source == "state" else r
            result = self._predicate(cond)(s, r)
            return [LeafResult(cond.field, cond.op, cond.value, source.get(cond.field), result, str(cond.loc), negated)]
        if isinstance(cond, NotOf):
            return self._decisive(cond.item, s, r, not negated)
        results = [(item, self._predicate(item)(s, r)) for item in cond.items]
        # An all() is settled by a false part, an any() by a true one; failing that, by an unknown one.
        settling = not isinstance(cond, AllOf)
        for wanted in (settling, None):
            for item, result in results:
                if result is wanted:
                    return self._decisive(item, s, r, negated)
        leaves: list[LeafResult] = []
        for item, _ in results:
            leaves += self._decisive(item, s, r, negated)
        return leaves

    # -- worlds
    def _worlds(self, values: Mapping[str, Any], request: Mapping[str, Any]) -> Worlds | None:
        """The worlds the evaluator tries for the unknown fields (mirrors ``Evaluator.evaluate``)."""
        policy = self.policy
        unknown_state = [name for name, _ in policy.state_cells if values.get(name) is None]
        unknown_request = [name for name, _ in policy.request_cells if request.get(name) is None]
        names = [*unknown_state, *unknown_request]
        if not names:
            return None
        reps = policy.representatives
        fields = tuple((n, tuple(_cell_label(reps[n], v) for v in reps[n])) for n in names)
        count = 1
        for name in names:
            count *= len(reps[name])
        if count > MAX_WORLDS:
            return Worlds(fields, count, (), True)
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for combo in itertools.product(*(reps[n] for n in names)):
            world_state, world_request = dict(values), dict(request)
            for name, value in zip(names, combo, strict=True):
                (world_state if name in unknown_state else world_request)[name] = value
            verdict = self.evaluator.evaluate(world_state, world_request)
            key = (verdict.outcome, verdict.rules, tuple(sorted(verdict.constraints.items())))
            if key in groups:
                groups[key][0] += 1
            else:
                example = {n: _cell_label(reps[n], v) for n, v in zip(names, combo, strict=True)}
                trace = [(rule, rule.test(world_state, world_request)) for rule in policy.rules]
                groups[key] = [1, example, self._combine(trace), dict(verdict.constraints)]
        ordered = sorted(groups.items(), key=lambda item: -item[0][0].rank)
        return Worlds(
            fields,
            count,
            tuple(WorldGroup(k[0], k[1], g[3], g[0], g[1], g[2]) for k, g in ordered),
            False,
        )

    # -- combination (evaluate.combine decides; this narrates its steps)
    def _combine(self, results: list[tuple[CompiledRule, Tri]]) -> Combination:
        c = combine(self.policy, [(r, res) for r, res in results if res is not False])
        default = self.policy.default
        if not c.contributing:
            note = f"no rule holds: the default {default.value} applies"
        elif c.certain:
            note = f"a rule holds ({', '.join(r.id for r, sure in c.contributing if sure)}): the default is not used"
        elif c.use_default:
            note = f"no rule certainly holds (unknown ones may): the default {default.value} applies as well"
        else:
            note = f"no rule certainly holds, but one that may is more restrictive than the default {default.value}"
        before = _outcome(c.rank)
        cap_note = ""
        if c.cap_rank is not None:
            ids = ", ".join(r.id for r in c.capping)
            if c.cap_rank < c.rank:
                cap_note = f"exception {ids} caps {before.value} at {c.outcome.value}"
                if c.same_rank:
                    cap_note += f"; the constraints of {', '.join(r.id for r in c.same_rank)} still apply"
            elif c.cap_rank == c.rank:
                cap_note = f"exception {ids} matches {before.value}: its constraints merge in"
            else:
                cap_note = (
                    f"exception {ids} ({_outcome(c.cap_rank).value}) caps nothing: {before.value} is less restrictive"
                )
        elif c.exceptions:
            cap_note = "an exception may hold (unknown), but only an exception that certainly holds caps"
        return Combination(
            tuple((r.id, r.outcome, sure) for r, sure in c.contributing),
            default,
            c.use_default,
            note,
            before,
            tuple((r.id, r.outcome, sure) for r, sure in c.exceptions),
            cap_note,
            c.outcome,
            c.rules,
            c.constraints,
        )


# ---------------------------------------------------------------------- text
def _render(e: Explanation) -> list[str]:
    head = f"policy {e.policy} ({e.policy_file}, hash {e.policy_hash})"
    lines = [head + (f" at t={e.time:g} s" if e.time is not None else " before any frame")]
    lines.append("state: " + ", ".join(f"{k}={_show(v)}" for k, v in e.state.items()))
    by_reason: dict[str, list[str]] = {}
    for name, why in e.why_unknown.items():
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        lines.append(f"  unknown: {', '.join(names)} ({why})")
    lines.append("request: " + ", ".join(f"{k}={_show(v)}" for k, v in e.request.items()))
    if e.request_problem:
        lines += [f"invalid request: {e.request_problem}", *_render_final(e.decision)]
        return lines
    lines.append("rules, in policy order:")
    for rule in e.rules:
        kind = " (exception)" if rule.exception else ""
        lines.append(f"  {rule.id}: {_SHOWN[rule.result]} -> {rule.outcome.value}{kind}  [{rule.location}]")
        if not rule.decided_by:
            lines.append("      (no condition: always holds)")
        for leaf in rule.decided_by:
            lines.append(f"      {_render_leaf(leaf)}")
    if e.worlds is not None:
        lines += _render_worlds(e.worlds)
    if e.combination is not None:
        lines.append("combination:")
        lines += ["  " + line for line in _render_combination(e.combination)]
    if e.met:
        lines.append(f"constraints: {e.met}")
    if e.budget:
        lines.append(f"budget: {e.budget}")
    lines += _render_final(e.decision)
    return lines


def _render_leaf(leaf: LeafResult) -> str:
    seen = "unknown" if leaf.actual is None else _show(leaf.actual)
    note = " (under 'not')" if leaf.negated else ""
    return f"{leaf.text}: {_TRI[leaf.result]}{note} ({leaf.field} is {seen})  [{leaf.location}]"


def _render_worlds(w: Worlds) -> list[str]:
    fields = "; ".join(f"{name} in {{{', '.join(cells)}}}" for name, cells in w.fields)
    lines = [f"unknown fields: {fields}"]
    if w.three_valued:
        lines.append(
            f"  {w.count} worlds exceed {MAX_WORLDS}: one three-valued evaluation instead "
            "(a rule that may hold is taken to hold; an exception that may hold does not cap)"
        )
        return lines
    lines.append(f"  {w.count} worlds evaluated, the most restrictive wins:")
    top = w.groups[0].outcome if w.groups else None
    for group in w.groups:
        rules = ", ".join(group.rules) or "the default"
        example = ", ".join(f"{k}={v}" for k, v in group.example.items())
        mark = "* " if group.outcome is top else "  "
        lines.append(f"  {mark}{group.outcome.value} in {group.count} world(s) by {rules}; e.g. {example}")
        lines += ["        " + line for line in _render_combination(group.combination)]
    return lines


def _render_combination(c: Combination) -> list[str]:
    contributing = ", ".join(f"{r} ({o.value}{'' if sure else ', may hold'})" for r, o, sure in c.contributing)
    lines = [f"contributing: {contributing or 'none'}", c.default_note, f"most restrictive: {c.before_cap.value}"]
    if c.cap_note:
        lines.append(c.cap_note)
    return lines


def _render_final(d: Final) -> list[str]:
    lines = [f"decision: {d.outcome.value}", f"  rules: {', '.join(d.rules) or '(none: the default)'}"]
    if d.constraints:
        lines.append(f"  constraints: {', '.join(f'{k}={_show(v)}' for k, v in d.constraints.items())}")
    lines.append(f"  reason: {d.reason}")
    return lines


# ---------------------------------------------------------------------- helpers
def _outcome(rank: int) -> Outcome:
    return next(o for o in Outcome if o.rank == rank)


def _cell_label(reps: tuple[Any, ...], value: Any) -> str:
    """``value`` with the cell it stands for: representatives of a number field are
    ``[p0 - 1, p0, mid, p1, ..., pn, pn + 1]`` (see ``compile._representatives``)."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in reps)
    if not numeric or len(reps) < 3:
        return "another value" if value == "<other>" else _show(value)
    points = reps[1::2]
    i = reps.index(value)
    if i == 0:
        cell = f"< {points[0]:g}"
    elif i == len(reps) - 1:
        cell = f"> {points[-1]:g}"
    elif i % 2:
        cell = f"= {value:g}"
    else:
        cell = f"between {points[i // 2 - 1]:g} and {points[i // 2]:g}"
    return f"{value:g} ({cell})"


def _show(value: Any, op: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, frozenset | set):
        return "[" + ", ".join(sorted(_show(v) for v in value)) + "]"
    if isinstance(value, tuple) and op == "between":
        return f"[{_show(value[0])}, {_show(value[1])})"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready: sets become sorted lists, tuples lists."""
    if isinstance(value, frozenset | set):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    return value
