"""Lint findings, the checks of a policy's constants, and how cells and verdicts are shown.

The whole-space analysis that produces most findings is ``safety.workflow.analysis``; this module
holds what it shares with ``lint``, the findings' texts and the grouping of gaps.  The codes:

- ``unreachable-rule``: the rule holds in no combination that can occur;
- ``shadowed-rule``: wherever it holds, the decision is the same without it and another
  rule alone already decides the same (named); ``redundant-rule``: the decision is the same
  without it, but no single other rule accounts for that (the default, or several rules);
- ``conflict``: two ordinary rules with different outcomes hold together somewhere and
  neither's condition implies the other's, so only "most restrictive wins" decides;
- ``gap``: combinations where no ordinary rule holds and the default decides, grouped;
- ``override-ineffective``: a rule declares ``overrides: [other]`` but where both hold the
  other is the more restrictive and decides; ``override-unused``: the two never hold together
  (a declared override is otherwise not reported as a conflict);
- ``threshold-out-of-range``, ``narrow-hysteresis``, ``weak-ref``: checks of the constants;
- ``unmapped-signal`` (``lint --vehicle``), ``analysis-limit`` (a walk ran out of budget).

It also holds ``compare(old, new)``: it walks the union of both policies' cells and says
whether NEW is more permissive, less permissive, equivalent or mixed, with concrete
examples.  Outcomes are ordered allow < degrade < defer < deny; two degrades (or defers)
are ordered by their constraints (voice over audio over none, smaller ``max_*``,
``input: voice``, a longer ``retry_after_ms``); constraints that disagree in direction, or
a different ``until`` text, make the two "different".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from safety.decide.evaluate import Evaluator, Verdict
from safety.errors import AnalysisLimitError, Location
from safety.policy.compile import CompiledPolicy, CompiledRule, Interval
from safety.policy.model import PolicyDoc, Test
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.workflow.space import OTHER, BudgetExceeded, Region, Space, Walker, bits, merge_cubes

Severity = Literal["error", "warning"]
UNBOUNDED = 50_000_000  # splits: a walk that is not to stop
MIN_REF = 8  # characters: shorter refs ("AAOS") do not name a clause
# Narrowest sensible hysteresis per signal (units of the signal): wheel-speed noise is
# about 0.5 km/h, steering-angle sensors jitter by a degree or two.
MIN_HYSTERESIS = {"speed": 1.0, "steering_angle": 5.0, "steering_rate": 10.0, "accelerator_pedal": 2.0}


@dataclass(frozen=True)
class LintFinding:
    """One problem found in a policy: a stable code, a severity, a place and a message."""

    code: str
    severity: Severity
    location: Location
    message: str
    example: Mapping[str, Any] | None = None  # {"state": {...}, "request": {...}} where it shows

    def __str__(self) -> str:
        return f"{self.location}: {self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``drivegate lint --format json``)."""
        out: dict[str, Any] = {
            "file": self.location.file,
            "line": self.location.line,
            "col": self.location.col,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }
        if self.example is not None:
            out["example"] = dict(self.example)
        return out


