"""Static analysis of a compiled policy over its whole state × request space, and comparison.

``analyze`` walks every cell of every field the policy reads (``safety.workflow.space``: numbers cut
at the policy's constants, derived states only where some vehicle history produces them),
with every field known, and decides each region the way the engine does: the evaluator's
own ``_evaluate_once`` on the rules that hold there.  Each finding is therefore exact (see
``safety.workflow.findings`` for the codes).

A space of up to ``WHOLE_SPACE_CELLS`` cells is walked whole.  A larger one is tried whole
within ``WHOLE_SPACE_BUDGET`` splits (regions usually cover many cells); past that each
rule is analysed over the regions where it holds, and gaps over the regions where no rule
holds.  That is still exact, but a rule whose own walk exceeds ``RULE_BUDGET`` splits is
reported (``analysis-limit``) instead of being guessed about.  Those walks, and one per
pair of rules for conflicts, are made by ``FirstRegions``: the walk's answer and its very
count of splits (budgets included), without walking the same sub-walk twice.

``compare`` lives in ``safety.workflow.findings`` and is exported here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safety.decide.evaluate import Verdict
from safety.errors import AnalysisLimitError, Location
from safety.policy.compile import CompiledPolicy, CompiledRule
from safety.workflow.findings import (
    UNBOUNDED,
    Comparison,
    Difference,
    LintFinding,
    Verdicts,
    compare,
    conflict,
    constant_findings,
    decision_key,
    direction,
    example,
    flow,
    gap_findings,
    ineffective_override,
    rule_name,
    unreachable_rule,
)
from safety.workflow.space import DERIVED, BudgetExceeded, Region, Space, Walker, bits

#: ``progress(stage, done, total)``: how far an analysis is (``total`` 0 when not known).
Progress = Callable[[str, int, int], None]

WHOLE_SPACE_CELLS = 200_000
WHOLE_SPACE_BUDGET = 100_000  # splits tried on a larger space before going rule by rule
RULE_BUDGET = 50_000  # splits per rule, rule by rule


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
    progress: Progress | None = None,
) -> Analysis:
    """Every finding about ``policy``: its constants, then its rules over the whole space.

    ``whole_space`` None chooses by size; False goes rule by rule (as for a large space).
    ``progress(stage, done, total)`` hears how far the analysis is (total 0: not known).
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
    budget = UNBOUNDED if space.cells <= WHOLE_SPACE_CELLS else WHOLE_SPACE_BUDGET
    if whole_space is not None:
        budget = UNBOUNDED if whole_space else 0
    gap_walk = _gap_walk(space, rules, regular, rule_budget) if 0 < budget < UNBOUNDED else None
    try:
        if gap_walk is not None and gap_walk[2] > budget:
            # The whole walk makes every split the search for gaps makes (and those under a
            # rule that holds): past the budget already, so the same BudgetExceeded, sooner.
            raise BudgetExceeded
        visit = tally.visit
        if progress is not None:

            def visit(region: Region) -> None:
                tally.visit(region)
                progress("regions", tally.regions, 0)

        Walker(space, rules, budget).walk(visit)
        findings += _rule_findings(policy, space, verdicts, tally.per_rule, regular)
        gaps, regions = tally.gaps, tally.regions
    except BudgetExceeded:
        mode = "per-rule"
        notes.append(
            f"{space.cells:.3g} combinations of cells, too many regions to walk whole: each rule was analysed "
            "over the regions where it holds and could change the decision, conflicts pair by pair "
            "(redundant rules are not told apart from shadowed ones)"
        )
        per_rule = _PerRule(policy, space, verdicts, regular, rule_budget, progress)
        findings += per_rule.findings()
        notes += per_rule.notes
        gap_tally, gaps_complete, _ = gap_walk or _gap_walk(space, rules, regular, rule_budget)
        gaps, regions = gap_tally.gaps, tally.regions + per_rule.steps + gap_tally.regions
    findings += gap_findings(policy, space, verdicts, gaps, here, max_examples)
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


def _gap_walk(
    space: Space, rules: Sequence[tuple[int, CompiledRule]], regular: int, rule_budget: int
) -> tuple[_Tally, bool, int]:
    """The regions where no ordinary rule holds, whether that search finished, and its splits."""
    tally = _Tally(len(rules), regular)
    walker = Walker(space, rules, rule_budget * 4)
    try:
        walker.walk(tally.visit, avoid=regular)
    except BudgetExceeded:
        return tally, False, walker.steps
    return tally, True, walker.steps


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
            out.append(unreachable_rule(rule))
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
                out.append(ineffective_override(self.rules[a], self.rules[b], found, decided))
        if out or (r, q) in self.declared or (q, r) in self.declared:
            return out
        return [conflict(rule, other, found, decided)]

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


