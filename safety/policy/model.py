"""The parsed policy: plain data with places, before compilation.

This is what later tooling (lint, compare, explain) reasons over: conditions are data,
never code, so every question about a policy can be answered exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from safety.errors import Location
from safety.model.decision import Outcome
from safety.model.request import REQUEST_FIELDS
from safety.vehicle.signals import CANONICAL_SIGNALS

FieldSource = Literal["state", "request"]
FieldKind = Literal["number", "enum", "bool", "string"]

DRIVING_STATES = ("parked", "stationary", "moving")
WORKLOADS = ("low", "high")

NUMBER_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "between")
ENUM_OPS = ("eq", "ne", "in", "not_in")
BOOL_OPS = ("eq", "ne")
# Lint warnings a policy may declare expected (``lint: {ignore: [...]}``).  Errors, and the
# warnings that say the analysis itself is incomplete or a declaration is wrong, cannot be.
LINT_IGNORABLE = (
    "conflict",
    "gap",
    "narrow-hysteresis",
    "override-unused",
    "redundant-rule",
    "shadowed-rule",
    "unmapped-signal",
    "weak-ref",
)


@dataclass(frozen=True)
class FieldSpec:
    """A name a condition may test, where its value comes from, and what values it takes."""

    name: str
    source: FieldSource
    kind: FieldKind
    values: tuple[Any, ...] = ()

    @property
    def operators(self) -> tuple[str, ...]:
        if self.kind == "number":
            return NUMBER_OPS
        if self.kind == "bool":
            return BOOL_OPS
        return ENUM_OPS


def condition_fields(speed_bands: tuple[str, ...] = ()) -> dict[str, FieldSpec]:
    """Every field a condition may name: canonical and derived state, and request fields."""
    fields: dict[str, FieldSpec] = {}
    for sig in CANONICAL_SIGNALS.values():
        fields[sig.name] = FieldSpec(
            sig.name, "state", sig.kind, sig.values or ((False, True) if sig.kind == "bool" else ())
        )
    fields["driving_state"] = FieldSpec("driving_state", "state", "enum", DRIVING_STATES)
    fields["workload"] = FieldSpec("workload", "state", "enum", WORKLOADS)
    if speed_bands:
        fields["speed_band"] = FieldSpec("speed_band", "state", "enum", speed_bands)
    for req in REQUEST_FIELDS.values():
        if req.name in ("id", "text", "task_id", "glance_ms", "ttl_ms"):
            continue  # identifiers, content and run-time budget inputs are never rule inputs
        fields[req.name] = FieldSpec(req.name, "request", req.kind, req.values)
    return fields


@dataclass(frozen=True)
class Test:
    """``field op value``: a leaf condition."""

    field: str
    op: str
    value: Any
    loc: Location


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]
    loc: Location


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    loc: Location


@dataclass(frozen=True)
class NotOf:
    item: Condition
    loc: Location


Condition = Test | AllOf | AnyOf | NotOf


@dataclass(frozen=True)
class Rule:
    id: str
    ref: str
    outcome: Outcome
    when: Condition | None
    constraints: dict[str, Any]
    exception: bool
    reason: str
    description: str
    loc: Location
    # Rules this one is meant to take precedence over where both hold (id -> where it is
    # written).  A declaration for reviewers, checked by lint; evaluation is unchanged.
    overrides: Mapping[str, Location] = field(default_factory=dict)


@dataclass(frozen=True)
class Hysteresis:
    """A threshold with hysteresis: active at ``on`` or beyond, released past ``off``."""

    on: float
    off: float
    loc: Location


@dataclass(frozen=True)
class WorkloadTrigger:
    """One reason for high workload: a numeric signal beyond a threshold, or an enum in a set."""

    signal: str
    loc: Location
    threshold: Hysteresis | None = None
    use_abs: bool = False
    values: tuple[Any, ...] = ()
    ref: str = ""


@dataclass(frozen=True)
class SpeedBand:
    name: str
    below: float | None  # upper edge (exclusive), None for the last band
    loc: Location


@dataclass(frozen=True)
class StateSection:
    standstill: Hysteresis | None = None  # on = enter standstill below, off = leave above
    workload_triggers: tuple[WorkloadTrigger, ...] = ()
    workload_hold_s: float = 0.0
    speed_bands: tuple[SpeedBand, ...] = ()
    band_hysteresis: float = 0.0
    dwell_s: float | None = None  # before a less demanding driving state or speed band; None: the default


@dataclass(frozen=True)
class Budgets:
    """Interaction budgets enforced at run time (beyond what a stateless rule can say)."""

    glance_single_s: float | None = None  # NHTSA: single glance <= 2 s
    glance_task_s: float | None = None  # NHTSA: total eyes-off-road <= 12 s per task
    glance_ref: str = ""
    rate_max: int | None = None  # notifications per window while not parked
    rate_window_s: float = 60.0
    rate_ref: str = ""


@dataclass(frozen=True)
class PolicyDoc:
    """A whole parsed policy."""

    file: str
    name: str
    description: str
    default: Outcome
    default_reason: str
    state: StateSection
    rules: tuple[Rule, ...]
    content_hash: str
    requires_parked_to_activate: bool = False
    budgets: Budgets = field(default_factory=Budgets)
    lint_ignore: Mapping[str, Location] = field(default_factory=dict)  # lint codes not reported, and where
    # Test suites the policy names itself (``tests:``, relative to its file): every reload runs them.
    suites: tuple[str, ...] = ()