# ---------------------------------------------------------------------- constants
def constant_findings(doc: PolicyDoc) -> list[LintFinding]:
    """Thresholds outside physical ranges, too-narrow hysteresis, refs too short to name a clause."""
    out: list[LintFinding] = []
    for rule in doc.rules:
        if len(rule.ref.strip()) < MIN_REF:
            out.append(
                LintFinding(
                    "weak-ref",
                    "warning",
                    rule.loc,
                    f"rule '{rule.id}': ref '{rule.ref}' is too short to name a clause ({len(rule.ref.strip())} "
                    f"characters, fewer than {MIN_REF}); give the document and the clause, e.g. 'NHTSA-VM §V.F(a)'",
                )
            )
        for test in condition_tests(rule.when):
            out += _test_range(rule.id, test)
    st = doc.state
    speed_top = CANONICAL_SIGNALS["speed"].physical_range or (0.0, math.inf)
    if st.standstill is not None:
        for key, value in (("on_below", st.standstill.on), ("off_above", st.standstill.off)):
            if value > max(abs(speed_top[0]), speed_top[1]):
                out.append(_out_of_range(st.standstill.loc, f"state.standstill.{key}", "speed", value, abs_=True))
        width = st.standstill.off - st.standstill.on
        if width < MIN_HYSTERESIS["speed"]:
            out.append(
                LintFinding(
                    "narrow-hysteresis",
                    "warning",
                    st.standstill.loc,
                    f"state.standstill: on_below ({st.standstill.on:g}) and off_above ({st.standstill.off:g}) are "
                    f"{width:g} km/h apart, under {MIN_HYSTERESIS['speed']:g} km/h: wheel-speed noise will make "
                    "driving_state flap",
                )
            )
    for i, trig in enumerate(st.workload_triggers):
        if trig.threshold is None:
            continue
        what = f"state.workload.high_when[{i}]"
        spec = CANONICAL_SIGNALS[trig.signal]
        for key, value in (("on_above", trig.threshold.on), ("off_below", trig.threshold.off)):
            if spec.physical_range is not None and not _in_range(value, spec.physical_range, trig.use_abs):
                out.append(_out_of_range(trig.loc, f"{what}.{key}", trig.signal, value, abs_=trig.use_abs))
        width = trig.threshold.on - trig.threshold.off
        minimum = MIN_HYSTERESIS.get(trig.signal)
        if minimum is not None and width < minimum:
            out.append(
                LintFinding(
                    "narrow-hysteresis",
                    "warning",
                    trig.loc,
                    f"{what}: on_above ({trig.threshold.on:g}) and off_below ({trig.threshold.off:g}) are {width:g} "
                    f"{spec.unit} apart, under {minimum:g} {spec.unit}: {trig.signal} noise will make workload flap",
                )
            )
    if st.speed_bands:
        for i, band in enumerate(st.speed_bands):
            if band.below is not None and band.below > speed_top[1]:
                out.append(_out_of_range(band.loc, f"state.speed_bands.bands[{i}].below", "speed", band.below, True))
        if st.band_hysteresis < MIN_HYSTERESIS["speed"]:
            out.append(
                LintFinding(
                    "narrow-hysteresis",
                    "warning",
                    st.speed_bands[0].loc,
                    f"state.speed_bands: hysteresis {st.band_hysteresis:g} km/h is under "
                    f"{MIN_HYSTERESIS['speed']:g} km/h: speed_band will flap at the band edges",
                )
            )
    return out


def condition_tests(cond: Any) -> Iterator[Test]:
    """Every leaf test of a condition (none for a rule without ``when``)."""
    if cond is None:
        return
    if isinstance(cond, Test):
        yield cond
    elif hasattr(cond, "items"):
        for item in cond.items:
            yield from condition_tests(item)
    else:
        yield from condition_tests(cond.item)


def _in_range(value: float, bounds: tuple[float, float], abs_: bool) -> bool:
    low, high = bounds
    if abs_:
        return 0 <= value <= max(abs(low), abs(high))
    return low <= value <= high


def _out_of_range(loc: Location, what: str, signal: str, value: float, abs_: bool, sep: str = ": ") -> LintFinding:
    spec = CANONICAL_SIGNALS[signal]
    low, high = spec.physical_range or (-math.inf, math.inf)
    shown = f"0..{max(abs(low), abs(high)):g}" if abs_ else f"{low:g}..{high:g}"
    return LintFinding(
        "threshold-out-of-range",
        "error",
        loc,
        f"{what}{sep}{value:g} {spec.unit} is outside the physical range of {'|' + signal + '|' if abs_ else signal} "
        f"({shown} {spec.unit})",
    )


def _test_range(rule_id: str, test: Test) -> list[LintFinding]:
    values = test.value if isinstance(test.value, tuple) else (test.value,)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    spec = CANONICAL_SIGNALS.get(test.field)
    out = []
    for v in numbers:
        if spec is not None and spec.physical_range is not None and not _in_range(v, spec.physical_range, False):
            found = _out_of_range(test.loc, f"rule '{rule_id}': {test.field} {test.op}", test.field, v, False, " ")
            out.append(replace(found, message=found.message + "; values there are implausible and read as unknown"))
        elif spec is None and v < 0:
            out.append(
                LintFinding(
                    "threshold-out-of-range",
                    "error",
                    test.loc,
                    f"rule '{rule_id}': {test.field} {test.op} {v:g}: request numbers are whole numbers >= 0",
                )
            )
    return out


