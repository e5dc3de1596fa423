"""``drivegate keygen KEY``: an Ed25519 key pair for signing policies (``drivegate sign``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import EXIT_OK, EXIT_UNUSABLE, add_command
from safety.policy.signing import generate_key, load_public_keys


def register(sub: Any) -> None:
    """Add ``drivegate keygen``."""
    parser = add_command(
        sub,
        "keygen",
        help="make an Ed25519 key pair for signing policies",
        description="Write KEY (the private key, mode 0600) and KEY.pub (the public key, for the cars).  "
        "An existing KEY is never overwritten (exit 2).",
        examples=("drivegate keygen release.key    # then: drivegate sign POLICY --key release.key",),
    )
    parser.add_argument("key", type=Path, help="where to write the private key (KEY.pub is written beside it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the key pair; 2 when KEY exists or cannot be written."""
    try:
        private, public = generate_key(args.key)
    except FileExistsError:
        print(f"drivegate keygen: {args.key} exists; not overwriting a key", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"drivegate keygen: cannot write {args.key}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    (kid,) = load_public_keys([public])
    print(f"private key {private} (keep it off the car), public key {public}, key id {kid}")
    return EXIT_OK
