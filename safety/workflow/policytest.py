"""Policy tests: YAML files that pin down what a policy decides (``drivegate test``).

A test file holds *cases* (one state, one request, the expected decision) and
*scenarios* (a timed sequence of states with expected decisions at given times, for
hysteresis, the workload hold and staleness)::

    version: 1                          # optional
    description: default policy suite   # optional
    defaults:                           # optional
      max_age_ms: 300                   # every canonical signal (the default); or a mapping
                                        # {speed: 300, gear: 500, ...}: the test vehicle has only
                                        # those signals (without steering_rate, it is derived
                                        # from steering_angle, as on a real car)
      cycle_ms: 20                      # samples are sent this often (default 20)
      state: {steering_angle: 0, steering_rate: 0, turn_signal: none}   # under every state
      request: {kind: notification, category: message, priority: normal} # under every request
    states:                             # optional named states, used as `base: NAME`
      city: {speed: 45, gear: D}
    cases:
      - name: video is locked out while moving        # unique in the file
        state: {base: city}
        request: {modality: visual, content: video}
        expect:
          outcome: deny                 # allow | degrade | defer | deny
          rules: [lockout-video]        # optional: exactly these deciding rules, any order
          constraints: {}               # optional: exactly these constraints
    scenarios:
      - name: the workload is held 3 s after a sharp turn
        steps:                          # each step: `at` (s) and what changes
          - {at: 0, base: city, steering_angle: 200}
          - {at: 1, steering_angle: 0}
        expect_at:                      # in time order
          - {t: 3.9, request: {modality: voice, content: text}, outcome: defer, rules: [hold-high-workload]}
          - {t: 4.1, request: {modality: voice, content: text}, outcome: allow}

A **state** is canonical signal values (``speed, gear, steering_angle, steering_rate,
parking_brake, turn_signal, brake_pressed, accelerator_pedal, eyes_on_road``) plus
``stale: [signals]`` (the signal stopped: its last frame is older than its max age when
deciding; it keeps its last value for the hysteresis and the workload hold),
``unknown: [signals]`` (sent, but marked not available by the DBC), ``missing:
[signals]`` (never received; only in a case or a scenario's first step) and ``base:
NAME``.  A signal given nowhere is never received, so it is unknown, as on a real bus.
The derived ``driving_state``, ``workload`` and ``speed_band`` cannot be set: a real
vehicle state derives them, with the policy's thresholds and hysteresis.  A state is
built up from ``defaults.state``, then the named ``base``, then its own keys; a
scenario step starts from the previous step.

A **case** sends its state every cycle for 1 s (longer when a stale signal's max age
needs it) and decides at the end, so values start up as in the engine (a speed between
the standstill thresholds starts as moving: use a scenario to come to it from below).
A **scenario** sends each step's state every cycle from its ``at`` until the next step,
and the last one until the last check; a check at ``t`` sees every sample at or before
``t``.  Changes take effect in one cycle, as a real bus shows them, so a jump no car can
make (60 km/h per s) is implausible, hence unknown, until three samples agree.

A **request** is ``defaults.request`` with the case's or check's fields over it (``null``
removes a field: an optional one left out is unknown).  Requests must be valid: a typo
would otherwise be denied and could pass a test expecting ``deny``.  Decisions are made
as ``Engine.decide`` makes them, run-time budgets included (a scenario's checks share one
budget, in time order), so ``rules`` may name ``budget-glance``, ``budget-task`` or
``budget-rate``.

Every problem in a test file is reported at once, sorted, as ``file:line:col: code:
message``.  Rule coverage: a rule is exercised when it is among the deciding rules of a
check; ``--coverage PERCENT`` fails a run below that share of the policy's rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safety.decide.explain import Explanation
from safety.errors import DriveGateError, LoadError, Location, PolicyTestError
from safety.model.decision import OUTCOMES, Outcome
from safety.model.request import REQUEST_FIELDS, validate_request
from safety.model.rules import GLANCE_RULE, RATE_RULE, TASK_RULE
from safety.policy import CompiledPolicy
from safety.policy.parse import CONSTRAINT_KEYS
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.workflow.simcar import (
    Decided,
    Signal,
    SimCar,
    SimVehicle,
    StateChange,
    Step,
    apply_state,
    case_timeline,
    parse_state,
    went_stale,
)
from safety.yamlsource import Checker, Node, load_yaml, read_yaml_text

TOP_KEYS = ("version", "description", "defaults", "states", "cases", "scenarios")
DEFAULT_KEYS = ("max_age_ms", "cycle_ms", "state", "request")
CASE_KEYS = ("name", "description", "state", "request", "expect")
EXPECT_KEYS = ("outcome", "rules", "constraints")
SCENARIO_KEYS = ("name", "description", "steps", "expect_at")
CHECK_KEYS = ("t", "name", "request", *EXPECT_KEYS)
BUDGET_RULES = (GLANCE_RULE, TASK_RULE, RATE_RULE)
CONSTRAINTS = tuple(dict.fromkeys(k for keys in CONSTRAINT_KEYS.values() for k in keys))
WHOLE_NUMBER_CONSTRAINTS = ("max_text_length", "max_list_items", "retry_after_ms")


# The longest simulated drive a suite may ask for: the simulated car sends every message at its
# cycle time, so a step at 10^8 s would be 10^10 frames (it hung `drivegate test`).
MAX_TEST_TIME_S = 3600.0


def _bounded_time(value: float | None, node: Node, what: str, check: Checker) -> float | None:
    if value is not None and not 0.0 <= value <= MAX_TEST_TIME_S:
        check.error(
            "bad-time",
            node.loc,
            f"{what} ({value:g} s) must be at most {MAX_TEST_TIME_S:g} s: a policy test drive lasts minutes, not days"
            if value > 0
            else f"{what} ({value:g} s) must be 0 or more seconds",
        )
        return None
    return value


def _make_error(code: str, loc: Location, message: str) -> PolicyTestError:
    return PolicyTestError(message, loc, code=code)


# ---------------------------------------------------------------------- the parsed file
@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    rules: tuple[str, ...] | None = None  # None: not checked
    constraints: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Check:
    """One decision to check: a request at time ``t``, and what is expected."""

    label: str
    loc: Location
    t: float
    request: Mapping[str, Any]
    expect: Expect


@dataclass(frozen=True)
class Scenario:
    """A case (one step, one check) or a scenario."""

    name: str
    kind: str  # "case" | "scenario"
    loc: Location
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class SuiteFile:
    path: str
    vehicle: SimVehicle
    scenarios: tuple[Scenario, ...]


def load_test_files(paths: Iterable[str | Path], policy: CompiledPolicy) -> list[SuiteFile]:
    """Read and check test files against ``policy``; raise one LoadError with every problem of every file."""
    files: list[SuiteFile] = []
    errors: list[DriveGateError] = []
    for path in paths:
        try:
            files.append(load_test_file(path, policy))
        except LoadError as exc:
            errors += exc.errors
    if errors:
        raise LoadError(errors)
    return files


def load_test_file(path: str | Path, policy: CompiledPolicy) -> SuiteFile:
    """Read and check one test file against ``policy``; raise LoadError listing every problem."""
    name = str(path)
    try:
        text = read_yaml_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError([_make_error("unreadable", Location(file=name), f"cannot read the test file: {exc}")]) from exc
    check = Checker(_make_error)
    root = load_yaml(name, text, _make_error, check.errors)
    parsed = _Parser(name, policy, check).file(root)
    if check.errors:
        # A state used by several cases repeats its problem: report each once.
        unique = {str(e): e for e in check.errors.errors}
        raise LoadError(unique.values())
    assert parsed is not None
    return parsed


class _Parser:
    def __init__(self, path: str, policy: CompiledPolicy, check: Checker) -> None:
        self.path = path
        self.policy = policy
        self.check = check
        self.vehicle = SimVehicle()
        self.base: dict[str, Signal] = {}
        self.base_request: dict[str, tuple[Any, Location]] = {}
        self.states: dict[str, StateChange] = {}
        self.names: dict[str, Location] = {}

    def file(self, root: Node) -> SuiteFile | None:
        check = self.check
        if not check.mapping(root, "the test file", TOP_KEYS):
            return None
        if (version := root.get("version")) is not None and version.value != 1:
            check.error("unsupported-version", version.loc, f"version must be 1, got {version.value!r}")
        if (desc := root.get("description")) is not None:
            check.string(desc, "description")
        if "cases" not in root.value and "scenarios" not in root.value:
            check.error("missing-key", root.loc, "the test file has neither 'cases' nor 'scenarios'")
        self._defaults(root.get("defaults"))
        if (states := root.get("states")) is not None:
            self._named_states(states)
        scenarios: list[Scenario] = []
        for key, parse in (("cases", self._case), ("scenarios", self._scenario)):
            node = root.get(key)
            if node is None:
                continue
            if not node.is_seq or not node.value:
                check.error("expected-type", node.loc, f"{key} must be a non-empty list")
                continue
            for i, item in enumerate(node.value):
                found = parse(item, f"{key}[{i}]")
                if found is not None:
                    scenarios.append(found)
        return SuiteFile(self.path, self.vehicle, tuple(scenarios))

    # -- defaults and named states
    def _defaults(self, node: Node | None) -> None:
        check = self.check
        if node is None or not check.mapping(node, "defaults", DEFAULT_KEYS):
            return
        max_ages: dict[str, float] = dict(self.vehicle.max_ages)
        if (ages := node.get("max_age_ms")) is not None:
            if ages.is_map:
                max_ages = {}
                for key, child in ages.items():
                    if key not in CANONICAL_SIGNALS:
                        check.error(
                            "unknown-signal",
                            ages.key_loc(key),
                            f"unknown signal '{key}' in defaults.max_age_ms; expected one of: {', '.join(CANONICAL_SIGNALS)}",
                        )
                    elif (ms := check.number(child, f"defaults.max_age_ms.{key}", minimum=1)) is not None:
                        max_ages[key] = ms / 1000.0
            elif (ms := check.number(ages, "defaults.max_age_ms", minimum=1)) is not None:
                max_ages = dict.fromkeys(CANONICAL_SIGNALS, ms / 1000.0)
        cycle = self.vehicle.cycle_s
        if (cyc := node.get("cycle_ms")) is not None:
            cycle = (check.number(cyc, "defaults.cycle_ms", minimum=1) or cycle * 1000.0) / 1000.0
        self.vehicle = SimVehicle(max_ages, cycle)
        if (state := node.get("state")) is not None:
            change = parse_state(state, "defaults.state", check, self.vehicle, base=False)
            if change is not None:
                self.base = apply_state({}, change, "defaults.state", check, first=True)
        if (request := node.get("request")) is not None:
            if request.is_map:
                self.base_request = {k: (v.value, request.key_loc(k)) for k, v in request.items()}
            else:
                check.error("expected-type", request.loc, "defaults.request must be a mapping of request fields")

    def _named_states(self, node: Node) -> None:
        if not node.is_map:
            self.check.error("expected-type", node.loc, "states must be a mapping of names to states")
            return
        for key, child in node.items():
            change = parse_state(child, f"states.{key}", self.check, self.vehicle, base=False)
            if change is not None:
                self.states[key] = change

    def _state(
        self, previous: Mapping[str, Signal], change: StateChange | None, what: str, *, first: bool
    ) -> dict[str, Signal]:
        if change is None:
            return dict(previous)
        state = dict(previous)
        if change.base is not None:
            name, loc = change.base
            named = self.states.get(name)
            if named is None:
                known = ", ".join(self.states) or "none defined (see 'states')"
                self.check.error(
                    "unknown-state", loc, f"{what}.base: unknown state '{name}'; the named states are: {known}"
                )
            else:
                state = apply_state(state, named, f"states.{name}", self.check, first=first)
        return apply_state(state, change, what, self.check, first=first)

    # -- cases and scenarios
    def _name(self, node: Node, what: str) -> str | None:
        name_node = node.get("name")
        name = self.check.string(name_node, f"{what}.name") if name_node is not None else None
        if name is not None and name_node is not None:
            if name in self.names:
                self.check.error(
                    "duplicate-name", name_node.loc, f"duplicate name '{name}' (first at line {self.names[name].line})"
                )
            else:
                self.names[name] = name_node.loc
        return name

    def _case(self, node: Node, what: str) -> Scenario | None:
        check = self.check
        if not check.mapping(node, what, CASE_KEYS, ("name", "expect")):
            return None
        name = self._name(node, what)
        if name is not None:
            what = f"case '{name}'"
        state_node = node.get("state")
        change = parse_state(state_node, f"{what}.state", check, self.vehicle) if state_node is not None else None
        signals = self._state(self.base, change, f"{what}.state", first=True)
        request = self._request(node.get("request"), f"{what}.request", node.loc)
        expect_node = node.get("expect")
        expect = None
        if expect_node is not None and check.mapping(expect_node, f"{what}.expect", EXPECT_KEYS, ("outcome",)):
            expect = self._expect(expect_node, f"{what}.expect")
        if name is None or request is None or expect is None:
            return None
        stale = frozenset(n for n, s in signals.items() if s.mode == "stale")
        step, t = case_timeline(signals, stale, self.vehicle)
        return Scenario(name, "case", node.loc, (step,), (Check(name, node.loc, t, request, expect),))

    def _scenario(self, node: Node, what: str) -> Scenario | None:
        check = self.check
        if not check.mapping(node, what, SCENARIO_KEYS, ("name", "steps", "expect_at")):
            return None
        name = self._name(node, what)
        if name is not None:
            what = f"scenario '{name}'"
        steps = self._steps(node.get("steps"), f"{what}.steps")
        checks = self._checks(node.get("expect_at"), f"{what}.expect_at", name or "")
        if name is None or steps is None or checks is None:
            return None
        return Scenario(name, "scenario", node.loc, tuple(steps), tuple(checks))

    def _steps(self, node: Node | None, what: str) -> list[Step] | None:
        check = self.check
        if node is None:
            return None
        if not node.is_seq or not node.value:
            check.error("expected-type", node.loc, f"{what} must be a non-empty list of steps")
            return None
        steps: list[Step] = []
        previous: dict[str, Signal] = self.base
        ok = True
        for i, item in enumerate(node.value):
            where = f"{what}[{i}]"
            if not item.is_map or "at" not in item.value:
                check.error("missing-key", item.loc, f"{where} must be a mapping with 'at' (seconds) and signal values")
                ok = False
                continue
            at = _bounded_time(check.number(item.value["at"], f"{where}.at"), item.value["at"], f"{where}.at", check)
            if at is not None and steps and at <= steps[-1].at:
                check.error(
                    "bad-time",
                    item.value["at"].loc,
                    f"{where}.at ({at:g} s) must be after the previous step ({steps[-1].at:g} s)",
                )
                at = None
            change = parse_state(item, where, check, self.vehicle, extra_keys=("at",))
            state = self._state(previous, change, where, first=not steps)
            if at is None or change is None:
                ok = False
                continue
            once = (
                frozenset(n for n, s in state.items() if s.mode == "stale")
                if not steps
                else went_stale(previous, state)
            )
            steps.append(Step(at, state, once, item.loc))
            previous = state
        return steps if ok else None

    def _checks(self, node: Node | None, what: str, scenario: str) -> list[Check] | None:
        check = self.check
        if node is None:
            return None
        if not node.is_seq or not node.value:
            check.error("expected-type", node.loc, f"{what} must be a non-empty list of checks")
            return None
        checks: list[Check] = []
        ok = True
        last = -float("inf")
        for i, item in enumerate(node.value):
            where = f"{what}[{i}]"
            if not check.mapping(item, where, CHECK_KEYS, ("t", "outcome")):
                ok = False
                continue
            t_node = item.value.get("t")
            t = (
                None
                if t_node is None
                else _bounded_time(check.number(t_node, f"{where}.t"), t_node, f"{where}.t", check)
            )
            if t is not None and t < last:
                check.error(
                    "bad-time",
                    item.value["t"].loc,
                    f"{where}.t ({t:g} s) is before the previous check ({last:g} s); list checks in time order",
                )
            elif t is not None:
                last = t
            label_node = item.get("name")
            label = check.string(label_node, f"{where}.name") if label_node is not None else None
            request = self._request(item.get("request"), f"{where}.request", item.loc)
            expect = self._expect(item, where)
            if t is None or request is None or expect is None:
                ok = False
                continue
            title = f"{scenario} @ {t:g} s" + (f": {label}" if label else "")
            checks.append(Check(title, item.loc, t, request, expect))
        return checks if ok else None

    # -- requests and expectations
    def _request(self, node: Node | None, what: str, where: Location) -> dict[str, Any] | None:
        merged = dict(self.base_request)
        from_defaults = set(merged)
        if node is not None:
            if not node.is_map:
                self.check.error("expected-type", node.loc, f"{what} must be a mapping of request fields")
                return None
            merged.update({k: (v.value, node.key_loc(k)) for k, v in node.items()})
            from_defaults -= set(node.value)
            where = node.loc
        request = {k: value for k, (value, _) in merged.items() if value is not None}
        places = {k: loc for k, (_, loc) in merged.items()}
        probe = dict(request)
        ok = True
        # validate_request reports the first problem; fix each in a probe copy to find them all.
        for _ in range(len(REQUEST_FIELDS) + len(probe)):
            problem = validate_request(probe)
            if problem is None:
                break
            ok = False
            field = problem.location.field
            # A bad field of defaults.request is reported once, there, not in every case using it.
            owner = "defaults.request" if field in from_defaults else what
            self.check.error("bad-request", places.get(field, where), f"{owner}: {problem.message}")
            spec = REQUEST_FIELDS.get(field)
            if spec is not None and spec.required:
                probe[field] = spec.values[0]
            else:
                probe.pop(field, None)
        return request if ok else None

    def _expect(self, node: Node, what: str) -> Expect | None:
        check = self.check
        outcome_node = node.get("outcome")
        outcome = check.choice(outcome_node, f"{what}.outcome", OUTCOMES) if outcome_node is not None else None
        rules: tuple[str, ...] | None = None
        if (rules_node := node.get("rules")) is not None:
            rules = self._rules(rules_node, f"{what}.rules")
        constraints: dict[str, Any] | None = None
        if (cons := node.get("constraints")) is not None:
            constraints = self._constraints(cons, f"{what}.constraints")
        if (
            outcome is None
            or ("rules" in node.value and rules is None)
            or ("constraints" in node.value and constraints is None)
        ):
            return None
        return Expect(Outcome(outcome), rules, constraints)

    def _rules(self, node: Node, what: str) -> tuple[str, ...] | None:
        if not node.is_seq:
            self.check.error("expected-type", node.loc, f"{what} must be a list of rule ids")
            return None
        known = [r.id for r in self.policy.rules]
        out: list[str] = []
        ok = True
        for item in node.value:
            rule = item.value
            if isinstance(rule, str) and (rule in known or rule in BUDGET_RULES):
                out.append(rule)
                continue
            ok = False
            close = difflib.get_close_matches(str(rule), [*known, *BUDGET_RULES], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.check.error(
                "unknown-rule",
                item.loc,
                f"{what}: unknown rule {rule!r}{hint}; policy '{self.policy.name}' has: {', '.join(known)}",
            )
        return tuple(out) if ok else None

    def _constraints(self, node: Node, what: str) -> dict[str, Any] | None:
        check = self.check
        if not check.mapping(node, what, CONSTRAINTS):
            return None
        out: dict[str, Any] = {}
        ok = True
        for key, child in node.items():
            if key not in CONSTRAINTS:
                ok = False
            elif key in WHOLE_NUMBER_CONSTRAINTS:
                if isinstance(child.value, bool) or not isinstance(child.value, int) or child.value < 0:
                    check.error(
                        "expected-type", child.loc, f"{what}.{key} must be a whole number >= 0, got {child.value!r}"
                    )
                    ok = False
                else:
                    out[key] = child.value
            elif (text := check.string(child, f"{what}.{key}")) is not None:
                out[key] = text
            else:
                ok = False
        return out if ok else None


# ---------------------------------------------------------------------- running
@dataclass(frozen=True)
class CheckResult:
    """One check, what it expected and what the policy decided."""

    file: str
    scenario: str
    kind: str
    check: Check
    got: Decided
    mismatches: tuple[str, ...]  # "outcome", "rules", "constraints"
    explanation: Explanation | None  # given for failed checks

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True)
class Coverage:
    total: int
    covered: tuple[str, ...]
    missed: tuple[tuple[str, Location], ...]  # never among the deciding rules, with where they are

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else 100.0 * len(self.covered) / self.total


@dataclass(frozen=True)
class Report:
    policy: CompiledPolicy
    files: tuple[str, ...]
    results: tuple[CheckResult, ...]
    coverage: Coverage

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)


def run_scenario(policy: CompiledPolicy, vehicle: SimVehicle, scenario: Scenario, file: str) -> list[CheckResult]:
    """Drive one case or scenario and decide each of its checks in time order."""
    car = SimCar(policy, vehicle, scenario.steps, scenario.checks[-1].t)
    results: list[CheckResult] = []
    for check in scenario.checks:
        got = car.decide(check.request, check.t)
        mismatches = _mismatches(check.expect, got)
        explanation = car.explain(got) if mismatches else None
        results.append(CheckResult(file, scenario.name, scenario.kind, check, got, mismatches, explanation))
    return results


def run_tests(policy: CompiledPolicy, files: Sequence[SuiteFile]) -> Report:
    """Run every case and scenario of ``files``; measure rule coverage over all of them."""
    results = [r for f in files for s in f.scenarios for r in run_scenario(policy, f.vehicle, s, f.path)]
    exercised = {rule for r in results for rule in r.got.rules}
    covered = tuple(r.id for r in policy.rules if r.id in exercised)
    missed = tuple((r.id, r.source.loc) for r in policy.rules if r.id not in exercised)
    return Report(policy, tuple(f.path for f in files), tuple(results), Coverage(len(policy.rules), covered, missed))


def suite_check(
    paths: Sequence[str | Path], min_coverage: float | None = None
) -> Callable[[CompiledPolicy], list[str]]:
    """A check for ``Engine.reload(checks=[...])``: the policy's tests must load, pass and cover enough."""

    def check(policy: CompiledPolicy) -> list[str]:
        try:
            files = load_test_files(paths, policy)
        except LoadError as exc:
            return [str(e) for e in exc.errors]
        report = run_tests(policy, files)
        problems = [
            f"{r.check.loc}: test '{r.check.label}' failed: expected {r.check.expect.outcome.value}, "
            f"got {r.got.outcome.value} ({', '.join(r.got.rules) or 'default'})"
            for r in report.failed
        ]
        if min_coverage is not None and report.coverage.percent < min_coverage:
            problems.append(f"rule coverage {report.coverage.percent:.1f}% is under {min_coverage:g}%")
        return problems

    return check


def _mismatches(expect: Expect, got: Decided) -> tuple[str, ...]:
    out = []
    if got.outcome is not expect.outcome:
        out.append("outcome")
    if expect.rules is not None and set(expect.rules) != set(got.rules):
        out.append("rules")
    if expect.constraints is not None and dict(expect.constraints) != dict(got.constraints):
        out.append("constraints")
    return tuple(out)
