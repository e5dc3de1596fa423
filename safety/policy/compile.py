"""Compile a parsed policy into plain, fast structures: closures over constants.

Conditions use three-valued logic: a test on an unknown value is neither true nor
false but *unknown* (``None``), and ``all``/``any``/``not`` combine as Kleene's logic
does.  The evaluator treats a rule whose condition is unknown as one that may apply,
which is how unknown state becomes the most demanding driving.

The compiler also computes, for every field the policy reads, the finite set of cells
(intervals between the policy's constants, or the values it names) that the policy can
tell apart.  Two inputs in the same cells get the same decision, so decisions can be
cached by cell and a replay re-decides only when a cell changes.  For the static analysis
(``safety.workflow.space``) it also says how a numeric field is cut into cells, which conditions
are decided field by field, and which raw values each derived state can go with.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from safety.model.decision import Outcome
from safety.policy.model import AllOf, AnyOf, Condition, FieldSpec, NotOf, PolicyDoc, Rule, Test, condition_fields
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.vehicle.state import StateConfig, Trigger

Tri = bool | None
Predicate = Callable[[Mapping[str, Any], Mapping[str, Any]], Tri]

_OTHER = "<other>"


@dataclass(frozen=True)
class CompiledRule:
    id: str
    ref: str
    outcome: Outcome
    rank: int
    constraints: Mapping[str, Any]
    exception: bool
    reason: str
    test: Predicate  # (state values, request) -> True / False / None (unknown)
    source: Rule


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy ready to evaluate.  Built once; never parses YAML again."""

    name: str
    hash: str
    file: str
    default: Outcome
    default_reason: str
    rules: tuple[CompiledRule, ...]
    state_config: StateConfig
    state_cells: tuple[tuple[str, Callable[[Any], Any]], ...]  # (field, value -> cell)
    request_cells: tuple[tuple[str, Callable[[Any], Any]], ...]
    thresholds: Mapping[str, tuple[float, ...]]  # numeric state fields -> constants compared with
    watched_values: frozenset[str]  # non-numeric state fields the policy reads
    representatives: Mapping[str, tuple[Any, ...]]  # field -> one value from each of its cells
    doc: PolicyDoc
    requires_parked_to_activate: bool = False
    signed_by: str | None = None  # the key id of a verified signature (drivegate sign), if loaded verified

    def state_key(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(cell(values.get(name)) for name, cell in self.state_cells)

    def request_key(self, request: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(cell(request.get(name)) for name, cell in self.request_cells)


def compile_policy(doc: PolicyDoc) -> CompiledPolicy:
    """Turn a PolicyDoc into a CompiledPolicy."""
    fields = condition_fields(tuple(b.name for b in doc.state.speed_bands))
    rules = tuple(_compile_rule(rule, fields) for rule in doc.rules)
    constants: dict[str, set[Any]] = {}
    for rule in doc.rules:
        if rule.when is not None:
            condition_constants(rule.when, constants)
    # Derived states are always part of the key: their unknown-ness matters to every rule.
    state_names = ["driving_state", "workload"]
    if doc.state.speed_bands:
        state_names.append("speed_band")
    state_names += sorted(n for n in constants if fields[n].source == "state" and n not in state_names)
    request_names = sorted(n for n in constants if fields[n].source == "request")
    thresholds = {n: tuple(sorted(constants[n])) for n in state_names if n in constants and fields[n].kind == "number"}
    watched = frozenset(n for n in state_names if fields[n].kind != "number")
    return CompiledPolicy(
        name=doc.name,
        hash=doc.content_hash,
        file=doc.file,
        default=doc.default,
        default_reason=doc.default_reason or f"no rule matched; the policy's default is {doc.default.value}",
        rules=rules,
        state_config=_state_config(doc),
        state_cells=tuple((n, _cell_function(fields[n], constants.get(n, set()))) for n in state_names),
        request_cells=tuple((n, _cell_function(fields[n], constants.get(n, set()))) for n in request_names),
        thresholds=thresholds,
        watched_values=watched,
        representatives={
            n: _representatives(fields[n], constants.get(n, set())) for n in (*state_names, *request_names)
        },
        doc=doc,
        requires_parked_to_activate=doc.requires_parked_to_activate,
    )


def _state_config(doc: PolicyDoc) -> StateConfig:
    st = doc.state
    triggers = tuple(
        Trigger(t.signal, t.threshold.on, t.threshold.off, t.use_abs)
        if t.threshold is not None
        else Trigger(t.signal, values=frozenset(t.values))
        for t in st.workload_triggers
    )
    bands = tuple((b.name, b.below if b.below is not None else math.inf) for b in st.speed_bands)
    base = StateConfig()
    return StateConfig(
        standstill_on=st.standstill.on if st.standstill else base.standstill_on,
        standstill_off=st.standstill.off if st.standstill else base.standstill_off,
        triggers=triggers,
        hold_s=st.workload_hold_s,
        bands=bands,
        band_hysteresis=st.band_hysteresis,
        dwell_s=st.dwell_s if st.dwell_s is not None else base.dwell_s,
    )


def condition_constants(cond: Condition, out: dict[str, set[Any]]) -> None:
    """Collect, per field, every constant a condition compares with."""
    if isinstance(cond, Test):
        bucket = out.setdefault(cond.field, set())
        if isinstance(cond.value, frozenset | tuple):
            bucket.update(cond.value)
        else:
            bucket.add(cond.value)
    elif isinstance(cond, AllOf | AnyOf):
        for item in cond.items:
            condition_constants(item, out)
    else:
        condition_constants(cond.item, out)


def _representatives(spec: FieldSpec, constants: set[Any]) -> tuple[Any, ...]:
    """One value from every cell the policy can tell apart: what an unknown value could be."""
    if spec.kind == "number":
        points = sorted(constants)
        if not points:
            return (0.0,)
        reps: list[Any] = [points[0] - 1.0]
        for low, high in itertools.pairwise(points):
            reps += [low, (low + high) / 2.0]
        reps += [points[-1], points[-1] + 1.0]
        return tuple(reps)
    if spec.kind == "string":
        return (*sorted(constants), _OTHER)
    return tuple(spec.values)


def _cell_function(spec: FieldSpec, constants: set[Any]) -> Callable[[Any], Any]:
    if spec.kind == "number":
        points = tuple(sorted(constants))

        def number_cell(value: Any) -> Any:
            if value is None:
                return None
            i = bisect_right(points, value)
            return 2 * i + (1 if i and points[i - 1] == value else 0)

        return number_cell
    if spec.kind == "string":
        named = frozenset(constants)
        return lambda value: value if value is None or value in named else _OTHER
    return lambda value: value


def _compile_rule(rule: Rule, fields: Mapping[str, FieldSpec]) -> CompiledRule:
    test: Predicate = _always if rule.when is None else compile_condition(rule.when, fields)
    return CompiledRule(
        id=rule.id,
        ref=rule.ref,
        outcome=rule.outcome,
        rank=rule.outcome.rank,
        constraints=dict(rule.constraints),
        exception=rule.exception,
        reason=rule.reason or rule.description or f"rule {rule.id}",
        test=test,
        source=rule,
    )


def _always(state: Mapping[str, Any], request: Mapping[str, Any]) -> Tri:
    return True


def compile_condition(cond: Condition, fields: Mapping[str, FieldSpec]) -> Predicate:
    if isinstance(cond, Test):
        return _compile_test(cond, fields[cond.field].source == "state")
    if isinstance(cond, NotOf):
        inner = compile_condition(cond.item, fields)

        def not_(s: Mapping[str, Any], r: Mapping[str, Any]) -> Tri:
            x = inner(s, r)
            return None if x is None else not x

        return not_
    parts = tuple(compile_condition(item, fields) for item in cond.items)
    if isinstance(cond, AllOf):

        def all_(s: Mapping[str, Any], r: Mapping[str, Any]) -> Tri:
            unknown = False
            for part in parts:
                x = part(s, r)
                if x is False:
                    return False
                if x is None:
                    unknown = True
            return None if unknown else True

        return all_

    def any_(s: Mapping[str, Any], r: Mapping[str, Any]) -> Tri:
        unknown = False
        for part in parts:
            x = part(s, r)
            if x is True:
                return True
            if x is None:
                unknown = True
        return None if unknown else False

    return any_


def _compile_test(test: Test, from_state: bool) -> Predicate:
    name, c = test.field, test.value
    compare: Callable[[Any], bool]
    match test.op:
        case "eq":
            compare = c.__eq__
        case "ne":
            compare = c.__ne__
        case "in":
            compare = c.__contains__
        case "not_in":
            members = c

            def compare(v: Any) -> bool:
                return v not in members
        case "lt":
            compare = lambda v: v < c  # noqa: E731
        case "le":
            compare = lambda v: v <= c  # noqa: E731
        case "gt":
            compare = lambda v: v > c  # noqa: E731
        case "ge":
            compare = lambda v: v >= c  # noqa: E731
        case "between":
            low, high = c
            compare = lambda v: low <= v < high  # noqa: E731
        case _:  # pragma: no cover - the parser admits no other operator
            raise AssertionError(test.op)

    if from_state:

        def state_test(s: Mapping[str, Any], r: Mapping[str, Any]) -> Tri:
            v = s.get(name)
            return None if v is None else compare(v) is True

        return state_test

    def request_test(s: Mapping[str, Any], r: Mapping[str, Any]) -> Tri:
        v = r.get(name)
        return None if v is None else compare(v) is True

    return request_test


# ---------------------------------------------------------------------- cells, for analysis
@dataclass(frozen=True)
class Interval:
    """A numeric cell: ``low``..``high`` with each end in or out (a point when low == high)."""

    low: float
    high: float
    low_in: bool
    high_in: bool


def number_cells(constants: Iterable[float], domain: Interval, integer: bool) -> list[tuple[Any, Interval]]:
    """One representative per cell of ``domain`` cut at ``constants`` (empty cells left out)."""
    points = sorted({float(c) for c in constants if domain.low <= c <= domain.high})
    out: list[tuple[Any, Interval]] = []

    def between(a: float, b: float, a_in: bool, b_in: bool) -> None:
        if a > b or (a == b and not (a_in and b_in)):
            return
        if integer:
            rep: float = math.ceil(a) if a_in else math.floor(a) + 1
            if rep > b or (rep == b and not b_in):
                return
            out.append((int(rep), Interval(a, b, a_in, b_in)))
            return
        if a == b:
            out.append((a, Interval(a, b, True, True)))
        elif math.isinf(a) and math.isinf(b):
            out.append((0.0, Interval(a, b, a_in, b_in)))
        elif math.isinf(a):
            out.append((b - 1.0, Interval(a, b, a_in, b_in)))
        elif math.isinf(b):
            out.append((a + 1.0, Interval(a, b, a_in, b_in)))
        else:
            out.append(((a + b) / 2.0, Interval(a, b, a_in, b_in)))

    low, low_in = domain.low, domain.low_in
    for p in points:
        between(low, p, low_in, False)
        if not integer or p == int(p):
            out.append((int(p) if integer else p, Interval(p, p, True, True)))
        low, low_in = p, False
    between(low, domain.high, low_in, domain.high_in)
    return out


def field_domain(name: str, source: str) -> tuple[Interval, bool]:
    """The values a numeric field can take, and whether they are whole numbers."""
    if source == "request":
        return Interval(0.0, math.inf, True, False), True
    spec = CANONICAL_SIGNALS[name]
    low, high = spec.physical_range or (-math.inf, math.inf)
    return Interval(low, high, True, True), False


def separable(cond: Condition) -> bool:
    """Whether ``cond`` is a conjunction of conditions that each read one field."""
    fields: dict[str, set[Any]] = {}
    condition_constants(cond, fields)
    return len(fields) <= 1 or (isinstance(cond, AllOf) and all(separable(item) for item in cond.items))


# ---------------------------------------------------------------------- derived states, for analysis
def machine_constants(cfg: StateConfig) -> dict[str, set[float]]:
    """Thresholds of the derived states, per raw signal: where feasibility can change."""
    out: dict[str, set[float]] = {"speed": set()}
    for t in (cfg.standstill_on, cfg.standstill_off):
        out["speed"].update((t, -t))
    for _, edge in cfg.bands[:-1]:
        for t in (edge, edge - cfg.band_hysteresis):
            out["speed"].update((t, -t))
    for trig in cfg.triggers:
        if not trig.values:
            bucket = out.setdefault(trig.signal, set())
            for t in (trig.on, trig.off):
                bucket.update((t, -t) if trig.use_abs else (t,))
    return out


def can_fire(trig: Trigger) -> bool:
    """Whether a workload trigger can ever be on: its signal can reach ``on``."""
    if trig.values:
        return True
    spec = CANONICAL_SIGNALS[trig.signal]
    low, high = spec.physical_range or (-math.inf, math.inf)
    top = max(abs(low), abs(high)) if trig.use_abs else high
    return bool(top >= trig.on)


def trigger_status(cfg: StateConfig, signal: str, value: Any) -> tuple[bool, bool]:
    """(some trigger on ``signal`` must be active, some trigger may be active) at ``value``."""
    forced = possible = False
    for trig in cfg.triggers:
        if trig.signal != signal:
            continue
        if trig.values:
            hit = value in trig.values
            forced, possible = forced or hit, possible or hit
        else:
            x = abs(value) if trig.use_abs else value
            forced = forced or x >= trig.on
            possible = possible or x >= trig.off
    return forced, possible


def ds_gear_ok(ds: Any, gear: Any) -> bool:
    """Whether driving state ``ds`` can go with ``gear`` (None: either unknown): parked in P only."""
    if ds is None or gear is None:
        return True
    return bool((ds == "parked") == (gear == "P"))


def ds_speed_ok(ds: Any, speed: Any, cfg: StateConfig) -> bool:
    """Whether driving state ``ds`` can go with ``speed``, with the standstill hysteresis."""
    if ds is None or ds == "parked" or speed is None:
        return True
    if ds == "stationary":
        return bool(abs(speed) <= cfg.standstill_off)
    return bool(abs(speed) > cfg.standstill_on)


def band_ok(band: Any, speed: Any, cfg: StateConfig) -> bool:
    """Whether speed band ``band`` can go with ``speed``, with the band hysteresis."""
    if band is None or speed is None:
        return True
    names = [name for name, _ in cfg.bands]
    i = names.index(band)
    lower = cfg.bands[i - 1][1] - cfg.band_hysteresis if i else -math.inf
    return bool(lower <= abs(speed) < cfg.bands[i][1])
