"""Parse a policy file (YAML) into a PolicyDoc, collecting every problem with its place."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from safety.errors import Location, PolicyError
from safety.model.decision import OUTCOMES, Outcome
from safety.model.rules import RESERVED_RULE_IDS
from safety.policy.model import (
    LINT_IGNORABLE,
    AllOf,
    AnyOf,
    Budgets,
    Condition,
    FieldSpec,
    Hysteresis,
    NotOf,
    PolicyDoc,
    Rule,
    SpeedBand,
    StateSection,
    Test,
    WorkloadTrigger,
    condition_fields,
)
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.yamlsource import Checker, Node, load_yaml

TOP_KEYS = ("version", "name", "description", "tests", "default", "state", "rules", "activation", "budgets", "lint")
RULE_KEYS = ("id", "ref", "description", "when", "outcome", "constraints", "exception", "reason", "overrides")
STATE_KEYS = ("standstill", "workload", "speed_bands", "dwell_ms")
CONSTRAINT_KEYS: dict[str, tuple[str, ...]] = {
    "degrade": ("modality", "max_text_length", "max_list_items", "input"),
    "defer": ("retry_after_ms", "until"),
    "allow": (),
    "deny": (),
}
DEGRADE_MODALITIES = ("voice", "audio")
INPUT_MODES = ("voice",)
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
COMBINATORS = ("all", "any", "not")


def _make_error(code: str, loc: Location, message: str) -> PolicyError:
    return PolicyError(message, loc, code=code)


def parse_policy_text(path: str, text: str) -> PolicyDoc:
    """Parse policy ``text`` read from ``path``; raise LoadError with every problem found."""
    check = Checker(_make_error)
    root = load_yaml(path, text, _make_error, check.errors)
    doc = _parse_doc(path, root, check)
    check.errors.raise_if_any()
    assert doc is not None
    return doc


def _parse_doc(path: str, root: Node, check: Checker) -> PolicyDoc | None:
    if not check.mapping(root, "the policy", TOP_KEYS, ("version", "name", "default", "rules")):
        return None
    version = root.get("version")
    if version is not None and version.value != 1:
        check.error("unsupported-version", version.loc, f"version must be 1, got {version.value!r}")
    name_node = root.get("name")
    name = (check.string(name_node, "name") if name_node else None) or ""
    desc_node = root.get("description")
    description = (check.string(desc_node, "description") if desc_node else None) or ""
    default, default_reason = _parse_default(root.get("default"), check)
    state = _parse_state(root.get("state"), check)
    bands = tuple(b.name for b in state.speed_bands)
    fields = condition_fields(bands)
    rules = _parse_rules(root.get("rules"), check, fields)
    parked_only = False
    activation = root.get("activation")
    if activation is not None and check.mapping(activation, "activation", ("require_parked",)):
        node = activation.get("require_parked")
        parked_only = bool(node is not None and check.boolean(node, "activation.require_parked"))
    budgets = _parse_budgets(root.get("budgets"), check)
    lint_ignore = _parse_lint(root.get("lint"), check)
    tests_node = root.get("tests")
    suites = tuple(
        os.path.normpath(os.path.join(os.path.dirname(path), text))
        for text, _ in (_string_list(tests_node, "tests", check) if tests_node is not None else ())
    )
    canonical = json.dumps(root.plain(), sort_keys=True, separators=(",", ":"), default=str)
    content_hash = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return PolicyDoc(
        file=path,
        name=name,
        description=description,
        default=default or Outcome.DENY,
        default_reason=default_reason,
        state=state,
        rules=rules,
        content_hash=content_hash,
        requires_parked_to_activate=parked_only,
        budgets=budgets,
        lint_ignore=lint_ignore,
        suites=suites,
    )


def _string_list(node: Node, what: str, check: Checker) -> list[tuple[str, Location]]:
    """A list of non-empty strings, each with its place; problems reported, bad items skipped."""
    if not node.is_seq:
        check.error("expected-type", node.loc, f"{what} must be a list of strings")
        return []
    out = []
    for i, item in enumerate(node.value):
        text = check.string(item, f"{what}[{i}]")
        if text is not None:
            out.append((text, item.loc))
    return out


def _parse_lint(node: Node | None, check: Checker) -> dict[str, Location]:
    if node is None or not check.mapping(node, "lint", ("ignore",)):
        return {}
    ignore = node.get("ignore")
    found: dict[str, Location] = {}
    for code, loc in _string_list(ignore, "lint.ignore", check) if ignore is not None else ():
        if code not in LINT_IGNORABLE:
            check.error(
                "unknown-value",
                loc,
                f"lint.ignore: '{code}' cannot be ignored; expected one of: {', '.join(LINT_IGNORABLE)}",
            )
        found.setdefault(code, loc)
    return found


def _parse_budgets(node: Node | None, check: Checker) -> Budgets:
    if node is None or not check.mapping(node, "budgets", ("glance", "notifications")):
        return Budgets()
    single = task = None
    glance_ref = rate_ref = ""
    rate_max: int | None = None
    window = 60.0
    if (glance := node.get("glance")) is not None and check.mapping(
        glance, "budgets.glance", ("single_ms", "task_ms", "ref")
    ):
        if (n := glance.get("single_ms")) is not None:
            single = (check.number(n, "budgets.glance.single_ms", minimum=1) or 0) / 1000 or None
        if (n := glance.get("task_ms")) is not None:
            task = (check.number(n, "budgets.glance.task_ms", minimum=1) or 0) / 1000 or None
        if (n := glance.get("ref")) is not None:
            glance_ref = check.string(n, "budgets.glance.ref") or ""
    if (rate := node.get("notifications")) is not None and check.mapping(
        rate, "budgets.notifications", ("max", "window_s", "ref"), ("max",)
    ):
        if (n := rate.get("max")) is not None:
            number = check.number(n, "budgets.notifications.max", minimum=1)
            rate_max = int(number) if number is not None else None
        if (n := rate.get("window_s")) is not None:
            window = check.number(n, "budgets.notifications.window_s", minimum=0.001) or window
        if (n := rate.get("ref")) is not None:
            rate_ref = check.string(n, "budgets.notifications.ref") or ""
    return Budgets(single, task, glance_ref, rate_max, window, rate_ref)


def _parse_default(node: Node | None, check: Checker) -> tuple[Outcome | None, str]:
    if node is None:
        return None, ""
    if node.is_map:
        if not check.mapping(node, "default", ("outcome", "reason"), ("outcome",)):
            return None, ""
        outcome_node = node.get("outcome")
        outcome = check.choice(outcome_node, "default.outcome", OUTCOMES) if outcome_node else None
        reason_node = node.get("reason")
        reason = (check.string(reason_node, "default.reason") if reason_node else None) or ""
        return (Outcome(outcome) if outcome else None), reason
    outcome = check.choice(node, "default", OUTCOMES)
    return (Outcome(outcome) if outcome else None), ""


def _hysteresis(
    node: Node, what: str, check: Checker, on_key: str, off_key: str, rising: bool, *, keys_checked: bool = False
) -> Hysteresis | None:
    if not keys_checked and not check.mapping(node, what, (on_key, off_key, "ref"), (on_key, off_key)):
        return None
    for key in (on_key, off_key):
        if key not in node.value:
            if keys_checked:
                check.error("missing-key", node.loc, f"{what} lacks the required key '{key}'")
            return None
    on = check.number(node.value[on_key], f"{what}.{on_key}")
    off = check.number(node.value[off_key], f"{what}.{off_key}")
    if on is None or off is None:
        return None
    # A rising threshold turns on above `on` and off below `off`, so off must lie below on;
    # a falling one (standstill: on below, off above) the other way round.
    if (rising and off >= on) or (not rising and off <= on):
        relation = "below" if rising else "above"
        check.error(
            "inverted-hysteresis",
            node.loc,
            f"{what}: {off_key} ({off:g}) must be {relation} {on_key} ({on:g}), or the state would flap",
        )
        return None
    return Hysteresis(on=on, off=off, loc=node.loc)


def _parse_state(node: Node | None, check: Checker) -> StateSection:
    if node is None or not check.mapping(node, "state", STATE_KEYS):
        return StateSection()
    standstill = None
    if (ss := node.get("standstill")) is not None:
        standstill = _hysteresis(ss, "state.standstill", check, "on_below", "off_above", rising=False)
        if standstill is not None and standstill.on < 0:
            check.error("out-of-range", ss.loc, "state.standstill.on_below must be >= 0 km/h")
    triggers: tuple[WorkloadTrigger, ...] = ()
    hold_s = 0.0
    if (wl := node.get("workload")) is not None and check.mapping(wl, "state.workload", ("hold_ms", "high_when")):
        if (hold := wl.get("hold_ms")) is not None:
            hold_s = (check.number(hold, "state.workload.hold_ms", minimum=0) or 0.0) / 1000.0
        if (hw := wl.get("high_when")) is not None:
            triggers = _parse_triggers(hw, check)
    bands: tuple[SpeedBand, ...] = ()
    band_hyst = 0.0
    if (sb := node.get("speed_bands")) is not None and check.mapping(
        sb, "state.speed_bands", ("hysteresis", "bands"), ("bands",)
    ):
        if (hy := sb.get("hysteresis")) is not None:
            band_hyst = check.number(hy, "state.speed_bands.hysteresis", minimum=0) or 0.0
        bands = _parse_bands(sb.value["bands"], check, band_hyst) if "bands" in sb.value else ()
    dwell_s = None
    if (dw := node.get("dwell_ms")) is not None:
        ms = check.number(dw, "state.dwell_ms", minimum=0)
        if ms is not None and ms > 60_000:
            check.error("out-of-range", dw.loc, f"state.dwell_ms must be at most 60000 (a minute), got {ms:g}")
            ms = None
        dwell_s = None if ms is None else ms / 1000.0
    return StateSection(standstill, triggers, hold_s, bands, band_hyst, dwell_s)


def _parse_triggers(node: Node, check: Checker) -> tuple[WorkloadTrigger, ...]:
    if not node.is_seq:
        check.error("expected-type", node.loc, "state.workload.high_when must be a list of triggers")
        return ()
    triggers = []
    for i, item in enumerate(node.value):
        what = f"state.workload.high_when[{i}]"
        if not check.mapping(item, what, ("signal", "abs", "on_above", "off_below", "in", "ref"), ("signal",)):
            continue
        signal = (
            check.choice(item.value["signal"], f"{what}.signal", tuple(CANONICAL_SIGNALS))
            if "signal" in item.value
            else None
        )
        if signal is None:
            continue
        spec = CANONICAL_SIGNALS[signal]
        ref = (check.string(item.value["ref"], f"{what}.ref") or "") if "ref" in item.value else ""
        if spec.kind == "number":
            if "in" in item.value:
                check.error(
                    "bad-operator", item.key_loc("in"), f"{what}: '{signal}' is a number; use on_above/off_below"
                )
                continue
            threshold = _hysteresis(item, what, check, "on_above", "off_below", rising=True, keys_checked=True)
            use_abs = bool(check.boolean(item.value["abs"], f"{what}.abs")) if "abs" in item.value else False
            if threshold is not None:
                triggers.append(WorkloadTrigger(signal, item.loc, threshold=threshold, use_abs=use_abs, ref=ref))
        else:
            if "in" not in item.value:
                check.error("missing-key", item.loc, f"{what}: '{signal}' is not a number; give 'in: [values]'")
                continue
            for key in ("on_above", "off_below", "abs"):
                if key in item.value:
                    check.error("bad-operator", item.key_loc(key), f"{what}: '{key}' applies only to numeric signals")
            values = _values_list(item.value["in"], f"{what}.in", check, _bool_or_enum(spec.kind, spec.values))
            if values:
                triggers.append(WorkloadTrigger(signal, item.loc, values=values, ref=ref))
    return tuple(triggers)


def _bool_or_enum(kind: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    return (False, True) if kind == "bool" else values


def _parse_bands(node: Node, check: Checker, hysteresis: float) -> tuple[SpeedBand, ...]:
    if not node.is_seq or not node.value:
        check.error("expected-type", node.loc, "state.speed_bands.bands must be a non-empty list")
        return ()
    bands: list[SpeedBand] = []
    previous = 0.0
    for i, item in enumerate(node.value):
        what = f"state.speed_bands.bands[{i}]"
        last = i == len(node.value) - 1
        if not check.mapping(item, what, ("name", "below"), ("name",)):
            continue
        name = check.string(item.value["name"], f"{what}.name") if "name" in item.value else None
        below = None
        if "below" in item.value:
            below = check.number(item.value["below"], f"{what}.below")
            if below is not None and below <= previous:
                check.error(
                    "bad-bands",
                    item.key_loc("below"),
                    f"{what}.below ({below:g}) must be above the previous edge ({previous:g})",
                )
            elif below is not None and below - previous <= hysteresis:
                check.error(
                    "narrow-band",
                    item.key_loc("below"),
                    f"{what} is {below - previous:g} km/h wide, not wider than the hysteresis ({hysteresis:g} km/h)",
                )
            if below is not None:
                previous = below
        elif not last:
            check.error("missing-key", item.loc, f"{what} lacks 'below' (only the last band is open-ended)")
        if last and below is not None:
            check.error("bad-bands", item.key_loc("below"), f"{what}: the last band must be open-ended (no 'below')")
        if name is not None:
            if any(b.name == name for b in bands):
                check.error("duplicate-id", item.loc, f"{what}: duplicate band name '{name}'")
            bands.append(SpeedBand(name, below, item.loc))
    return tuple(bands)


def _parse_rules(node: Node | None, check: Checker, fields: dict[str, FieldSpec]) -> tuple[Rule, ...]:
    if node is None:
        return ()
    if not node.is_seq:
        check.error("expected-type", node.loc, "rules must be a list of rules")
        return ()
    rules: list[Rule] = []
    seen: dict[str, Location] = {}
    for i, item in enumerate(node.value):
        rule = _parse_rule(item, f"rules[{i}]", check, fields)
        if rule is None:
            continue
        if rule.id in seen:
            check.error("duplicate-id", rule.loc, f"duplicate rule id '{rule.id}' (first at line {seen[rule.id].line})")
            continue
        seen[rule.id] = rule.loc
        rules.append(rule)
    for rule in rules:
        for other, loc in rule.overrides.items():
            if other == rule.id:
                check.error("unknown-rule", loc, f"rule '{rule.id}' cannot override itself")
            elif other not in seen:
                check.error(
                    "unknown-rule", loc, f"rule '{rule.id}' overrides '{other}', which is not a rule of this policy"
                )
    return tuple(rules)


def _parse_rule(node: Node, what: str, check: Checker, fields: dict[str, FieldSpec]) -> Rule | None:
    if not check.mapping(node, what, RULE_KEYS, ("id", "outcome", "ref")):
        return None
    v = node.value
    rule_id = check.string(v["id"], f"{what}.id") if "id" in v else None
    if rule_id is not None and not RULE_ID.match(rule_id):
        check.error("bad-id", v["id"].loc, f"rule id '{rule_id}' must be lowercase letters, digits, '-', '_' or '.'")
        rule_id = None
    if rule_id is not None and rule_id in RESERVED_RULE_IDS:
        check.error(
            "reserved-id",
            v["id"].loc,
            f"rule id '{rule_id}' is reserved: DriveGate itself puts it in decisions "
            f"({', '.join(sorted(RESERVED_RULE_IDS))}); choose another id",
        )
        rule_id = None
    if rule_id is not None:
        what = f"rule '{rule_id}'"
    ref = (check.string(v["ref"], f"{what}.ref") if "ref" in v else None) or ""
    outcome_text = check.choice(v["outcome"], f"{what}.outcome", OUTCOMES) if "outcome" in v else None
    when = _parse_condition(v["when"], f"{what}.when", check, fields) if "when" in v else None
    constraints: dict[str, Any] = {}
    if "constraints" in v and outcome_text is not None:
        constraints = _parse_constraints(v["constraints"], what, outcome_text, check)
    elif outcome_text == "degrade":
        check.error("missing-key", node.loc, f"{what}: a degrade rule needs 'constraints' saying how to degrade")
    exception = bool(check.boolean(v["exception"], f"{what}.exception")) if "exception" in v else False
    reason = (check.string(v["reason"], f"{what}.reason") if "reason" in v else None) or ""
    description = (check.string(v["description"], f"{what}.description") if "description" in v else None) or ""
    overrides = dict(_string_list(v["overrides"], f"{what}.overrides", check)) if "overrides" in v else {}
    if rule_id is None or outcome_text is None or ("when" in v and when is None):
        return None
    return Rule(
        rule_id, ref, Outcome(outcome_text), when, constraints, exception, reason, description, node.loc, overrides
    )


def _parse_constraints(node: Node, what: str, outcome: str, check: Checker) -> dict[str, Any]:
    allowed = CONSTRAINT_KEYS[outcome]
    if not allowed:
        check.error(
            "bad-constraint",
            node.loc,
            f"{what}: an {outcome} rule takes no constraints"
            if outcome == "allow"
            else f"{what}: a {outcome} rule takes no constraints",
        )
        return {}
    if not check.mapping(node, f"{what}.constraints", allowed):
        return {}
    out: dict[str, Any] = {}
    for key, item in node.items():
        where = f"{what}.constraints.{key}"
        if key == "modality":
            out[key] = check.choice(item, where, DEGRADE_MODALITIES)
        elif key == "input":
            out[key] = check.choice(item, where, INPUT_MODES)
        elif key == "until":
            out[key] = check.string(item, where)
        elif key in ("max_text_length", "max_list_items", "retry_after_ms"):
            number = check.number(item, where, minimum=0)
            if number is not None and number != int(number):
                check.error("expected-type", item.loc, f"{where} must be a whole number, got {number:g}")
            out[key] = int(number) if number is not None else None
    if outcome == "degrade" and not out:
        check.error("bad-constraint", node.loc, f"{what}: a degrade rule needs at least one constraint")
    return {k: val for k, val in out.items() if val is not None}


def _parse_condition(node: Node, what: str, check: Checker, fields: dict[str, FieldSpec]) -> Condition | None:
    """A mapping of field tests and combinators (all of them must hold)."""
    if not node.is_map or not node.value:
        check.error("expected-type", node.loc, f"{what} must be a non-empty mapping of conditions")
        return None
    items: list[Condition] = []
    ok = True
    for key, child in node.items():
        loc = node.key_loc(key)
        cond: Condition | None
        if key in ("all", "any"):
            cond = _parse_list(child, f"{what}.{key}", key, loc, check, fields)
        elif key == "not":
            inner = _parse_condition(child, f"{what}.not", check, fields)
            cond = NotOf(inner, loc) if inner is not None else None
        elif key in fields:
            cond = _parse_test(fields[key], child, f"{what}.{key}", loc, check)
        else:
            check.error(
                "unknown-field",
                loc,
                f"unknown field '{key}' in {what}; expected a state or request field "
                f"({', '.join(fields)}) or one of: {', '.join(COMBINATORS)}",
            )
            cond = None
        if cond is None:
            ok = False
        else:
            items.append(cond)
    if not ok:
        return None
    return items[0] if len(items) == 1 else AllOf(tuple(items), node.loc)


def _parse_list(
    node: Node, what: str, kind: str, loc: Location, check: Checker, fields: dict[str, FieldSpec]
) -> Condition | None:
    if not node.is_seq or not node.value:
        check.error("expected-type", node.loc, f"{what} must be a non-empty list of conditions")
        return None
    parsed = [_parse_condition(item, f"{what}[{i}]", check, fields) for i, item in enumerate(node.value)]
    if any(p is None for p in parsed):
        return None
    items = tuple(p for p in parsed if p is not None)
    return AllOf(items, loc) if kind == "all" else AnyOf(items, loc)


def _parse_test(spec: FieldSpec, node: Node, what: str, loc: Location, check: Checker) -> Condition | None:
    if node.is_seq:
        return _make_test(spec, "in", node, what, loc, check)
    if not node.is_map:
        return _make_test(spec, "eq", node, what, loc, check)
    if not node.value:
        check.error("expected-type", node.loc, f"{what} must name at least one operator: {', '.join(spec.operators)}")
        return None
    tests = [_make_test(spec, op, arg, f"{what}.{op}", node.key_loc(op), check) for op, arg in node.items()]
    if any(t is None for t in tests):
        return None
    ready = tuple(t for t in tests if t is not None)
    return ready[0] if len(ready) == 1 else AllOf(ready, loc)


def _make_test(spec: FieldSpec, op: str, node: Node, what: str, loc: Location, check: Checker) -> Test | None:
    if op not in spec.operators:
        check.error("bad-operator", loc, f"{what}: '{spec.name}' takes the operators {', '.join(spec.operators)}")
        return None
    if spec.kind == "number":
        if op == "between":
            if not node.is_seq or len(node.value) != 2:
                check.error("expected-type", node.loc, f"{what} must be [low, high] (low <= value < high)")
                return None
            low, high = (check.number(n, what) for n in node.value)
            if low is None or high is None:
                return None
            if low >= high:
                check.error("empty-range", node.loc, f"{what}: [{low:g}, {high:g}) is empty; low must be below high")
                return None
            return Test(spec.name, op, (low, high), loc)
        number = check.number(node, what)
        return None if number is None else Test(spec.name, op, number, loc)
    if op in ("in", "not_in"):
        values = _values_list(node, what, check, spec.values, spec.kind == "string")
        return Test(spec.name, op, frozenset(values), loc) if values else None
    value = _value(node, what, check, spec.values, spec.kind == "string")
    return None if value is _BAD else Test(spec.name, op, value, loc)


_BAD = object()


def _value(node: Node, what: str, check: Checker, allowed: tuple[Any, ...], free: bool = False) -> Any:
    value = node.value
    if free:
        return value if isinstance(value, str) and value else (check.string(node, what) or _BAD)
    if (
        isinstance(value, dict | list)
        or value not in allowed
        or (isinstance(value, bool) != any(isinstance(a, bool) for a in allowed))
    ):
        shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        check.error(
            "unknown-value", node.loc, f"{what}: {value!r} is not a value of this field; expected one of: {shown}"
        )
        return _BAD
    return value


def _values_list(
    node: Node, what: str, check: Checker, allowed: tuple[Any, ...], free: bool = False
) -> tuple[Any, ...]:
    if not node.is_seq or not node.value:
        check.error("expected-type", node.loc, f"{what} must be a non-empty list of values")
        return ()
    values = [_value(item, what, check, allowed, free) for item in node.value]
    if any(v is _BAD for v in values):
        return ()
    return tuple(values)
