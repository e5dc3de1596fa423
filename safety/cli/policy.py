"""``drivegate test`` (policy test files, rule coverage) and ``drivegate explain`` (one decision, whole).

Exit codes, as for every command: 0 all good; 1 the command ran and found problems (a
failed check, coverage under ``--coverage``); 2 unusable input, with every problem printed
as ``file:line:col: code: message``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from safety.errors import DriveGateError, Location, PolicyTestError
from safety.policy import load_policy
from safety.vehicle.profile import load_profile
from safety.workflow.policytest import CheckResult, Report, load_test_files, run_tests
from safety.workflow.simcar import SimCar, SimVehicle, apply_state, case_timeline, json_node, parse_state
from safety.yamlsource import Checker


def register(sub: Any) -> None:
    tp = sub.add_parser(
        "test",
        help="run a policy's test files (cases and scenarios) and measure rule coverage",
        description="Run policy test files against POLICY: pass/fail per check with a diff on failure, "
        "and the rules no check exercised.",
    )
    tp.add_argument("policy", help="policy file (YAML)")
    tp.add_argument("tests", nargs="+", help="test files (YAML), e.g. policies/tests/default.yaml")
    tp.add_argument(
        "--coverage",
        type=float,
        metavar="PERCENT",
        help="fail (exit 1) when fewer than PERCENT%% of the rules are exercised",
    )
    tp.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    tp.set_defaults(run=run_test)
    ep = sub.add_parser(
        "explain",
        help="explain one decision: every rule, the deciding conditions, how outcomes combined",
        description="Explain how POLICY decides REQUEST in a vehicle state given as canonical signal values.",
    )
    ep.add_argument("policy", help="policy file (YAML)")
    ep.add_argument(
        "--state",
        required=True,
        help='JSON object of canonical signal values, e.g. \'{"speed": 45, "gear": "D"}\'; '
        'also "stale", "unknown", "missing": [signals].  Signals left out are never received (unknown).',
    )
    ep.add_argument("--request", required=True, help="JSON object: the request")
    ep.add_argument("--vehicle", help="vehicle profile: its signals and max ages (default: every signal, 300 ms)")
    ep.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    ep.set_defaults(run=run_explain)


# ---------------------------------------------------------------------- test
def run_test(args: argparse.Namespace) -> int:
    if args.coverage is not None and not 0 <= args.coverage <= 100:
        print("drivegate test: --coverage must be between 0 and 100", file=sys.stderr)
        return 2
    policy = load_policy(args.policy)
    files = load_test_files(args.tests, policy)
    report = run_tests(policy, files)
    met = args.coverage is None or report.coverage.percent >= args.coverage
    if args.format == "json":
        print(json.dumps(report_json(report, args.coverage), indent=2, default=str))
    else:
        print(report_text(report, args.coverage))
    return 0 if not report.failed and met else 1


def report_text(report: Report, threshold: float | None = None) -> str:
    lines: list[str] = []
    current = None
    for result in report.results:
        if result.file != current:
            current = result.file
            lines.append(current)
        lines += _result_text(result)
    failed = len(report.failed)
    cases = sum(1 for r in report.results if r.kind == "case")
    scenarios = len({(r.file, r.scenario) for r in report.results if r.kind == "scenario"})
    lines.append(
        f"{len(report.results) - failed} passed, {failed} failed: {len(report.results)} checks "
        f"({cases} cases, {scenarios} scenarios) in {len(report.files)} file(s)"
    )
    cov = report.coverage
    lines.append(f"rule coverage: {len(cov.covered)}/{cov.total} rules ({cov.percent:.1f}%)")
    for rule, loc in cov.missed:
        lines.append(f"  not exercised: {rule}  [{loc}]")
    if threshold is not None and cov.percent < threshold:
        lines.append(f"rule coverage {cov.percent:.1f}% is under the required {threshold:g}%")
    return "\n".join(lines)


def _result_text(r: CheckResult) -> list[str]:
    got = r.got
    decided = f"{got.outcome.value} ({', '.join(got.rules) or 'default'})"
    if r.passed:
        return [f"  PASS  {r.check.label} -> {decided}"]
    exp = r.check.expect
    lines = [f"  FAIL  {r.check.label}  [{r.check.loc}]", "        expected (-) and got (+):"]
    pairs: list[tuple[str, Any, Any]] = [
        ("outcome", exp.outcome.value, got.outcome.value),
        ("rules", None if exp.rules is None else _ids(exp.rules), _ids(got.rules)),
        ("constraints", None if exp.constraints is None else _mapping(exp.constraints), _mapping(got.constraints)),
    ]
    for name, want, have in pairs:
        if name in r.mismatches:
            lines += [f"        - {name}: {want}", f"        + {name}: {have}"]
        else:
            lines.append(f"          {name}: {have}")
    lines.append(f"          reason: {got.reason}")
    if r.explanation is not None:
        lines.append("        explanation:")
        lines += ["          " + line for line in r.explanation.render().splitlines()]
    return lines


def report_json(report: Report, threshold: float | None = None) -> dict[str, Any]:
    cov = report.coverage
    return {
        "policy": {"name": report.policy.name, "file": report.policy.file, "hash": report.policy.hash},
        "files": list(report.files),
        "results": [_result_json(r) for r in report.results],
        "summary": {
            "checks": len(report.results),
            "passed": len(report.results) - len(report.failed),
            "failed": len(report.failed),
        },
        "coverage": {
            "rules": cov.total,
            "exercised": list(cov.covered),
            "not_exercised": [{"rule": rule, "location": str(loc)} for rule, loc in cov.missed],
            "percent": round(cov.percent, 2),
            "threshold": threshold,
            "met": threshold is None or cov.percent >= threshold,
        },
    }


def _result_json(r: CheckResult) -> dict[str, Any]:
    exp, got = r.check.expect, r.got
    return {
        "file": r.file,
        "kind": r.kind,
        "scenario": r.scenario,
        "name": r.check.label,
        "location": str(r.check.loc),
        "t": r.check.t,
        "passed": r.passed,
        "mismatches": list(r.mismatches),
        "expected": {
            "outcome": exp.outcome.value,
            "rules": None if exp.rules is None else list(exp.rules),
            "constraints": None if exp.constraints is None else dict(exp.constraints),
        },
        "got": {
            "outcome": got.outcome.value,
            "rules": list(got.rules),
            "constraints": dict(got.constraints),
            "reason": got.reason,
        },
        "explanation": r.explanation.to_dict() if r.explanation is not None else None,
    }


def _ids(rules: tuple[str, ...]) -> str:
    return "[" + ", ".join(rules) + "]"


def _mapping(values: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}"


# ---------------------------------------------------------------------- explain
def run_explain(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    vehicle = SimVehicle()
    if args.vehicle:
        vehicle = SimVehicle(load_profile(args.vehicle).max_ages())
    state_json = _json_arg(args.state, "--state")
    request = _json_arg(args.request, "--request")
    check = Checker(_option_error)
    change = parse_state(json_node(state_json, "--state"), "--state", check, vehicle, base=False)
    signals = apply_state({}, change, "--state", check, first=True) if change is not None else {}
    check.errors.raise_if_any()
    stale = frozenset(n for n, s in signals.items() if s.mode == "stale")
    step, t = case_timeline(signals, stale, vehicle)
    car = SimCar(policy, vehicle, (step,), t)
    explanation = car.explain(car.decide(request, t))
    if args.format == "json":
        print(json.dumps(explanation.to_dict(), indent=2, default=str))
    else:
        print(explanation.render())
    return 0


def _json_arg(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyTestError(
            f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", Location(file=option), code="bad-json"
        ) from exc


def _option_error(code: str, loc: Location, message: str) -> DriveGateError:
    return PolicyTestError(message, loc, code=code)
