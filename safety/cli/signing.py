"""``drivegate keygen``, ``drivegate sign`` and ``drivegate verify``: releasing policies signed.

``sign`` is a release gate, not only a signature: the policy must load, have no lint errors
and pass the test suites given with it, or nothing is signed.  Exit codes as everywhere:
0 done; 1 the command ran and found a problem (a failed check, a bad signature);
2 unusable input (an unreadable key or policy).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safety.errors import DriveGateError, LoadError, SignatureError
from safety.policy import CompiledPolicy, load_policy
from safety.policy.signing import generate_key, key_id, load_private_key, load_public_keys, sign_policy, verify_policy


def register(sub: Any) -> None:
    """Add ``keygen``, ``sign`` and ``verify``."""
    kp = sub.add_parser(
        "keygen",
        help="make an Ed25519 key pair for signing policies",
        description="Write KEY (the private key, mode 0600) and KEY.pub (the public key, for the cars).",
    )
    kp.add_argument("key", type=Path, help="where to write the private key (KEY.pub is written beside it)")
    kp.set_defaults(run=run_keygen)
    sp = sub.add_parser(
        "sign",
        help="check a policy (loads, no lint errors, its tests pass) and sign it with its tests",
        description="Write POLICY.sig: an Ed25519 signature over POLICY and TESTS, after checking that POLICY "
        "loads, has no lint errors and passes TESTS.",
    )
    sp.add_argument("policy", type=Path, help="policy file (YAML)")
    sp.add_argument("--key", type=Path, required=True, help="private key (from drivegate keygen)")
    sp.add_argument("--tests", type=Path, nargs="*", default=[], metavar="TEST", help="test suites, signed too")
    sp.add_argument("--coverage", type=float, metavar="PERCENT", help="also require this rule coverage")
    sp.set_defaults(run=run_sign)
    vp = sub.add_parser(
        "verify",
        help="check a policy's signature against trusted public keys",
        description="Check POLICY.sig: signed by a trusted key, and POLICY and its signed tests unchanged.",
    )
    vp.add_argument("policy", type=Path, help="policy file (YAML)")
    vp.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        required=True,
        metavar="PUB",
        help="trusted public key (repeatable)",
    )
    vp.set_defaults(run=run_verify)


def run_keygen(args: argparse.Namespace) -> int:
    try:
        private, public = generate_key(args.key)
    except FileExistsError:
        print(f"drivegate keygen: {args.key} exists; not overwriting a key", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"drivegate keygen: cannot write {args.key}: {exc}", file=sys.stderr)
        return 2
    (kid,) = load_public_keys([public])
    print(f"private key {private} (keep it off the car), public key {public}, key id {kid}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from safety.workflow.lint import policy_check
    from safety.workflow.policytest import suite_check

    try:
        private = load_private_key(args.key)
        policy = load_policy(args.policy)
    except LoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2
    except DriveGateError as exc:
        print(f"drivegate sign: {exc}", file=sys.stderr)
        return 2
    checks: list[Callable[[CompiledPolicy], Sequence[str]]] = [policy_check]
    if args.tests:
        checks.append(suite_check(args.tests, args.coverage))
    problems = [problem for check in checks for problem in check(policy)]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"drivegate sign: {args.policy} not signed: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    try:
        out = sign_policy(args.policy, private, args.tests)
    except SignatureError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"signed {args.policy} and {len(args.tests)} test suite(s) with key {key_id(private.public_key())}: {out}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    try:
        trusted = load_public_keys(args.trusted_key)
    except SignatureError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        verified = verify_policy(args.policy, trusted)
    except SignatureError as exc:
        print(exc)
        return 1
    print(f"{args.policy}: signed by key {verified.key_id}; files: {', '.join(verified.files)}")
    return 0
