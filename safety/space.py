"""The state × request space of one or more policies, cut into cells, and walked exactly.

Every field a policy reads takes finitely many *cells*: the values it names (enums,
booleans, strings plus "any other"), or the intervals between its constants (numbers, cut
to the field's domain: a canonical signal's physical range, whole numbers >= 0 for
request fields).  Fields no rule reads do not matter.  Analysis and comparison walk the
product of the cells, but not cell by cell: ``Walker`` splits the space one field at a
time and stops as soon as every rule's three-valued result is settled for a whole region
(Kleene logic on the compiled rules gives True or False only when every completion
agrees), so a region may cover millions of cells at once.

Derived state is not free: ``driving_state``, ``workload`` and ``speed_band`` follow from
speed, gear and the workload triggers under the policy's own thresholds, with hysteresis.
A combination such as "parked in gear D", or "workload low while reversing" when reversing
raises the workload, never occurs, and must not be reported as a gap.  So the space also
holds the raw signals the derived states depend on (hidden when no rule reads them), and
``feasible`` keeps only combinations some vehicle history can produce: ``parked`` exactly
when the gear is P; ``stationary`` only at |speed| <= the standstill release threshold,
``moving`` only above the standstill entry threshold; a speed band from its lower edge
minus the hysteresis up to its upper edge; ``workload`` low only when no trigger is past
its ``on`` threshold, high only when a trigger may be active (past ``off``) or a hold may
still run.  Comparing two policies with different state sections gives each its own
derived fields over the same raw signals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .policy.compile import CompiledPolicy, CompiledRule, condition_constants
from .policy.model import DRIVING_STATES, WORKLOADS, condition_fields
from .signals import CANONICAL_SIGNALS
from .state import StateConfig

OTHER = "<other>"  # the cell of a string field holding every value the policy does not name
DERIVED = ("driving_state", "workload", "speed_band")
_ALL_CHECK_LIMIT = 64  # largest sub-product enumerated to prove a whole region feasible


@dataclass(frozen=True)
class Interval:
    """A numeric cell: ``low``..``high`` with each end in or out (a point when low == high)."""

    low: float
    high: float
    low_in: bool
    high_in: bool


@dataclass(frozen=True)
class Dim:
    """One axis of the space: a field (for one policy, when derived states differ) and its cells."""

    name: str  # unique: the field, or "field@k" for policy k's own derived field
    field: str
    source: str  # "state" or "request"
    kind: str  # "number", "enum", "bool" or "string"
    values: tuple[Any, ...]  # one representative per cell
    cells: tuple[Interval, ...] = ()  # numbers: the interval of each representative
    domain: Interval | None = None
    read: bool = True  # False: only there to decide which derived states can occur
    policy: int | None = None  # derived field of one policy only


class BudgetExceeded(Exception):
    """The walk visited more regions than its budget allows."""


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


@dataclass
class _Config:
    """One policy's derived-state definition and the dims of its derived fields."""

    cfg: StateConfig
    ds: int | None = None
    band: int | None = None
    wl: int | None = None
    hold_possible: bool = False  # a hold can keep workload high whatever the signals say now


