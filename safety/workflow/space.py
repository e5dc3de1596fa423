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
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safety.policy.compile import (
    CompiledPolicy,
    CompiledRule,
    Interval,
    band_ok,
    can_fire,
    condition_constants,
    ds_gear_ok,
    ds_speed_ok,
    field_domain,
    machine_constants,
    number_cells,
    separable,
    trigger_status,
)
from safety.policy.model import DRIVING_STATES, WORKLOADS, condition_fields
from safety.vehicle.state import StateConfig

OTHER = "<other>"  # the cell of a string field holding every value the policy does not name
DERIVED = ("driving_state", "workload", "speed_band")
_UNSET = object()  # a dim without a value, in a feasibility key
_ALL_CHECK_LIMIT = 64  # largest sub-product enumerated to prove a whole region feasible


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
            c.hold_possible = c.cfg.hold_s > 0 and any(can_fire(t) for t in c.cfg.triggers)
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
        # Feasibility is memoised by the values of the constrained dims, in this order (a
        # positional key: cheaper to build than a sorted one, and walks ask millions of times).
        self._key_dims = tuple(sorted(self.constrained))
        self._unset = (_UNSET,) * len(self._key_dims)
        self._exists: dict[tuple[Any, ...], dict[int, Any] | None] = {}
        self._feasible: dict[tuple[Any, ...], str] = {}
        self._possible: dict[tuple[Any, ...], list[bool]] = {}
        self._rules: dict[tuple[int, int], RuleInfo] = {}

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

    def rule_info(self, policy: int, rule: CompiledRule) -> RuleInfo:
        """What walks need to know of ``rule`` of policy ``policy``, worked out once."""
        key = (policy, id(rule))
        info = self._rules.get(key)
        if info is None:
            info = self._rules[key] = RuleInfo(rule, self, policy)
        return info

    # ------------------------------------------------------------------ feasibility
    def feasibility_key(self, assign: Mapping[int, Any]) -> tuple[Any, ...]:
        """What feasibility depends on: the values of the constrained dims."""
        return tuple(map(assign.get, self._key_dims, self._unset))

    def possible(self, assign: dict[int, Any], dim: int) -> list[bool]:
        """Per value of ``dim`` (free in ``assign``), whether fixing it can occur: memoised."""
        key = (dim, *map(assign.get, self._key_dims, self._unset))
        found = self._possible.get(key)
        if found is None:
            found = self._possible[key] = []
            for value in self.dims[dim].values:
                assign[dim] = value
                found.append(self.exists(assign) is not None)
            del assign[dim]
        return found

    def exists(self, assign: Mapping[int, Any]) -> dict[int, Any] | None:
        """Raw values (gear, speed) under which the assigned derived states can occur, or None."""
        key = tuple(map(assign.get, self._key_dims, self._unset))
        try:
            return self._exists[key]
        except KeyError:
            found = self._exists[key] = self._search(assign)
            return found

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
            if not all(ds_gear_ok(assign.get(c.ds) if c.ds is not None else None, g) for c in self.configs):
                continue
            for s in speeds:
                if all(
                    ds_speed_ok(assign.get(c.ds) if c.ds is not None else None, s, c.cfg)
                    and band_ok(assign.get(c.band) if c.band is not None else None, s, c.cfg)
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
            options.append({tuple(trigger_status(c.cfg, sig, v) for c, _ in demands) for v in candidates})
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
        # Like ``exists``, this depends only on the constrained dims: memoised by the same key.
        key = tuple(map(assign.get, self._key_dims, self._unset))
        found = self._feasible.get(key)
        if found is None:
            found = self._feasible[key] = self._feasibility(assign)
        return found

    def _feasibility(self, assign: Mapping[int, Any]) -> str:
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


def _classes(labels: Sequence[Any]) -> list[int]:
    """Small numbers for labels: equal labels, equal numbers."""
    names: dict[Any, int] = {}
    return [names.setdefault(label, len(names)) for label in labels]


def constants_of(constants: Sequence[Mapping[str, set[Any]]], name: str) -> set[Any]:
    """The constants every policy compares ``name`` with."""
    out: set[Any] = set()
    for found in constants:
        out |= found.get(name, set())
    return out


class RuleInfo:
    """What walks need to know of one rule: the dims it reads and how their cells decide it.

    ``accepts``: per dim, the cells (a bit mask) where the rule is not certainly false
    with that dim alone known.  When ``separable`` (a conjunction of parts that each read
    one field), that decides it: false once a field takes a cell outside its mask, true
    once all take cells inside, unknown otherwise (three-valued logic, exactly).  ``code``:
    per dim and value, what fixing it adds to a number (mixed radix) that says which side
    of each of the rule's constants its fields are on; values on the same sides are
    alike to the rule.
    """

    def __init__(self, rule: CompiledRule, space: Space, policy: int) -> None:
        self.rule = rule  # kept, so that its id() (the key of this) is never reused
        constants: dict[str, set[Any]] = {}
        if rule.source.when is not None:
            condition_constants(rule.source.when, constants)
        view = space.views[policy]
        self.dims = tuple(sorted(view[n] for n in constants))
        self.separable = rule.source.when is None or separable(rule.source.when)
        self.accepts: dict[int, int] = {}
        self.code: dict[int, list[int]] = {}
        radix = 1
        for name, found in sorted(constants.items(), key=lambda item: view[item[0]]):
            d = view[name]
            dim = space.dims[d]
            self.accepts[d] = sum(
                1 << j for j, v in enumerate(dim.values) if rule.test(*space.split({d: v}, policy)) is not False
            )
            points = sorted(found) if dim.kind == "number" else []
            sides = _classes(
                [
                    (bisect_left(points, v), bisect_right(points, v))
                    if dim.kind == "number"
                    else (v in found, v in found and v)
                    for v in dim.values
                ]
            )
            self.code[d] = [(side + 1) * radix for side in sides]
            radix *= max(sides) + 2


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

    The walk is incremental: each policy's state and request are kept up to date as dims
    are fixed and freed, and a split re-evaluates only the open rules that read the dim
    just fixed (a rule's three-valued result changes only when one of its fields does).
    The regions, their order and the number of splits are those of splitting afresh.
    """

    space: Space
    rules: Sequence[tuple[int, CompiledRule]]
    budget: int = 2_000_000
    steps: int = 0
    rule_dims: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        space = self.space
        self.info = [space.rule_info(p, rule) for p, rule in self.rules]
        self.rule_dims = [info.dims for info in self.info]
        self.readers = [0] * len(space.dims)  # per dim, the rules reading it (a bit mask)
        for i, dims in enumerate(self.rule_dims):
            for d in dims:
                self.readers[d] |= 1 << i
        # The dims some rule reads, with what ``choose`` ranks them by after the count.
        self.read_by = tuple((d, mask, len(space.dims[d].values)) for d, mask in enumerate(self.readers) if mask)
        # Each policy's (state, request) now, and where a dim's value goes: the state or
        # request of every policy that sees it.
        self.views: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}) for _ in space.policies]
        self.targets: dict[int, list[tuple[dict[str, Any], str]]] = {d: [] for d, _, _ in self.read_by}
        for p, view in enumerate(space.views):
            for name, d in view.items():
                if d in self.targets:
                    self.targets[d].append((self.views[p][space.dims[d].source != "state"], name))
        self.tests = [(rule.test, *self.views[p]) for p, rule in self.rules]
        # Rules decided per field (``RuleInfo.separable``) are settled with bit masks: per
        # dim and cell, the rules that cell makes false.  The others are evaluated.
        self.by_mask = sum(1 << i for i, info in enumerate(self.info) if info.separable)
        self.rejects = {d: [0] * size for d, _, size in self.read_by}
        for i in bits(self.by_mask):
            for d, mask in self.info[i].accepts.items():
                for j, row in enumerate(self.rejects[d]):
                    if not mask >> j & 1:
                        self.rejects[d][j] = row | 1 << i

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
        if not self.start():
            return
        self._free = self.space.cells  # cells of the read dims not fixed: those of a region
        self._step({}, (1 << len(self.rules)) - 1, 0, None, 0, 0)

    def start(self) -> bool:
        """Whether anything can occur at all; if so, forget what a walk stopped early left."""
        for state, request in self.views:
            state.clear()
            request.clear()
        return self.space.exists({}) is not None

    def _step(
        self, assign: dict[int, Any], open_rules: int, holds: int, changed: int | None, cell: int, pending: int
    ) -> None:
        """One region: ``open_rules`` (a bit mask) were unsettled before ``changed`` was fixed."""
        self.steps += 1
        if self.steps > self.budget:
            raise BudgetExceeded
        still, holds = self.settle(open_rules, holds, changed, cell, pending)
        if holds & self._avoid:
            return
        focus = self._focus
        if focus is not None and not (holds | still) >> focus & 1:
            return
        if self._prune is not None and self._prune(holds, not still):
            return
        if still:
            dim = self.choose(assign, still, focus)
        elif not self._whole:
            self._visit(Region(dict(assign), holds, 0))
            return
        else:
            feasible = self.space.feasibility(assign)
            if feasible == "none":
                return
            if feasible == "all":
                self._visit(Region(dict(assign), holds, self._free))
                return
            dim = min(
                (i for i in self.space.read_dims if i in self.space.constrained and i not in assign),
                key=lambda i: (self.space.dims[i].field not in DERIVED, len(self.space.dims[i].values), i),
            )
        constrained = dim in self.space.constrained
        targets = self.targets[dim]
        exists = self.space.exists
        values = self.space.dims[dim].values
        free = self._free
        if self.space.dims[dim].read:
            self._free = free // len(values)
        pending = self.pending(assign, dim)
        for j, value in enumerate(values):
            assign[dim] = value
            for where, name in targets:
                where[name] = value
            if not constrained or exists(assign) is not None:
                self._step(assign, still, holds, dim, j, pending)
        del assign[dim]
        for where, name in targets:
            del where[name]
        self._free = free

    def settle(self, open_rules: int, holds: int, changed: int | None, cell: int, pending: int) -> tuple[int, int]:
        """The rules still open and those that hold once ``changed`` took its ``cell``-th value.

        Only the open rules that read ``changed`` can change (none is re-evaluated at the
        start, ``changed`` None); ``pending`` are the rules reading some dim still free.
        """
        still = open_rules
        if changed is None:
            check = open_rules
        else:
            check = open_rules & self.readers[changed]
            if check & self.by_mask:
                false = check & self.rejects[changed][cell]
                true = check & self.by_mask & ~false & ~pending
                still ^= false | true
                holds |= true
                check &= ~self.by_mask
        tests = self.tests
        while check:
            low = check & -check
            check ^= low
            test, state, request = tests[low.bit_length() - 1]
            result = test(state, request)
            if result is not None:
                still ^= low
                if result:
                    holds |= low
        return still, holds

    def pending(self, assign: Mapping[int, Any], dim: int) -> int:
        """The rules that read a dim other than ``dim`` not yet fixed."""
        pending = 0
        for d, readers, _ in self.read_by:
            if d != dim and d not in assign:
                pending |= readers
        return pending

    def choose(self, assign: Mapping[int, Any], still: int, focus: int | None) -> int:
        """The unassigned dim read by the most unsettled rules (the focus rule's first)."""
        if focus is not None and still >> focus & 1:
            candidates = [d for d in self.rule_dims[focus] if d not in assign]
            if candidates:
                return min(candidates, key=lambda d: (len(self.space.dims[d].values), d))
        best: tuple[int, int, int] | None = None
        for d, readers, size in self.read_by:
            if d not in assign:
                score = (still & readers).bit_count()
                if score and (best is None or (-score, size, d) < best):
                    best = (-score, size, d)
        assert best is not None  # an unsettled rule reads some dim not yet fixed
        return best[2]


def bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def merge_cubes(space: Space, regions: Sequence[Region]) -> list[tuple[frozenset[int], ...]]:
    """Regions as boxes of cells, greedily merged along one field at a time (exact unions)."""
    # Each side of a box is a bit mask of value indices while merging: the same merges in
    # the same order as with sets, but far cheaper to hash and join.
    assigns = [region.assign for region in regions]
    columns = []
    for i in space.read_dims:
        cells = space.dims[i].values
        mask_of = {v: 1 << j for j, v in reversed(list(enumerate(cells)))}
        mask_of[_UNSET] = (1 << len(cells)) - 1  # a dim the region leaves free: every value
        columns.append([mask_of[assign.get(i, _UNSET)] for assign in assigns])
    cubes: list[tuple[int, ...]] = list(zip(*columns, strict=True)) if columns else [()] * len(regions)
    changed = True
    while changed:
        changed = False
        for d in range(len(space.read_dims)):
            buckets: dict[tuple[int, ...], int] = {}
            for cube in cubes:
                key = cube[:d] + cube[d + 1 :]
                side = buckets.get(key)
                if side is None:
                    buckets[key] = cube[d]
                else:
                    buckets[key] = side | cube[d]
                    changed = True
            cubes = [(*key[:d], values, *key[d:]) for key, values in buckets.items()]
    return [tuple(frozenset(bits(side)) for side in cube) for cube in cubes]