def _decides(rule: CompiledRule) -> tuple[Any, ...]:
    """What of an ordinary rule a decision depends on: its outcome and constraints."""
    return (rule.rank, tuple(sorted(rule.constraints.items())))


class _PerRule:
    """Rule-by-rule analysis of a space too large to walk whole.

    A rule cannot change a decision where a rule of the same kind (ordinary or exception)
    certainly holds with a more restrictive outcome, or with the same outcome and
    constraints that absorb its own (checked with the evaluator: the two together decide
    as the other alone).  Those sub-regions are skipped; in the rest, the walk stops at the
    first cell where removing the rule changes the decision.
    """

    def __init__(
        self,
        policy: CompiledPolicy,
        space: Space,
        verdicts: Verdicts,
        regular: int,
        budget: int,
        progress: Progress | None = None,
    ) -> None:
        self.policy, self.space, self.verdicts, self.regular, self.budget = policy, space, verdicts, regular, budget
        self.progress = progress
        self.rules = [(0, rule) for rule in policy.rules]
        self.absorbs: dict[tuple[Any, ...], bool] = {}
        self.steps = 0
        self.notes: list[str] = []

    def _dominators(self, r: int) -> int:
        """The rules of r's kind that make it irrelevant where they hold (a bit mask).

        Those more restrictive, and those of the same outcome whose constraints absorb r's
        (the two decide as the other alone: for ordinary rules that depends only on their
        outcomes, constraints and order, so it is asked once per such combination).
        """
        rules = self.policy.rules
        out = 0
        for q, other in enumerate(rules):
            if q == r or other.exception != rules[r].exception or other.rank < rules[r].rank:
                continue
            if other.rank == rules[r].rank:
                if other.exception:
                    if dict(other.constraints) != dict(rules[r].constraints):
                        continue
                else:
                    key = (_decides(other), _decides(rules[r]), q < r)
                    if key not in self.absorbs:
                        both, alone = self.verdicts((1 << q) | (1 << r)), self.verdicts(1 << q)
                        self.absorbs[key] = decision_key(both) == decision_key(alone)
                    if not self.absorbs[key]:
                        continue
            out |= 1 << q
        return out

    def findings(self) -> list[LintFinding]:
        rules = self.policy.rules
        out: list[LintFinding] = []
        reached = [False] * len(rules)
        usable = [False] * len(rules)
        walker = FirstRegions(self.space, self.rules, self.budget)
        for r, rule in enumerate(rules):
            if self.progress is not None:
                self.progress("rules analysed", r, len(rules))

            def prune(holds: int, settled: bool, r: int = r, dominators: int = self._dominators(r)) -> bool:
                if holds >> r & 1:
                    reached[r] = True
                # Skip a dominated sub-region only once the rule is known to be reachable.
                return reached[r] and bool(holds & dominators)

            def matters(holds: int, r: int = r) -> bool | None:
                return decision_key(self.verdicts(holds)) != decision_key(self.verdicts(holds & ~(1 << r))) or None

            # The walk stops at the first region where r changes the decision; below a split
            # where r holds, r is reachable, so prune depends on the rules that hold alone.
            try:
                matters_somewhere = bool(walker.search(matters, (True,), focus=r, prune=prune, memo_mask=1 << r))
            except BudgetExceeded:
                out.append(self._limit(r))
                continue
            finally:
                self.steps += walker.steps
            usable[r] = reached[r]
            if not reached[r]:
                out.append(unreachable_rule(rule))
            elif not matters_somewhere:
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

    def _conflicts(self, usable: Sequence[bool]) -> list[LintFinding]:
        rules = self.policy.rules
        # Per rule and dim it reads: the cells where the rule is not certainly false.
        accepts = [self.space.rule_info(p, rule).accepts for p, rule in self.rules]
        out: list[LintFinding] = []
        unchecked = 0
        overrides = _Overrides(rules)
        declared = overrides.pairs()
        for r, rule in enumerate(rules):
            if self.progress is not None:
                self.progress("rules checked for conflicts", r, len(rules))
            for q in range(r + 1, len(rules)):
                other = rules[q]
                conflicting = not (rule.exception or other.exception or other.outcome == rule.outcome)
                if not (usable[r] and usable[q] and (conflicting or (r, q) in declared)):
                    continue
                if any(accepts[r][d] & mask == 0 for d, mask in accepts[q].items() if d in accepts[r]):
                    continue  # some field they both read has no cell both accept: they never overlap
                walker = FirstRegions(self.space, [self.rules[r], self.rules[q]], self.budget)
                try:
                    seen = walker.search(lambda holds: holds or None, (1, 2, 3))
                except BudgetExceeded:
                    unchecked += 1
                    overrides.overlap(r, q)  # not known not to: never call a declaration unused on a guess
                    continue
                finally:
                    self.steps += walker.steps
                if 3 in seen:
                    overrides.overlap(r, q)
                if conflicting and all(k in seen for k in (1, 2, 3)):
                    out += overrides.conflict(r, q, example(self.space, Region(seen[3], 3, 0)), None)
        out += overrides.unused()
        if unchecked:
            self.notes.append(f"{unchecked} pair(s) of rules were not checked for conflict (analysis limit)")
        return out