class Space:
    """The cells of every field read by ``policies``, with each policy's view of them."""

    def __init__(self, policies: Sequence[CompiledPolicy]) -> None:
        self.policies = tuple(policies)
        constants: list[dict[str, set[Any]]] = []
        for p in self.policies:
            found: dict[str, set[Any]] = {}
            for rule in p.doc.rules:
                if rule.when is not None:
                    condition_constants(rule.when, found)
            constants.append(found)
        configs = [p.state_config for p in self.policies]
        shared = all(c == configs[0] for c in configs)
        self.shared_state = shared
        read = set().union(*(set(c) for c in constants))
        self.dims: list[Dim] = []
        self.index: dict[str, int] = {}
        self.views: list[dict[str, int]] = [{} for _ in self.policies]
        self.configs = [_Config(cfg) for cfg in configs]
        machine: dict[str, set[float]] = {}
        for cfg in configs:
            for name, values in machine_constants(cfg).items():
                machine.setdefault(name, set()).update(values)
        # Derived fields: one dim per field, or one per policy when their definitions differ.
        for k, p in enumerate(self.policies):
            for name in DERIVED:
                if name not in constants[k]:
                    continue
                dim_name = name if shared else f"{name}@{k}"
                if dim_name not in self.index:
                    names: tuple[str, ...] = DRIVING_STATES if name == "driving_state" else WORKLOADS
                    if name == "speed_band":
                        names = tuple(b for b, _ in p.state_config.bands)
                    self._add(Dim(dim_name, name, "state", "enum", names, policy=None if shared else k))
                self.views[k][name] = self.index[dim_name]
        for i, c in enumerate(self.configs):
            view = self.views[i] if not shared else {n: self.index[n] for n in DERIVED if n in self.index}
            c.ds, c.band, c.wl = view.get("driving_state"), view.get("speed_band"), view.get("workload")
            c.hold_possible = c.cfg.hold_s > 0 and any(_can_fire(t) for t in c.cfg.triggers)
        # Raw signals that derived states depend on, read by a rule or not.
        needed: set[str] = set()
        for c in self.configs:
            if c.ds is not None:
                needed |= {"speed", "gear"}
            if c.band is not None:
                needed.add("speed")
            if c.wl is not None:
                needed |= {t.signal for t in c.cfg.triggers}
        fields = condition_fields(tuple(sorted({b for c in configs for b, _ in c.bands})))
        for name in sorted(read - set(DERIVED), key=lambda n: (fields[n].source, n)):
            spec = fields[name]
            extra = machine.get(name, set()) if name in needed else set()
            self._add(self._dim(name, spec.source, spec.kind, spec.values, constants_of(constants, name) | extra))
        for name in sorted(needed - read):
            spec = fields[name]
            self._add(self._dim(name, "state", spec.kind, spec.values, machine.get(name, set()), read=False))
        for k in range(len(self.policies)):
            for name in read - set(DERIVED):
                self.views[k][name] = self.index[name]
        self.gear = self.index.get("gear")
        self.speed = self.index.get("speed")
        self.speed_abs_only = not any(t.signal == "speed" for c in configs for t in c.triggers)
        self.constrained = frozenset(i for i, d in enumerate(self.dims) if d.field in DERIVED or d.field in needed)
        self.read_dims = tuple(i for i, d in enumerate(self.dims) if d.read)
        self._exists: dict[tuple[tuple[int, Any], ...], dict[int, Any] | None] = {}

    def _add(self, dim: Dim) -> None:
        self.index[dim.name] = len(self.dims)
        self.dims.append(dim)

    @staticmethod
    def _dim(name: str, source: str, kind: str, values: tuple[Any, ...], consts: set[Any], read: bool = True) -> Dim:
        if kind == "number":
            domain, integer = field_domain(name, source)
            cells = number_cells(consts, domain, integer)
            return Dim(
                name, name, source, kind, tuple(v for v, _ in cells), tuple(c for _, c in cells), domain, read=read
            )
        if kind == "bool":
            return Dim(name, name, source, kind, (False, True), read=read)
        if kind == "string":
            return Dim(name, name, source, kind, (*sorted(consts), OTHER), read=read)
        return Dim(name, name, source, kind, tuple(values), read=read)

    @property
    def cells(self) -> int:
        """How many cells the fields the policies read have, all combinations counted."""
        return math.prod(len(self.dims[i].values) for i in self.read_dims)

    def split(self, assign: Mapping[int, Any], policy: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Policy ``policy``'s (state, request) for an assignment of dims; unassigned fields are absent."""
        state: dict[str, Any] = {}
        request: dict[str, Any] = {}
        for name, i in self.views[policy].items():
            if i in assign:
                (state if self.dims[i].source == "state" else request)[name] = assign[i]
        return state, request

    # ------------------------------------------------------------------ feasibility
    def exists(self, assign: Mapping[int, Any]) -> dict[int, Any] | None:
        """Raw values (gear, speed) under which the assigned derived states can occur, or None."""
        key = tuple(sorted((i, v) for i, v in assign.items() if i in self.constrained))
        if key not in self._exists:
            self._exists[key] = self._search(assign)
        return self._exists[key]

    def _search(self, assign: Mapping[int, Any]) -> dict[int, Any] | None:
        gears: Sequence[Any] = (None,)
        if self.gear is not None:
            gears = (assign[self.gear],) if self.gear in assign else self.dims[self.gear].values
        speeds: Sequence[Any] = (None,)
        if self.speed is not None:
            if self.speed in assign:
                speeds = (assign[self.speed],)
            else:
                dim = self.dims[self.speed]
                speeds = dim.values
                if not dim.read and self.speed_abs_only:
                    speeds = tuple(v for v in speeds if v >= 0)  # every consumer uses |speed|
        for g in gears:
            if not all(_ds_gear_ok(assign.get(c.ds) if c.ds is not None else None, g) for c in self.configs):
                continue
            for s in speeds:
                if all(
                    _ds_speed_ok(assign.get(c.ds) if c.ds is not None else None, s, c.cfg)
                    and _band_ok(assign.get(c.band) if c.band is not None else None, s, c.cfg)
                    for c in self.configs
                ) and self._workload_ok(assign, g, s):
                    witness: dict[int, Any] = {}
                    if self.gear is not None:
                        witness[self.gear] = g
                    if self.speed is not None:
                        witness[self.speed] = s
                    return witness
        return None

    def _workload_ok(self, assign: Mapping[int, Any], gear: Any, speed: Any) -> bool:
        demands = [(c, assign[c.wl]) for c in self.configs if c.wl is not None and c.wl in assign]
        if not demands:
            return True
        signals = sorted({t.signal for c, _ in demands for t in c.cfg.triggers})
        options: list[set[tuple[tuple[bool, bool], ...]]] = []
        for sig in signals:
            if sig == "gear":
                candidates: Sequence[Any] = (gear,)
            elif sig == "speed":
                candidates = (speed,)
            elif (i := self.index.get(sig)) is not None:
                candidates = (assign[i],) if i in assign else self.dims[i].values
            else:  # pragma: no cover - every trigger signal of a read workload has a dim
                candidates = ()
            options.append({tuple(_trigger_status(c.cfg, sig, v) for c, _ in demands) for v in candidates})
        for choice in itertools.product(*options):
            if all(
                (
                    not any(status[k][0] for status in choice)
                    if level == "low"
                    else c.hold_possible or any(status[k][1] for status in choice)
                )
                for k, (c, level) in enumerate(demands)
            ):
                return True
        return False

    def feasibility(self, assign: Mapping[int, Any]) -> str:
        """ "all" when every completion of the region's read fields can occur, "none", or "some"."""
        open_dims = [i for i in self.read_dims if i in self.constrained and i not in assign]
        size = math.prod(len(self.dims[i].values) for i in open_dims)
        if not open_dims or size > _ALL_CHECK_LIMIT:
            if self.exists(assign) is None:
                return "none"
            return "all" if not open_dims else "some"
        found = missing = False
        for combo in itertools.product(*(self.dims[i].values for i in open_dims)):
            full = dict(assign)
            full.update(zip(open_dims, combo, strict=True))
            if self.exists(full) is None:
                missing = True
            else:
                found = True
            if found and missing:
                return "some"
        return "all" if found else "none"


def constants_of(constants: Sequence[Mapping[str, set[Any]]], name: str) -> set[Any]:
    """The constants every policy compares ``name`` with."""
    out: set[Any] = set()
    for found in constants:
        out |= found.get(name, set())
    return out


def _can_fire(trig: Any) -> bool:
    if trig.values:
        return True
    spec = CANONICAL_SIGNALS[trig.signal]
    low, high = spec.physical_range or (-math.inf, math.inf)
    top = max(abs(low), abs(high)) if trig.use_abs else high
    return bool(top >= trig.on)


def _trigger_status(cfg: StateConfig, signal: str, value: Any) -> tuple[bool, bool]:
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


def _ds_gear_ok(ds: Any, gear: Any) -> bool:
    if ds is None or gear is None:
        return True
    return bool((ds == "parked") == (gear == "P"))


def _ds_speed_ok(ds: Any, speed: Any, cfg: StateConfig) -> bool:
    if ds is None or ds == "parked" or speed is None:
        return True
    if ds == "stationary":
        return bool(abs(speed) <= cfg.standstill_off)
    return bool(abs(speed) > cfg.standstill_on)


def _band_ok(band: Any, speed: Any, cfg: StateConfig) -> bool:
    if band is None or speed is None:
        return True
    names = [name for name, _ in cfg.bands]
    i = names.index(band)
    lower = cfg.bands[i - 1][1] - cfg.band_hysteresis if i else -math.inf
    return bool(lower <= abs(speed) < cfg.bands[i][1])


# ---------------------------------------------------------------------- the walk
@dataclass
class Region:
    """Cells that every rule treats alike: ``holds`` is a bit mask of the rules that hold."""

    assign: dict[int, Any]  # the dims fixed; every other read dim takes any of its cells
    holds: int
    cells: int


@dataclass
class Walker:
    """Splits a space until every rule is settled, calling ``visit`` once per region.

    ``rules`` are (policy index, rule); ``budget`` bounds the number of splits.  With
    ``focus`` only regions where that rule holds are visited; with ``avoid`` (a bit mask)
    only regions where none of those rules holds.
    """

    space: Space
    rules: Sequence[tuple[int, CompiledRule]]
    budget: int = 2_000_000
    steps: int = 0
    rule_dims: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for p, rule in self.rules:
            found: dict[str, set[Any]] = {}
            if rule.source.when is not None:
                condition_constants(rule.source.when, found)
            self.rule_dims.append(tuple(sorted(self.space.views[p][n] for n in found)))

    def walk(
        self,
        visit: Callable[[Region], None],
        *,
        focus: int | None = None,
        avoid: int = 0,
        prune: Callable[[int, bool], bool] | None = None,
        whole: bool = True,
    ) -> None:
        """Visit every feasible region (raises BudgetExceeded past the budget).

        ``prune(holds, settled)`` is asked at every split with the rules already settled to
        hold there (``settled``: every rule is); True skips the whole sub-region.  With
        ``whole`` every cell of a visited region can occur, and ``cells`` counts them;
        without it a region is only known to hold some cell that can occur (every region
        walked does), which is all a search for one example needs.
        """
        self._visit, self._focus, self._avoid, self._prune, self._whole = visit, focus, avoid, prune, whole
        if self.space.exists({}) is None:
            return
        self._step({}, list(range(len(self.rules))), 0)

    def _step(self, assign: dict[int, Any], open_rules: list[int], holds: int) -> None:
        self.steps += 1
        if self.steps > self.budget:
            raise BudgetExceeded
        views: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        still: list[int] = []
        for i in open_rules:
            p, rule = self.rules[i]
            if p not in views:
                views[p] = self.space.split(assign, p)
            result = rule.test(*views[p])
            if result is None:
                still.append(i)
            elif result:
                holds |= 1 << i
        if holds & self._avoid:
            return
        focus = self._focus
        if focus is not None and not holds >> focus & 1 and focus not in still:
            return
        if self._prune is not None and self._prune(holds, not still):
            return
        if still:
            dim = self._choose(assign, still, focus)
        elif not self._whole:
            self._visit(Region(dict(assign), holds, 0))
            return
        else:
            feasible = self.space.feasibility(assign)
            if feasible == "none":
                return
            if feasible == "all":
                cells = math.prod(len(self.space.dims[i].values) for i in self.space.read_dims if i not in assign)
                self._visit(Region(dict(assign), holds, cells))
                return
            dim = min(
                (i for i in self.space.read_dims if i in self.space.constrained and i not in assign),
                key=lambda i: (self.space.dims[i].field not in DERIVED, len(self.space.dims[i].values), i),
            )
        constrained = dim in self.space.constrained
        for value in self.space.dims[dim].values:
            assign[dim] = value
            if not constrained or self.space.exists(assign) is not None:
                self._step(assign, still, holds)
        del assign[dim]

    def _choose(self, assign: Mapping[int, Any], still: list[int], focus: int | None) -> int:
        """The unassigned dim read by the most unsettled rules (the focus rule's first)."""
        if focus is not None and focus in still:
            candidates = [d for d in self.rule_dims[focus] if d not in assign]
            if candidates:
                return min(candidates, key=lambda d: (len(self.space.dims[d].values), d))
        score: dict[int, int] = {}
        for i in still:
            for d in self.rule_dims[i]:
                if d not in assign:
                    score[d] = score.get(d, 0) + 1
        return min(score, key=lambda d: (-score[d], len(self.space.dims[d].values), d))
