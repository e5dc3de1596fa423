"""A vehicle without a bus: canonical samples at a fixed cycle, for policy tests and explanations.

Policy tests and ``drivegate explain`` state a vehicle state as canonical signal values
(``speed: 45, gear: D``).  The derived states (``driving_state``, ``workload``,
``speed_band``) are never given: they come out of a real :class:`~safety.vehicle.state.VehicleState`
built as the :class:`~safety.engine.engine.Engine` builds it (the policy's ``state_config``,
thresholds and watched fields), fed sample by sample at the vehicle cycle, so hysteresis,
the workload hold, plausibility and staleness are the engine's own.  Decisions are made
by the engine's own decision pipeline (:class:`~safety.decide.pipeline.DecisionPipeline`):
the request validated, the rules evaluated, then the run-time budgets applied.

Each signal is in one of four modes:

* ``value``: sent every cycle with that value;
* ``invalid`` (``unknown: [...]``): sent every cycle, marked not available by the DBC;
* ``stale`` (``stale: [...]``): sent once, when it became stale, then never again, so it
  is unknown ``max_age`` later (its value still fed the hysteresis and workload hold);
* ``missing`` (``missing: [...]``): never sent (unknown: never received).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from safety.decide.budgets import Adjustment
from safety.decide.explain import Explanation
from safety.decide.pipeline import Decided as PipelineDecided
from safety.decide.pipeline import DecisionPipeline
from safety.errors import Location
from safety.model.decision import Outcome
from safety.policy import CompiledPolicy
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.vehicle.state import VehicleState
from safety.yamlsource import Checker, Node

Mode = Literal["value", "invalid", "stale", "missing"]
DEFAULT_MAX_AGE_S = 0.3
DEFAULT_CYCLE_S = 0.02
CASE_HOLD_S = 1.0  # a case's state is sent this long before the decision
STATE_LISTS = ("stale", "unknown", "missing")
DERIVED = {
    "driving_state": "it comes from speed and gear (and the policy's standstill thresholds)",
    "workload": "it comes from the policy's workload signals (steering, gear, indicators) and hold",
    "speed_band": "it comes from speed (and the policy's bands and hysteresis)",
}
_TIME_EPS = 1e-9


@dataclass(frozen=True)
class Signal:
    """What the bus carries for one signal (see the module docstring).  ``value`` None with
    mode ``stale`` means the last frame, long ago, was invalid."""

    mode: Mode
    value: Any = None


@dataclass(frozen=True)
class SimVehicle:
    """The vehicle a test runs on: which signals it provides, how old each may get, its cycle."""

    max_ages: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(CANONICAL_SIGNALS, DEFAULT_MAX_AGE_S))
    cycle_s: float = DEFAULT_CYCLE_S

    def provides(self, name: str) -> bool:
        return name in self.max_ages

    @property
    def derives_rate(self) -> bool:
        return "steering_rate" not in self.max_ages and "steering_angle" in self.max_ages


@dataclass(frozen=True)
class Step:
    """From ``at`` on (until the next step), the bus carries ``signals``; ``once`` are the
    signals that went stale at this step (sent once, at ``at``)."""

    at: float
    signals: Mapping[str, Signal]
    once: frozenset[str] = frozenset()
    loc: Location = field(default_factory=Location)


@dataclass(frozen=True)
class Decided:
    """One decision of the simulated vehicle, with what is needed to explain it."""

    decided: PipelineDecided  # the pipeline's own record: the decision, and any budget's change
    time: float
    values: Mapping[str, Any]
    why_unknown: Mapping[str, str]
    request: Mapping[str, Any]

    @property
    def outcome(self) -> Outcome:
        return self.decided.decision.outcome

    @property
    def rules(self) -> tuple[str, ...]:
        return self.decided.decision.rules

    @property
    def constraints(self) -> Mapping[str, Any]:
        return self.decided.decision.constraints

    @property
    def reason(self) -> str:
        return self.decided.decision.reason

    @property
    def budget(self) -> Adjustment | None:
        return self.decided.adjustment


class SimCar:
    """A VehicleState fed along ``steps`` (up to ``until``) and decided on as the Engine does."""

    def __init__(self, policy: CompiledPolicy, vehicle: SimVehicle, steps: Sequence[Step], until: float) -> None:
        self.policy = policy
        self.vehicle = vehicle
        self.state = VehicleState(
            dict(vehicle.max_ages), policy.state_config, watch=policy.thresholds, watch_values=policy.watched_values
        )
        self.pipeline = DecisionPipeline(policy)
        self._samples = _sample_times(steps, vehicle.cycle_s, until)
        self._next: tuple[float, Step, bool] | None = next(self._samples, None)

    def advance(self, t: float) -> None:
        """Send every sample due at or before ``t``."""
        while self._next is not None and self._next[0] <= t + _TIME_EPS:
            at, step, first = self._next
            for name, sig in step.signals.items():
                if sig.mode == "value":
                    self.state.update(name, sig.value, at)
                elif sig.mode == "invalid":
                    self.state.update(name, None, at, invalid=True)
                elif sig.mode == "stale" and first and name in step.once:
                    self.state.update(name, sig.value, at, invalid=sig.value is None)
            self._next = next(self._samples, None)

    def decide(self, request: Mapping[str, Any], t: float) -> Decided:
        """Decide ``request`` at ``t`` exactly as ``Engine.decide`` does (rules, then budgets)."""
        self.advance(t)
        self.state.expire(t)
        snap = self.state.snapshot(t)
        decided = self.pipeline.decide(snap.values, request, t, budgets=True)
        return Decided(decided, t, snap.values, snap.unknown, request)

    def explain(self, decided: Decided) -> Explanation:
        return self.pipeline.narrate(
            decided.values, decided.request, decided.decided, time=decided.time, why_unknown=decided.why_unknown
        )


def _sample_times(steps: Sequence[Step], cycle: float, until: float) -> Iterator[tuple[float, Step, bool]]:
    """(time, step, first sample of the step) for every cycle from each step to the next, then to ``until``."""
    for i, step in enumerate(steps):
        stop = steps[i + 1].at if i + 1 < len(steps) else None
        k = 0
        while True:
            # Times are computed from the step, not accumulated, so they do not drift.
            t = round(step.at + k * cycle, 9)
            if (stop is not None and t >= stop - _TIME_EPS) or (stop is None and t > until + _TIME_EPS):
                break
            yield t, step, k == 0
            k += 1


def case_timeline(signals: Mapping[str, Signal], stale: frozenset[str], vehicle: SimVehicle) -> tuple[Step, float]:
    """One state held from t=0 at the cycle; the time to decide at (every stale signal is past its max age)."""
    t = CASE_HOLD_S
    for name in stale:
        t = max(t, vehicle.max_ages[name] + vehicle.cycle_s)
    return Step(0.0, dict(signals), stale), round(t, 9)


# ---------------------------------------------------------------------- parsing a state
@dataclass
class StateChange:
    """A state as written: values and lists, to apply over a base state."""

    values: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[tuple[str, Location]]] = field(default_factory=dict)
    base: tuple[str, Location] | None = None


def parse_state(
    node: Node, what: str, check: Checker, vehicle: SimVehicle, *, extra_keys: tuple[str, ...] = (), base: bool = True
) -> StateChange | None:
    """Check a state mapping (signal values, ``stale``/``unknown``/``missing`` lists, ``base``).

    Keys in ``extra_keys`` (``at`` in a scenario step) are left to the caller.
    """
    if not node.is_map:
        check.error("expected-type", node.loc, f"{what} must be a mapping of signal values")
        return None
    change = StateChange()
    named = (*STATE_LISTS, "base") if base else STATE_LISTS
    for key, child in node.items():
        loc = node.key_loc(key)
        if key in extra_keys:
            continue
        if key in STATE_LISTS:
            change.lists[key] = _signal_list(child, f"{what}.{key}", check, vehicle)
        elif key == "base" and base:
            if isinstance(child.value, str) and child.value:
                change.base = (child.value, child.loc)
            else:
                check.string(child, f"{what}.base")
        elif key in DERIVED:
            check.error("derived-field", loc, f"{what}: '{key}' cannot be set: {DERIVED[key]}; set those signals")
        elif key not in CANONICAL_SIGNALS:
            expected = ", ".join((*CANONICAL_SIGNALS, *named, *extra_keys))
            check.error("unknown-signal", loc, f"unknown signal '{key}' in {what}; expected one of: {expected}")
        elif _provided(key, loc, what, check, vehicle):
            value = _signal_value(key, child, f"{what}.{key}", check)
            if value is not _BAD:
                change.values[key] = value
    return change


def apply_state(
    base: Mapping[str, Signal], change: StateChange, what: str, check: Checker, *, first: bool
) -> dict[str, Signal]:
    """``base`` with ``change`` applied.

    ``first``: before any frame (a case, a scenario's first step); only there may a signal
    be ``missing`` (never received).
    """
    out = dict(base)
    for name, value in change.values.items():
        out[name] = Signal("value", value)
    seen: dict[str, str] = {}
    for key in STATE_LISTS:
        for name, loc in change.lists.get(key, []):
            if name in seen:
                check.error("bad-state", loc, f"{what}: '{name}' is listed under both {seen[name]} and {key}")
                continue
            seen[name] = key
            if key != "stale" and name in change.values:
                check.error("bad-state", loc, f"{what}: '{name}' has a value and is listed under {key}")
            elif key == "unknown":
                out[name] = Signal("invalid")
            elif key == "missing":
                if not first:
                    check.error(
                        "bad-state",
                        loc,
                        f"{what}: 'missing' means never received, so it applies only before the first frame "
                        f"(a case, a scenario's first step); use stale for '{name}' here",
                    )
                out[name] = Signal("missing")
            else:
                previous = out.get(name)
                if previous is None or previous.mode == "missing":
                    check.error(
                        "bad-state",
                        loc,
                        f"{what}: stale signal '{name}' was never sent; give the last value received "
                        f"(e.g. {name}: {_example(name)}), or list it under missing",
                    )
                    continue
                out[name] = Signal("stale", None if previous.mode == "invalid" else previous.value)
    return out


def went_stale(before: Mapping[str, Signal], after: Mapping[str, Signal]) -> frozenset[str]:
    """Signals stale in ``after`` that were not in ``before``: they are sent once more, then stop."""
    return frozenset(
        name
        for name, sig in after.items()
        if sig.mode == "stale" and (name not in before or before[name].mode != "stale")
    )


def json_node(value: Any, where: str) -> Node:
    """A Node tree for JSON given on the command line (every place is the option's name)."""
    loc = Location(file=where)
    if isinstance(value, dict):
        return Node({str(k): json_node(v, where) for k, v in value.items()}, loc, {str(k): loc for k in value})
    if isinstance(value, list):
        return Node([json_node(v, where) for v in value], loc)
    return Node(value, loc)


_BAD = object()


def _provided(name: str, loc: Location, what: str, check: Checker, vehicle: SimVehicle) -> bool:
    if vehicle.provides(name):
        return True
    if name == "steering_rate" and vehicle.derives_rate:
        why = "it is derived from steering_angle on this vehicle (give steering_rate a max age to set it)"
    else:
        why = f"the vehicle provides: {', '.join(vehicle.max_ages)}"
    check.error("not-provided", loc, f"{what}: signal '{name}' is not provided by the test vehicle; {why}")
    return False


def _signal_list(node: Node, what: str, check: Checker, vehicle: SimVehicle) -> list[tuple[str, Location]]:
    if not node.is_seq:
        check.error("expected-type", node.loc, f"{what} must be a list of signal names")
        return []
    out: list[tuple[str, Location]] = []
    for item in node.value:
        name = item.value
        if not isinstance(name, str) or name not in CANONICAL_SIGNALS:
            shown = repr(name) if not isinstance(name, dict | list) else "a " + type(name).__name__
            check.error(
                "unknown-signal",
                item.loc,
                f"{what}: {shown} is not a signal; expected one of: {', '.join(CANONICAL_SIGNALS)}",
            )
        elif _provided(name, item.loc, what, check, vehicle):
            out.append((name, item.loc))
    return out


def _signal_value(name: str, node: Node, what: str, check: Checker) -> Any:
    spec = CANONICAL_SIGNALS[name]
    value = node.value
    if spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            unit = f" ({spec.unit})" if spec.unit else ""
            check.error("expected-type", node.loc, f"{what} must be a finite number{unit}, got {_describe(value)}")
            return _BAD
        return float(value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            check.error("expected-type", node.loc, f"{what} must be true or false, got {_describe(value)}")
            return _BAD
        return value
    if not isinstance(value, str) or value not in spec.values:
        check.error(
            "unknown-value",
            node.loc,
            f"{what}: {_describe(value)} is not a value of this signal; expected one of: {', '.join(spec.values)}",
        )
        return _BAD
    return value


def _example(name: str) -> str:
    spec = CANONICAL_SIGNALS[name]
    return {"number": "0", "bool": "false"}.get(spec.kind, spec.values[0] if spec.values else "...")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"
