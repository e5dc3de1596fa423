"""``drivegate sign POLICY --key KEY [--tests SUITE...]``: release a policy, signed with its tests.

``sign`` is a release gate, not only a signature: the policy must load, have no lint errors
and pass the test suites given with it, or nothing is signed.  Exit 0 signed; 1 the policy
failed a check (nothing signed); 2 unusable input (an unreadable key or policy).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    policy_file_arg,
    suite_file_arg,
)
from safety.errors import DriveGateError, LoadError, SignatureError
from safety.policy import CompiledPolicy, load_policy
from safety.policy.signing import key_id, load_private_key, sign_policy
from safety.workflow.lint import policy_check
from safety.workflow.policytest import suite_check


def register(sub: Any) -> None:
    """Add ``drivegate sign``."""
    parser = add_command(
        sub,
        "sign",
        help="check a policy (loads, no lint errors, its tests pass) and sign it with its tests",
        description="Write POLICY.sig: an Ed25519 signature over POLICY and TESTS, after checking that POLICY "
        "loads, has no lint errors and passes TESTS.  A built-in name signs the installed file (its .sig "
        "is written beside it).",
        examples=(
            "drivegate sign policies/default.yaml --key release.key --tests policies/tests/default.yaml --coverage 100",
            "drivegate sign my-policy.yaml --key release.key --tests tests/my-policy.yaml",
        ),
    )
    parser.add_argument("policy", metavar="POLICY", type=policy_file_arg, help=f"policy file (YAML): {BUILTIN_HINT}")
    parser.add_argument("--key", type=Path, required=True, help="private key (from drivegate keygen)")
    parser.add_argument(
        "--tests",
        type=suite_file_arg,
        nargs="*",
        default=[],
        metavar="TEST",
        help="test suites, signed too (a built-in policy name is its suite)",
    )
    parser.add_argument("--coverage", type=float, metavar="PERCENT", help="also require this rule coverage")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the policy and sign it; the exit code."""
    try:
        private = load_private_key(args.key)
        policy = load_policy(args.policy)
    except LoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_UNUSABLE
    except DriveGateError as exc:
        print(f"drivegate sign: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    checks: list[Callable[[CompiledPolicy], Sequence[str]]] = [policy_check]
    if args.tests:
        checks.append(suite_check(args.tests, args.coverage))
    problems = [problem for check in checks for problem in check(policy)]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"drivegate sign: {args.policy} not signed: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_FINDINGS
    try:
        out = sign_policy(args.policy, private, args.tests)
    except SignatureError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:  # e.g. a built-in policy installed read-only: its .sig cannot go beside it
        print(f"drivegate sign: cannot write the signature of {args.policy}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"signed {args.policy} and {len(args.tests)} test suite(s) with key {key_id(private.public_key())}: {out}")
    return EXIT_OK
