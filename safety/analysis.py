"""Static analysis of a compiled policy over its whole state × request space, and comparison.

``analyze`` walks every cell of every field the policy reads (``safety.space``: numbers cut
at the policy's constants, derived states only where some vehicle history produces them),
with every field known, and decides each region the way the engine does: the evaluator's
own ``_evaluate_once`` on the rules that hold there.  Each finding is therefore exact (see
``safety.findings`` for the codes).

A space of up to ``WHOLE_SPACE_CELLS`` cells is walked whole.  A larger one is tried whole
within ``WHOLE_SPACE_BUDGET`` splits (regions usually cover many cells); past that each
rule is analysed over the regions where it holds, and gaps over the regions where no rule
holds.  That is still exact, but a rule whose own walk exceeds ``RULE_BUDGET`` splits is
reported (``analysis-limit``) instead of being guessed about.

``compare(old, new)`` walks the union of both policies' cells and says whether NEW is
more permissive, less permissive, equivalent or mixed, with concrete examples.  Outcomes
are ordered allow < degrade < defer < deny; two degrades (or defers) are ordered by their
constraints (voice over audio over none, smaller ``max_*``, ``input: voice``, a longer
``retry_after_ms``); constraints that disagree in direction, or a different ``until``
text, make the two "different".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DriveGateError, Location
from .evaluate import Verdict
from .findings import (
    Comparison,
    Difference,
    LintFinding,
    Verdicts,
    bits,
    constant_findings,
    decision_key,
    describe,
    direction,
    example,
    example_text,
    flow,
    merge_cubes,
    rule_name,
    verdict_text,
)
from .policy.compile import CompiledPolicy, CompiledRule, condition_constants
from .space import BudgetExceeded, Region, Space, Walker

WHOLE_SPACE_CELLS = 200_000
WHOLE_SPACE_BUDGET = 100_000  # splits tried on a larger space before going rule by rule
RULE_BUDGET = 50_000  # splits per rule, rule by rule
UNBOUNDED = 50_000_000


class AnalysisLimitError(DriveGateError):
    """A comparison needed more splits than its budget."""

    code = "analysis-limit"


@dataclass
class Analysis:
    """What ``analyze`` found, and how it searched."""

    findings: list[LintFinding]
    mode: str  # "whole-space" or "per-rule"
    cells: int  # combinations of the cells of every field the policy reads
    regions: int  # regions visited
    notes: list[str] = field(default_factory=list)


@dataclass
class _Tally:
    """Per rule, each distinct set of holding rules where it holds, with its first region."""

    size: int
    regular: int
    per_rule: list[dict[int, Region]] = field(default_factory=list)
    gaps: list[Region] = field(default_factory=list)
    regions: int = 0

    def __post_init__(self) -> None:
        self.per_rule = [{} for _ in range(self.size)]

    def visit(self, region: Region) -> None:
        self.regions += 1
        for r in bits(region.holds):
            self.per_rule[r].setdefault(region.holds, region)
        if not region.holds & self.regular:
            self.gaps.append(region)


def analyze(
    policy: CompiledPolicy,
    *,
    max_examples: int = 5,
    default_loc: Location | None = None,
    rule_budget: int = RULE_BUDGET,
    whole_space: bool | None = None,
) -> Analysis:
    """Every finding about ``policy``: its constants, then its rules over the whole space.

    ``whole_space`` None chooses by size; False goes rule by rule (as for a large space).
    """
    findings = constant_findings(policy.doc)
    space = Space([policy])
    rules = [(0, rule) for rule in policy.rules]
    regular = sum(1 << i for i, rule in enumerate(policy.rules) if not rule.exception)
    here = default_loc or Location(policy.file, 1, 1)
    tally = _Tally(len(rules), regular)
    gaps_complete = True
    mode = "whole-space"
    notes: list[str] = []
    verdicts = Verdicts(policy)
    try:
        budget = UNBOUNDED if space.cells <= WHOLE_SPACE_CELLS else WHOLE_SPACE_BUDGET
        if whole_space is not None:
            budget = UNBOUNDED if whole_space else 0
        Walker(space, rules, budget).walk(tally.visit)
        findings += _rule_findings(policy, space, verdicts, tally.per_rule, regular)
        gaps, regions = tally.gaps, tally.regions
    except BudgetExceeded:
        mode = "per-rule"
        notes.append(
            f"{space.cells:.3g} combinations of cells, too many regions to walk whole: each rule was analysed "
            "over the regions where it holds and could change the decision, conflicts pair by pair "
            "(redundant rules are not told apart from shadowed ones)"
        )
        per_rule = _PerRule(policy, space, verdicts, regular, rule_budget)
        findings += per_rule.findings()
        notes += per_rule.notes
        gap_tally = _Tally(len(rules), regular)
        try:
            Walker(space, rules, rule_budget * 4).walk(gap_tally.visit, avoid=regular)
        except BudgetExceeded:
            gaps_complete = False
        gaps, regions = gap_tally.gaps, tally.regions + per_rule.steps + gap_tally.regions
    findings += _gap_findings(policy, space, verdicts, gaps, here, max_examples)
    if not gaps_complete:
        findings.append(
            LintFinding(
                "analysis-limit",
                "warning",
                here,
                f"the search for gaps stopped after {rule_budget * 4} splits; the gaps listed may not be all",
            )
        )
    findings.sort(key=lambda f: f.location)  # stable: one place's findings keep their order
    return Analysis(findings, mode, space.cells, regions, notes)


def _rule_findings(
    policy: CompiledPolicy,
    space: Space,
    verdicts: Verdicts,
    per_rule: Sequence[Mapping[int, Region]],
    regular: int,
) -> list[LintFinding]:
    rules = policy.rules
    out: list[LintFinding] = []
    inter = [0] * len(rules)
    union = [0] * len(rules)
    for r, rule in enumerate(rules):
        holdsets = per_rule[r]
        if not holdsets:
            out.append(_unreachable(rule))
            continue
        inter[r] = -1
        for mask in holdsets:
            inter[r] &= mask
            union[r] |= mask
        without = ~(1 << r)
        if all(decision_key(verdicts(m)) == decision_key(verdicts(m & without)) for m in holdsets):
            out.append(_redundancy(rule.id, rule.source.loc, r, holdsets, verdicts, policy))
    overrides = _Overrides(rules)
    for r, rule in enumerate(rules):
        for q in bits(union[r]):
            overrides.overlap(r, q)
        if not regular >> r & 1:
            continue
        candidates = union[r] & regular & ~((2 << r) - 1)  # later rules only: each pair once
        for q in bits(candidates):
            other = rules[q]
            if other.outcome == rule.outcome or inter[r] >> q & 1 or inter[q] >> r & 1:
                continue
            # Show the pair deciding on its own: an overlap no exception caps, where there is one.
            mask, region = min(
                ((m, reg) for m, reg in per_rule[r].items() if m >> q & 1), key=lambda item: bool(item[0] & ~regular)
            )
            out += overrides.conflict(r, q, example(space, region), verdicts(mask))
    return out + overrides.unused()


class _Overrides:
    """The rules' ``overrides`` declarations: they turn a conflict into an intended one.

    A declared pair whose overlap the declaring rule decides (it is the more restrictive)
    is not reported; one the other rule decides is ``override-ineffective`` (evaluation is
    always most restrictive wins, so the declaration cannot be what happens); a declared
    pair that never holds together is ``override-unused``.
    """

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = rules
        index = {rule.id: i for i, rule in enumerate(rules)}
        self.declared = {
            (r, index[other]) for r, rule in enumerate(rules) for other in rule.source.overrides if other in index
        }
        self.overlapping: set[tuple[int, int]] = set()

    def pairs(self) -> set[tuple[int, int]]:
        """Declared pairs, each as (lower index, higher index)."""
        return {(min(a, b), max(a, b)) for a, b in self.declared}

    def overlap(self, r: int, q: int) -> None:
        """Rules ``r`` and ``q`` hold together somewhere."""
        self.overlapping.add((r, q))
        self.overlapping.add((q, r))

    def conflict(self, r: int, q: int, found: dict[str, dict[str, Any]], decided: Verdict | None) -> list[LintFinding]:
        """The finding for a conflict between rules ``r`` < ``q``, as the declarations have it."""
        self.overlap(r, q)
        rule, other = self.rules[r], self.rules[q]
        out = []
        for a, b in ((r, q), (q, r)):
            if (a, b) in self.declared and self.rules[a].rank < self.rules[b].rank:
                out.append(_ineffective(self.rules[a], self.rules[b], found, decided))
        if out or (r, q) in self.declared or (q, r) in self.declared:
            return out
        return [_conflict(rule, other, found, decided)]

    def unused(self) -> list[LintFinding]:
        out = []
        for a, b in sorted(self.declared):
            if (a, b) not in self.overlapping:
                rule, other = self.rules[a], self.rules[b]
                out.append(
                    LintFinding(
                        "override-unused",
                        "warning",
                        rule.source.overrides[other.id],
                        f"rule '{rule.id}' declares it overrides '{other.id}', but the two never hold together",
                    )
                )
        return out


def _ineffective(
    rule: CompiledRule, other: CompiledRule, found: dict[str, dict[str, Any]], decided: Verdict | None
) -> LintFinding:
    result = f" -> {verdict_text(decided)}" if decided is not None else ""
    return LintFinding(
        "override-ineffective",
        "warning",
        rule.source.overrides[other.id],
        f"rule '{rule.id}' ({rule.outcome.value}) declares it overrides '{other.id}' ({other.outcome.value}, line "
        f"{other.source.loc.line}), but where both hold the more restrictive '{other.id}' decides (most "
        f"restrictive wins), e.g. {example_text(found)}{result}",
        found,
    )


def _unreachable(rule: CompiledRule) -> LintFinding:
    return LintFinding(
        "unreachable-rule",
        "error",
        rule.source.loc,
        f"rule '{rule.id}' can never apply: its condition holds in no state and request that can occur",
    )


def _conflict(
    rule: CompiledRule, other: CompiledRule, found: dict[str, dict[str, Any]], decided: Verdict | None
) -> LintFinding:
    """``other`` (the later rule) and ``rule`` overlap partially with different outcomes."""
    result = f" -> {verdict_text(decided)}" if decided is not None else " (where both hold)"
    return LintFinding(
        "conflict",
        "warning",
        other.source.loc,
        f"rules '{other.id}' ({other.outcome.value}) and '{rule.id}' ({rule.outcome.value}, line "
        f"{rule.source.loc.line}) overlap and neither's condition implies the other's: where both hold "
        f"only the combination (most restrictive wins) decides, e.g. {example_text(found)}{result}",
        found,
    )


class _Stop(Exception):
    """A walk found what it was looking for."""


class _PerRule:
    """Rule-by-rule analysis of a space too large to walk whole.

    A rule cannot change a decision where a rule of the same kind (ordinary or exception)
    certainly holds with a more restrictive outcome, or with the same outcome and
    constraints that absorb its own (checked with the evaluator: the two together decide
    as the other alone).  Those sub-regions are skipped; in the rest, the walk stops at the
    first cell where removing the rule changes the decision.
    """

    def __init__(self, policy: CompiledPolicy, space: Space, verdicts: Verdicts, regular: int, budget: int) -> None:
        self.policy, self.space, self.verdicts, self.regular, self.budget = policy, space, verdicts, regular, budget
        self.rules = [(0, rule) for rule in policy.rules]
        self.absorbs: dict[tuple[int, int], bool] = {}
        self.steps = 0
        self.notes: list[str] = []

    def _absorbs(self, q: int, r: int) -> bool:
        key = (q, r)
        if key not in self.absorbs:
            rules = self.policy.rules
            if rules[q].exception:
                self.absorbs[key] = dict(rules[q].constraints) == dict(rules[r].constraints)
            else:
                both, alone = self.verdicts((1 << q) | (1 << r)), self.verdicts(1 << q)
                self.absorbs[key] = decision_key(both) == decision_key(alone)
        return self.absorbs[key]

    def findings(self) -> list[LintFinding]:
        rules = self.policy.rules
        out: list[LintFinding] = []
        reached = [False] * len(rules)
        usable = [False] * len(rules)
        everyone = (1 << len(rules)) - 1
        for r, rule in enumerate(rules):
            same_kind = (everyone & ~self.regular if rule.exception else self.regular) & ~(1 << r)

            def prune(holds: int, settled: bool, r: int = r, same_kind: int = same_kind) -> bool:
                if holds >> r & 1:
                    reached[r] = True
                # Skip a dominated sub-region only once the rule is known to be reachable.
                return reached[r] and any(
                    rules[q].rank > rules[r].rank or (rules[q].rank == rules[r].rank and self._absorbs(q, r))
                    for q in bits(holds & same_kind)
                )

            def visit(region: Region, r: int = r) -> None:
                holds = region.holds
                if decision_key(self.verdicts(holds)) != decision_key(self.verdicts(holds & ~(1 << r))):
                    raise _Stop

            walker = Walker(self.space, self.rules, self.budget)
            matters = False
            try:
                walker.walk(visit, focus=r, prune=prune, whole=False)
            except _Stop:
                matters = True
            except BudgetExceeded:
                out.append(self._limit(r))
                continue
            finally:
                self.steps += walker.steps
            usable[r] = reached[r]
            if not reached[r]:
                out.append(_unreachable(rule))
            elif not matters:
                out.append(
                    LintFinding(
                        "redundant-rule",
                        "warning",
                        rule.source.loc,
                        f"rule '{rule.id}' is redundant: wherever it applies, the decision is the same without it",
                    )
                )
        return out + self._conflicts(usable)

    def _limit(self, r: int) -> LintFinding:
        rule = self.policy.rules[r]
        return LintFinding(
            "analysis-limit",
            "warning",
            rule.source.loc,
            f"rule '{rule.id}': analysis stopped after {self.budget} splits; whether it is reachable or "
            "redundant was not decided",
        )

    def _accepts(self) -> list[dict[int, int]]:
        """Per rule and dim it reads: the cells (a bit mask) where the rule is not certainly false."""
        out: list[dict[int, int]] = []
        for p, rule in self.rules:
            found: dict[str, set[Any]] = {}
            if rule.source.when is not None:
                condition_constants(rule.source.when, found)
            masks: dict[int, int] = {}
            for name in found:
                d = self.space.views[p][name]
                masks[d] = sum(
                    1 << j
                    for j, value in enumerate(self.space.dims[d].values)
                    if rule.test(*self.space.split({d: value}, p)) is not False
                )
            out.append(masks)
        return out

    def _conflicts(self, usable: Sequence[bool]) -> list[LintFinding]:
        rules = self.policy.rules
        accepts = self._accepts()
        out: list[LintFinding] = []
        unchecked = 0
        overrides = _Overrides(rules)
        declared = overrides.pairs()
        for r, rule in enumerate(rules):
            for q in range(r + 1, len(rules)):
                other = rules[q]
                conflicting = not (rule.exception or other.exception or other.outcome == rule.outcome)
                if not (usable[r] and usable[q] and (conflicting or (r, q) in declared)):
                    continue
                if any(accepts[r][d] & mask == 0 for d, mask in accepts[q].items() if d in accepts[r]):
                    continue  # some field they both read has no cell both accept: they never overlap
                seen: dict[int, Region] = {}

                def visit(region: Region, seen: dict[int, Region] = seen) -> None:
                    seen.setdefault(region.holds, region)
                    if all(k in seen for k in (1, 2, 3)):
                        raise _Stop

                def known(holds: int, settled: bool, seen: dict[int, Region] = seen) -> bool:
                    return settled and (holds == 0 or holds in seen)  # only new ways of holding matter

                walker = Walker(self.space, [self.rules[r], self.rules[q]], self.budget)
                try:
                    walker.walk(visit, prune=known, whole=False)
                except _Stop:
                    pass
                except BudgetExceeded:
                    unchecked += 1
                    overrides.overlap(r, q)  # not known not to: never call a declaration unused on a guess
                    continue
                finally:
                    self.steps += walker.steps
                if 3 in seen:
                    overrides.overlap(r, q)
                if conflicting and all(k in seen for k in (1, 2, 3)):
                    out += overrides.conflict(r, q, example(self.space, seen[3]), None)
        out += overrides.unused()
        if unchecked:
            self.notes.append(f"{unchecked} pair(s) of rules were not checked for conflict (analysis limit)")
        return out


def _redundancy(
    rule_id: str, loc: Location, r: int, holdsets: Mapping[int, Region], verdicts: Verdicts, policy: CompiledPolicy
) -> LintFinding:
    """Shadowed when, wherever the rule holds, one other rule alone decides the same; else redundant."""
    chosen: list[int] = []
    for mask in holdsets:
        target = decision_key(verdicts(mask))
        alone = [q for q in bits(mask) if q != r and decision_key(verdicts(1 << q)) == target]
        if not alone:
            return LintFinding(
                "redundant-rule",
                "warning",
                loc,
                f"rule '{rule_id}' is redundant: wherever it applies, the decision is the same without it",
            )
        if not any(q in chosen for q in alone):
            chosen.append(alone[0])
    names = [rule_name(policy.rules[q]) for q in sorted(chosen)]
    by = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return LintFinding(
        "shadowed-rule",
        "warning",
        loc,
        f"rule '{rule_id}' is shadowed by {by}: wherever it applies, "
        f"{'that rule' if len(names) == 1 else 'one of those rules'} alone already decides the same, "
        "so removing it changes no decision",
    )


def _gap_findings(
    policy: CompiledPolicy,
    space: Space,
    verdicts: Verdicts,
    gaps: Sequence[Region],
    here: Location,
    max_examples: int,
) -> list[LintFinding]:
    by_verdict: dict[tuple[Any, ...], list[Region]] = {}
    for region in gaps:
        by_verdict.setdefault(decision_key(verdicts(region.holds)), []).append(region)
    groups: list[tuple[int, str, str, dict[str, dict[str, Any]]]] = []
    total = space.cells
    for regions in by_verdict.values():
        verdict = verdicts(regions[0].holds)
        capped = ""
        if regions[0].holds:
            names = ", ".join(f"'{policy.rules[i].id}'" for i in bits(regions[0].holds))
            capped = f", capped by exception {names}"
        how = f"{policy.default.value}{capped}" + (f" -> {verdict_text(verdict)}" if capped else "")
        for cube in merge_cubes(space, regions):
            cells = math.prod(len(c) for c in cube)
            point = {
                i: space.dims[i].values[min(c)]
                for i, c in zip(space.read_dims, cube, strict=True)
                if len(c) < len(space.dims[i].values)
            }
            found = example(space, Region(point, 0, cells))
            groups.append((cells, describe(space, cube), how, found))
    groups.sort(key=lambda g: (-g[0], g[1]))
    out = [
        LintFinding(
            "gap",
            "warning",
            here,
            f"no rule applies to {desc} ({cells} of {total} cells); the default decides: {how}; "
            f"e.g. {example_text(found)}",
            found,
        )
        for cells, desc, how, found in groups[:max_examples]
    ]
    if len(groups) > max_examples:
        rest = groups[max_examples:]
        out.append(
            LintFinding(
                "gap",
                "warning",
                here,
                f"{len(rest)} more group(s) of cells where no rule applies ({sum(g[0] for g in rest)} of {total} "
                f"cells) not shown (--max-examples {max_examples})",
            )
        )
    return out


# ---------------------------------------------------------------------- compare
_DIRECTION_ORDER = {"looser": 0, "different": 1, "stricter": 2}


def compare(old: CompiledPolicy, new: CompiledPolicy, *, max_examples: int = 10, budget: int = UNBOUNDED) -> Comparison:
    """Compare two policies over the union of their cells (every field known)."""
    space = Space([old, new])
    rules = [(0, rule) for rule in old.rules] + [(1, rule) for rule in new.rules]
    n_old = len(old.rules)
    old_mask = (1 << n_old) - 1
    verdicts_old, verdicts_new = Verdicts(old), Verdicts(new)
    differing: dict[str, int] = {}
    kinds: dict[tuple[Any, ...], list[Any]] = {}

    def visit(region: Region) -> None:
        v_old, v_new = verdicts_old(region.holds & old_mask), verdicts_new(region.holds >> n_old)
        way = direction(v_old, v_new)
        if way is None:
            return
        differing[way] = differing.get(way, 0) + region.cells
        key = (way, decision_key(v_old), v_old.rules, decision_key(v_new), v_new.rules)
        if key in kinds:
            kinds[key][1] += region.cells
        else:
            kinds[key] = [region, region.cells, v_old, v_new, way]

    try:
        Walker(space, rules, budget).walk(visit)
    except BudgetExceeded as exc:
        raise AnalysisLimitError(
            f"comparing with {old.file} needs more than {budget} splits", Location(new.file)
        ) from exc
    labels = ("old", "new")
    # Round-robin over the directions (looser first), largest groups of cells first in each:
    # a reviewer of a mixed change must see both ways.
    queues = [
        sorted((k for k in kinds.values() if k[4] == way), key=lambda k: -k[1])
        for way in sorted(_DIRECTION_ORDER, key=_DIRECTION_ORDER.__getitem__)
    ]
    chosen = [k for row in itertools.zip_longest(*queues) for k in row if k is not None][:max_examples]
    examples = []
    for region, cells, v_old, v_new, way in chosen:
        found = example(space, region, labels)
        if not space.shared_state:
            witness = space.exists(region.assign) or {}
            for i, value in witness.items():
                if not space.dims[i].read:
                    found["state"][space.dims[i].field] = value
        examples.append(Difference(way, found, v_old, v_new, cells))
    ways = set(differing)
    if not ways:
        result = "equivalent"
    elif ways == {"looser"}:
        result = "more-permissive"
    elif ways == {"stricter"}:
        result = "less-permissive"
    else:
        result = "mixed"
    notes = []
    if not space.shared_state:
        notes.append(
            "the policies derive driving_state, workload or speed_band differently: each policy's derived "
            "fields are marked (old)/(new), over the same speed, gear and workload signals; each is checked "
            "against its own thresholds, not against a shared history (a workload hold in one and not the "
            "other, say), so an example may need the two to have seen different recent driving"
        )
    return Comparison(old.file, new.file, result, space.cells, differing, examples, notes)


__all__ = [
    "Analysis",
    "AnalysisLimitError",
    "Comparison",
    "Difference",
    "LintFinding",
    "analyze",
    "compare",
    "direction",
    "flow",
]