# ---------------------------------------------------------------------- verdicts
def _true(state: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
    return True


class Verdicts:
    """The engine's verdict for a set of holding rules (a bit mask), memoised.

    The combination is the evaluator's own: ``_evaluate_once`` on a policy made of just the
    rules that hold, each taken to hold.
    """

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.always = [replace(rule, test=_true) for rule in policy.rules]
        self.memo: dict[int, Verdict] = {}

    def __call__(self, mask: int) -> Verdict:
        found = self.memo.get(mask)
        if found is None:
            rules = tuple(self.always[i] for i in bits(mask))
            found = Evaluator(replace(self.policy, rules=rules))._evaluate_once({}, {})
            self.memo[mask] = found
        return found


def decision_key(verdict: Verdict) -> tuple[Any, ...]:
    """What a decision is, for equality: outcome and constraints (not rule ids or reasons)."""
    return (verdict.outcome, tuple(sorted(verdict.constraints.items())))


def verdict_text(verdict: Verdict) -> str:
    """``deny``, or ``degrade {modality: voice}``."""
    if not verdict.constraints:
        return verdict.outcome.value
    return f"{verdict.outcome.value} {flow(verdict.constraints)}"


def flow(values: Mapping[str, Any]) -> str:
    """A mapping in YAML flow style: ``{a: 1, b: x}``."""
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in values.items()) + "}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------- cells shown to people
def example(space: Space, region: Region, labels: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """A concrete state and request in ``region``: the fields it fixes (any value of the others will do)."""
    state: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for i in space.read_dims:
        dim = space.dims[i]
        if i not in region.assign:
            continue
        value = region.assign[i]
        key = dim.field if dim.policy is None or not labels else f"{dim.field} ({labels[dim.policy]})"
        (state if dim.source == "state" else request)[key] = value
    return {"state": state, "request": request}


def example_text(found: Mapping[str, Mapping[str, Any]]) -> str:
    """``state {...} request {...}`` (either part left out when empty)."""
    parts = [f"{part} {flow(found[part])}" for part in ("state", "request") if found[part]]
    return " ".join(parts) if parts else "any state and request"


def describe(space: Space, cube: Sequence[frozenset[int]]) -> str:
    """Cells given per read dim as sets of value indices, in words; dims taking every value are left out."""
    parts: list[str] = []
    for i, chosen in zip(space.read_dims, cube, strict=True):
        dim = space.dims[i]
        if len(chosen) == len(dim.values):
            continue
        if dim.kind == "number":
            parts.append(f"{dim.field} {_intervals(dim, sorted(chosen))}")
            continue
        names = [_scalar(dim.values[j]) if dim.values[j] != OTHER else "any other" for j in sorted(chosen)]
        parts.append(f"{dim.field}: {names[0]}" if len(names) == 1 else f"{dim.field}: [{', '.join(names)}]")
    return ", ".join(parts) if parts else "every state and request"


def _intervals(dim: Any, chosen: list[int]) -> str:
    runs: list[list[int]] = []
    for j in chosen:
        if runs and runs[-1][-1] == j - 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    texts = []
    for run in runs:
        first, last = dim.cells[run[0]], dim.cells[run[-1]]
        texts.append(_interval_text(Interval(first.low, last.high, first.low_in, last.high_in), dim.domain))
    return " or ".join(texts)


def _interval_text(cell: Interval, domain: Interval) -> str:
    if cell.low == cell.high:
        return f"= {cell.low:g}"
    from_start = cell.low == domain.low and cell.low_in == domain.low_in
    to_end = cell.high == domain.high and cell.high_in == domain.high_in
    if from_start:
        return f"{'<=' if cell.high_in else '<'} {cell.high:g}"
    if to_end:
        return f"{'>=' if cell.low_in else '>'} {cell.low:g}"
    return f"in {'[' if cell.low_in else '('}{cell.low:g}, {cell.high:g}{']' if cell.high_in else ')'}"


# ---------------------------------------------------------------------- rule findings
def ineffective_override(
    rule: CompiledRule, other: CompiledRule, found: dict[str, dict[str, Any]], decided: Verdict | None
) -> LintFinding:
    """``rule`` declares it overrides ``other``, but ``other`` is the more restrictive."""
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


def unreachable_rule(rule: CompiledRule) -> LintFinding:
    """``rule`` holds in no combination that can occur."""
    return LintFinding(
        "unreachable-rule",
        "error",
        rule.source.loc,
        f"rule '{rule.id}' can never apply: its condition holds in no state and request that can occur",
    )


def conflict(
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


def rule_name(rule: CompiledRule) -> str:
    """``rule 'id' (line N)``."""
    return f"rule '{rule.id}' (line {rule.source.loc.line})"


# ---------------------------------------------------------------------- gaps
def gap_findings(
    policy: CompiledPolicy,
    space: Space,
    verdicts: Verdicts,
    gaps: Sequence[Region],
    here: Location,
    max_examples: int,
) -> list[LintFinding]:
    """Where no ordinary rule holds, grouped by decision into boxes of cells, largest first."""
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


# ---------------------------------------------------------------------- comparisons
_MODALITY_RANK = {None: 0, "audio": 1, "voice": 2}


def direction(old: Verdict, new: Verdict) -> str | None:
    """How NEW's decision relates to OLD's: "stricter", "looser", "different", or None (the same)."""
    if old.outcome != new.outcome:
        return "stricter" if new.outcome.rank > old.outcome.rank else "looser"
    signs: set[str] = set()
    for key in sorted(set(old.constraints) | set(new.constraints)):
        a, b = old.constraints.get(key), new.constraints.get(key)
        if a == b:
            continue
        if key in ("max_text_length", "max_list_items"):
            tighter = b is not None and (a is None or b < a)
        elif key == "retry_after_ms":
            tighter = (b or 0) > (a or 0)
        elif key == "modality":
            tighter = _MODALITY_RANK.get(b, 0) > _MODALITY_RANK.get(a, 0)
        elif key == "input":
            tighter = b is not None
        else:  # "until" is prose: a change is a change, in no direction
            signs.add("different")
            continue
        signs.add("stricter" if tighter else "looser")
    if not signs:
        return None
    return signs.pop() if len(signs) == 1 else "different"


@dataclass(frozen=True)
class Difference:
    """Cells where OLD and NEW decide differently, with one concrete example."""

    direction: str
    example: Mapping[str, Mapping[str, Any]]
    old: Verdict
    new: Verdict
    cells: int


@dataclass
class Comparison:
    """Whether NEW is more or less permissive than OLD, and where they differ."""

    old: str
    new: str
    result: str  # "more-permissive", "less-permissive", "equivalent" or "mixed"
    cells: int
    differing: dict[str, int]  # direction -> cells
    examples: list[Difference]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The text report: a summary line, then one line per example and note."""
        head = f"{self.new}: compare: "
        if self.result == "equivalent":
            out = [f"{head}equivalent to {self.old}: all {self.cells} cells decided the same"]
        else:
            relation = "than" if self.result != "mixed" else "against"
            counts = ", ".join(f"{self.differing.get(d, 0)} {d}" for d in ("looser", "stricter", "different"))
            out = [
                f"{head}{self.result} {relation} {self.old}: {sum(self.differing.values())} of {self.cells} cells "
                f"decided differently ({counts})"
            ]
        out += [
            f"{head}{d.direction}: {example_text(d.example)}: {_decided(d.old)} -> {_decided(d.new)}"
            for d in self.examples
        ]
        out += [f"{head}note: {note}" for note in self.notes]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "old": self.old,
            "new": self.new,
            "result": self.result,
            "cells": self.cells,
            "differing": dict(self.differing),
            "examples": [
                {
                    "direction": d.direction,
                    "state": dict(d.example["state"]),
                    "request": dict(d.example["request"]),
                    "old": _verdict_dict(d.old),
                    "new": _verdict_dict(d.new),
                    "cells": d.cells,
                }
                for d in self.examples
            ],
            "notes": list(self.notes),
        }


def _decided(verdict: Verdict) -> str:
    rules = ", ".join(verdict.rules) if verdict.rules else "default"
    return f"{verdict_text(verdict)} ({rules})"


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {"outcome": verdict.outcome.value, "constraints": dict(verdict.constraints), "rules": list(verdict.rules)}


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
