"""``drivegate lint``: the command line of :mod:`safety.workflow.lint`.

Exit 0 clean; 1 findings (every analysis finding of a policy that loads), or compared policies
that differ; 2 unusable input (a policy, vehicle profile or compared policy that does not load:
unreadable, not YAML, empty, an unknown key or value; its problems are still listed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_time_limit,
    policy_arg,
    vehicle_arg,
    with_time_limit,
)
from safety.cli.progress import Progress
from safety.errors import DriveGateError, LoadError
from safety.policy import load_policy
from safety.policy.model import LINT_IGNORABLE
from safety.vehicle.profile import VehicleProfile, load_profile
from safety.workflow.analysis import Comparison, compare
from safety.workflow.findings import LintFinding
from safety.workflow.lint import FileReport, lint_file, load_findings


def register(sub: Any) -> None:
    """Add ``drivegate lint``."""
    parser = add_command(
        sub,
        "lint",
        help="check policies: loader problems, unreachable/shadowed/redundant rules, conflicts, gaps",
        description="Check policy files and analyse them over the whole state × request space. "
        "Exit 0 clean, 1 findings (or compared policies differ), 2 unusable input (a policy or vehicle "
        "profile that does not load: unreadable, not YAML, an unknown key or value).",
        examples=(
            "drivegate lint default speed-bands",
            "drivegate lint my-policy.yaml --vehicle demo-sedan",
            "drivegate lint --compare default my-policy.yaml",
            "drivegate lint default --no-policy-ignore --format json",
        ),
    )
    parser.add_argument(
        "policies", nargs="*", metavar="POLICY", type=policy_arg, help=f"policy files (YAML): {BUILTIN_HINT}"
    )
    parser.add_argument(
        "--vehicle",
        type=vehicle_arg,
        help=f"vehicle profile ({BUILTIN_HINT}): warn about signals the policy uses that it does not provide",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=policy_arg,
        metavar=("OLD", "NEW"),
        help="is NEW more or less permissive than OLD? (each a built-in name or a path)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument(
        "--max-examples", type=int, default=5, metavar="N", help="gap groups and compare examples shown (default: 5)"
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODE",
        choices=LINT_IGNORABLE,
        help="do not report warnings with this code (repeatable); added to each policy's own lint.ignore",
    )
    parser.add_argument(
        "--no-policy-ignore",
        action="store_true",
        help="report the warnings a policy's lint.ignore declares expected (a reviewer's full view)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on the terminal")
    add_time_limit(parser)
    parser.set_defaults(run=with_time_limit(run, "lint"))


def run(args: argparse.Namespace) -> int:
    """Run ``drivegate lint``; return the exit code."""
    if not args.policies and not args.compare:
        print("drivegate lint: give at least one POLICY, or --compare OLD NEW", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.max_examples < 0:
        print("drivegate lint: --max-examples must be >= 0", file=sys.stderr)
        return EXIT_UNUSABLE
    findings: list[LintFinding] = []
    unusable = False
    vehicle = None
    if args.vehicle:
        try:
            vehicle = load_profile(args.vehicle)
        except LoadError as exc:
            findings += load_findings(exc)
            unusable = True
    reports = (
        []
        if unusable
        else [
            _lint_with_progress(p, vehicle, args)
            for p in args.policies
        ]
    )
    for report in reports:
        findings += report.findings
        unusable = unusable or report.unusable
    comparison: Comparison | None = None
    if args.compare and not unusable:
        try:
            old, new = (load_policy(p) for p in args.compare)
            comparison = compare(old, new, max_examples=args.max_examples)
        except LoadError as exc:
            findings += load_findings(exc)
            unusable = True
        except DriveGateError as exc:
            findings.append(LintFinding(exc.code, "error", exc.location, exc.message))
            unusable = True
    findings.sort(key=lambda f: f.location)  # stable: a place's findings keep their order
    differs = comparison is not None and comparison.result != "equivalent"
    code = EXIT_UNUSABLE if unusable else EXIT_FINDINGS if findings or differs else EXIT_OK
    if args.format == "json":
        print(json.dumps(_json(reports, findings, comparison, code), indent=2, default=str))
    else:
        for finding in findings:
            print(finding)
        for line in comparison.lines() if comparison else ():
            print(line)
    for report in reports:
        if report.analysis is not None:
            for note in report.analysis.notes:
                print(f"drivegate lint: {report.file}: {note}", file=sys.stderr)
    errors = sum(f.severity == "error" for f in findings)
    ignored = sum(len(r.ignored) for r in reports)
    print(
        f"drivegate lint: {len(reports)} policy file(s): {errors} error(s), {len(findings) - errors} warning(s)"
        + (f", {ignored} ignored (lint.ignore / --ignore)" if ignored else "")
        + (f"; compare: {comparison.result}" if comparison else ""),
        file=sys.stderr,
    )
    return code


def _lint_with_progress(path: str, vehicle: VehicleProfile | None, args: argparse.Namespace) -> FileReport:
    """``lint_file`` with its progress on the terminal (a large policy takes a while)."""
    bar = Progress(f"lint {path}", unit="", quiet=args.quiet)

    def shown(stage: str, done: int, total: int) -> None:
        bar.total, bar.unit = total or None, stage
        bar.update(done)

    try:
        return lint_file(
            path,
            vehicle,
            max_examples=args.max_examples,
            ignore=args.ignore,
            use_policy_ignore=not args.no_policy_ignore,
            progress=shown if bar.enabled else None,
        )
    finally:
        bar.close()


def _json(
    reports: list[FileReport], findings: list[LintFinding], comparison: Comparison | None, code: int
) -> dict[str, Any]:
    return {
        "exit": code,
        "findings": [f.to_dict() for f in findings],
        "files": [
            {
                "file": r.file,
                "loaded": r.analysis is not None,
                "mode": r.analysis.mode if r.analysis else None,
                "cells": r.analysis.cells if r.analysis else None,
                "regions": r.analysis.regions if r.analysis else None,
                "notes": r.analysis.notes if r.analysis else [],
                "seconds": round(r.seconds, 4),
                "ignored": [f.to_dict() for f in r.ignored],
            }
            for r in reports
        ],
        "compare": comparison.to_dict() if comparison else None,
    }