# ---------------------------------------------------------------------- the search
class _Found(Exception):
    """Every kind of region asked for has been found."""


@dataclass(frozen=True)
class _Sub:
    """A sub-walk: its splits and, per kind, its first region (split number, dims fixed on the way)."""

    size: int
    first: tuple[tuple[Hashable, int, tuple[tuple[int, Any], ...]], ...]
    again: bool = True  # whether every sub-walk of the same description is this one


_NOTHING, _NOTHING_ONCE = _Sub(1, ()), _Sub(1, (), False)  # sub-walks that find nothing


class FirstRegions(Walker):
    """What ``walk(whole=False)`` finds first of each kind of region, without repeating itself.

    ``search`` returns the first region of each kind ``label(holds)`` names (None: of no
    interest) in the walk's order, stopping once every kind in ``kinds`` is found, or
    raising BudgetExceeded, after exactly the walk's number of splits (``steps``).

    Below a split, the walk depends only on its description: the rules open and those
    that hold, which dims the open rules read are fixed, the constrained dims' values
    while an open rule reads a free constrained dim (feasibility), and for an open rule
    not decided per field the sides of its constants its fields are on (``RuleInfo.code``).
    A sub-walk is walked once per description, then counted (nothing in it can be found
    first again); so is a sibling of the same description.  ``prune`` must depend only on
    ``holds`` where every rule of ``memo_mask`` holds: only there are sub-walks reused.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        space = self.space
        self._others = (1 << len(self.rules)) - 1 & ~self.by_mask
        self._constrained = sum(1 << d for d in space.constrained)
        # Feasibility can rule out a region only once a derived state is fixed.
        self._feasibility = any(space.dims[d].field in DERIVED for d, _, _ in self.read_by)
        # Per dim and value: what fixing it adds to the code of each rule not decided per
        # field, and its class: values of a class that make the same rules false have the
        # same sub-walk (feasibility tells all values of a constrained dim apart).
        self._writes: dict[int, list[tuple[tuple[int, int], ...]]] = {}
        self._alike: dict[int, list[Any]] = {}
        for d, readers, size in self.read_by:
            writes: list[tuple[tuple[int, int], ...]] = [()] * size
            for i in bits(readers & self._others):
                writes = [(*w, (i, add)) for w, add in zip(writes, self.info[i].code[d], strict=True)]
            self._writes[d] = writes
            exact = self._feasibility and d in space.constrained
            self._alike[d] = list(range(size)) if exact else writes

    def search(
        self,
        label: Callable[[int], Hashable | None],
        kinds: Collection[Hashable],
        *,
        focus: int | None = None,
        prune: Callable[[int, bool], bool] | None = None,
        memo_mask: int = 0,
    ) -> dict[Hashable, dict[int, Any]]:
        """The dims fixed by the first region of each kind found (``steps``: its splits)."""
        self._label, self._kinds, self._focus, self._prune, self._memo_mask = label, kinds, focus, prune, memo_mask
        self._found: dict[Hashable, dict[int, Any]] = {}
        self._memo: dict[tuple[Any, ...], _Sub] = {}
        self._code = [0] * len(self.rules)
        self.steps = 0
        if not self.start():
            return {}
        with contextlib.suppress(_Found):
            self._node({}, 0, *self.settle((1 << len(self.rules)) - 1, 0, None, 0, 0))
        return self._found

    def _node(self, assign: dict[int, Any], fixed: int, still: int, holds: int) -> _Sub:
        """A split of the walk, its rules settled: ``still`` open, ``holds`` holding."""
        self.steps += 1
        if self.steps > self.budget:
            raise BudgetExceeded
        if not still:
            return self._leaf(assign, holds)
        if holds & self._memo_mask != self._memo_mask:
            sub = self._split(assign, fixed, still, holds)
            return _Sub(sub.size, sub.first, False)
        reads = 0
        for d, readers, _ in self.read_by:
            if still & readers:
                reads |= 1 << d
        key: tuple[Any, ...] = (still, holds, fixed & reads)
        if reads & ~fixed & self._constrained and self._feasibility:
            key += self.space.feasibility_key(assign)
        if still & self._others:
            key += tuple(self._code[i] for i in bits(still & self._others))
        known = self._memo.get(key)
        if known is not None:
            self.steps -= 1
            self._skip(known, assign)
            return known
        known = self._memo[key] = self._split(assign, fixed & reads, still, holds)
        return known

    def _leaf(self, assign: dict[int, Any], holds: int) -> _Sub:
        """A region where every rule is settled (its split counted)."""
        again = holds & self._memo_mask == self._memo_mask
        focus = self._focus
        skip = (focus is not None and not holds >> focus & 1) or (self._prune is not None and self._prune(holds, True))
        kind = None if skip else self._label(holds)
        if kind is None:
            return _NOTHING if again else _NOTHING_ONCE
        if kind not in self._found:
            self._found[kind] = dict(assign)
            if all(k in self._found for k in self._kinds):
                raise _Found
        return _Sub(1, ((kind, 1, ()),), again)

    def _split(self, assign: dict[int, Any], fixed: int, still: int, holds: int) -> _Sub:
        focus = self._focus
        if (focus is not None and not (holds | still) >> focus & 1) or (
            self._prune is not None and self._prune(holds, False)
        ):
            return _NOTHING
        dim = self.choose(assign, still, focus)
        pending = self.pending(assign, dim)
        possible = self.space.possible(assign, dim) if self._feasibility and dim in self.space.constrained else None
        targets, writes, alike, rejects = self.targets[dim], self._writes[dim], self._alike[dim], self.rejects[dim]
        deciding = still & self.readers[dim] & self.by_mask
        code = self._code
        size = 1
        first: dict[Hashable, tuple[Hashable, int, tuple[tuple[int, Any], ...]]] = {}
        siblings: dict[tuple[int, Any], _Sub] = {}  # by description: the rules made false, the writes
        for j, value in enumerate(self.space.dims[dim].values):
            assign[dim] = value
            if possible is not None and not possible[j]:
                continue
            same = (rejects[j] & deciding, alike[j])
            sub = siblings.get(same)
            if sub is None:
                for where, name in targets:
                    where[name] = value
                for i, add in writes[j]:
                    code[i] += add
                sub = self._node(assign, fixed | 1 << dim, *self.settle(still, holds, dim, j, pending))
                for i, add in writes[j]:
                    code[i] -= add
                if sub.again:
                    siblings[same] = sub
                for kind, offset, path in sub.first:
                    if kind not in first:
                        first[kind] = (kind, size + offset, ((dim, value), *path))
            else:  # counted: nothing in it is found first again
                if self.steps + sub.size > self.budget:
                    self.steps = self.budget + 1
                    raise BudgetExceeded
                self.steps += sub.size
            size += sub.size
        del assign[dim]
        for where, name in targets:
            where.pop(name, None)
        return _Sub(size, tuple(first.values()))

    def _skip(self, sub: _Sub, assign: Mapping[int, Any]) -> None:
        """Count a sub-walk already made, noting what it finds first, as the walk would."""
        base = self.steps
        for kind, offset, path in sorted((f for f in sub.first if f[0] not in self._found), key=lambda f: f[1]):
            if base + offset > self.budget:
                break
            self._found[kind] = {**assign, **dict(path)}
            if all(k in self._found for k in self._kinds):
                self.steps = base + offset
                raise _Found
        if base + sub.size > self.budget:
            self.steps = self.budget + 1  # where the walk stops
            raise BudgetExceeded
        self.steps = base + sub.size


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
