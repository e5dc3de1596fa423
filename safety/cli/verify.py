"""``drivegate verify POLICY --trusted-key PUB``: is a policy signed, by whom, and unchanged since?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import BUILTIN_HINT, EXIT_FINDINGS, EXIT_OK, EXIT_UNUSABLE, add_command, policy_file_arg
from safety.errors import SignatureError
from safety.policy.signing import load_public_keys, verify_policy


def register(sub: Any) -> None:
    """Add ``drivegate verify``."""
    parser = add_command(
        sub,
        "verify",
        help="check a policy's signature against trusted public keys",
        description="Check POLICY.sig: signed by a trusted key, and POLICY and its signed tests unchanged.  "
        "Exit 1 for a missing or bad signature, 2 for an unreadable key.",
        examples=(
            "drivegate verify policies/default.yaml --trusted-key release.key.pub",
            "drivegate verify my-policy.yaml --trusted-key old.pub --trusted-key new.pub",
        ),
    )
    parser.add_argument("policy", metavar="POLICY", type=policy_file_arg, help=f"policy file (YAML): {BUILTIN_HINT}")
    parser.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        required=True,
        metavar="PUB",
        help="trusted public key (repeatable)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify the signature; the exit code."""
    try:
        trusted = load_public_keys(args.trusted_key)
    except SignatureError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        verified = verify_policy(args.policy, trusted)
    except SignatureError as exc:
        print(exc)
        return EXIT_FINDINGS
    print(f"{args.policy}: signed by key {verified.key_id}; files: {', '.join(verified.files)}")
    return EXIT_OK
