"""``drivegate test POLICY [TEST...]``: run a policy's test files and measure its rule coverage.

A built-in policy name runs its own suite when no TEST is given (``drivegate test default``);
a TEST that is a built-in policy name is that policy's suite.  Exit 0 every check passed (and
the coverage is met); 1 a check failed or the coverage is under ``--coverage``; 2 unusable
input, with every problem printed as ``file:line:col: code: message``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from safety import builtin
from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_time_limit,
    builtin_suite,
    policy_arg,
    suite_arg,
    with_time_limit,
)
from safety.policy import load_policy
from safety.workflow.policytest import CheckResult, Report, load_test_files, run_tests


def register(sub: Any) -> None:
    """Add ``drivegate test``."""
    parser = add_command(
        sub,
        "test",
        help="run a policy's test files (cases and scenarios) and measure rule coverage",
        description="Run policy test files against POLICY: pass/fail per check with a diff on failure, "
        "and the rules no check exercised.  A built-in policy given without TEST runs the suite shipped "
        "with it.",
        examples=(
            "drivegate test default",
            "drivegate test speed-bands --coverage 100",
            "drivegate test my-policy.yaml tests/my-policy.yaml --format json",
            "drivegate test my-policy.yaml default    # the built-in default suite, against my policy",
        ),
    )
    parser.add_argument(
        "policy", metavar="POLICY", help=f"policy file (YAML): {BUILTIN_HINT} ({', '.join(builtin.policy_names())})"
    )
    parser.add_argument(
        "tests",
        nargs="*",
        type=suite_arg,
        metavar="TEST",
        help="test files (YAML), e.g. policies/tests/default.yaml, or a built-in policy name for its suite "
        "(default: the suite of a built-in POLICY)",
    )
    parser.add_argument(
        "--coverage",
        type=float,
        metavar="PERCENT",
        help="fail (exit 1) when fewer than PERCENT%% of the rules are exercised",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_time_limit(parser)
    parser.set_defaults(run=with_time_limit(run, "test"))


def run(args: argparse.Namespace) -> int:
    """Run the tests; the exit code."""
    if args.coverage is not None and not 0 <= args.coverage <= 100:
        print("drivegate test: --coverage must be between 0 and 100", file=sys.stderr)
        return EXIT_UNUSABLE
    tests: list[str] = list(args.tests)
    policy = load_policy(policy_arg(args.policy))
    if not tests:
        # The suites the policy names itself (tests:); else, for a bare built-in name, its suite.
        suite = builtin_suite(args.policy)
        if policy.doc.suites:
            tests = list(policy.doc.suites)
        elif suite is not None:
            tests = [str(suite)]
        else:
            print(
                f"drivegate test: give the TEST files for {args.policy} (or name them in the policy's tests:; a "
                f"built-in policy, {', '.join(builtin.policy_names())}, brings its own suite)",
                file=sys.stderr,
            )
            return EXIT_UNUSABLE
    files = load_test_files(tests, policy)
    report = run_tests(policy, files)
    met = args.coverage is None or report.coverage.percent >= args.coverage
    if args.format == "json":
        print(json.dumps(report_json(report, args.coverage), indent=2, default=str))
    else:
        print(report_text(report, args.coverage))
    return EXIT_OK if not report.failed and met else EXIT_FINDINGS


def report_text(report: Report, threshold: float | None = None) -> str:
    """The report as text: each check, the totals, the rule coverage and the rules not exercised."""
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
    """The report as a JSON-ready mapping (``drivegate test --format json``)."""
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
