"""``drivegate schema policy|vehicle``: print a JSON Schema for YAML editors."""

from __future__ import annotations

import argparse
from typing import Any

from safety.cli.common import EXIT_OK, add_command
from safety.policy.schema import SCHEMAS, schema_text


def register(sub: Any) -> None:
    """Add ``drivegate schema``."""
    parser = add_command(
        sub,
        "schema",
        help="print the JSON Schema of policy files or vehicle profiles (for YAML editors)",
        description="Print a JSON Schema (draft 2020-12) to stdout.  Point a YAML editor at it (e.g. the "
        "yaml-language-server `# yaml-language-server: $schema=policy.schema.json` comment) to get completion "
        "and errors while writing.",
        examples=(
            "drivegate schema policy > policy.schema.json",
            "drivegate schema vehicle > vehicle.schema.json",
        ),
    )
    parser.add_argument("kind", choices=SCHEMAS, help="policy: policies/*.yaml; vehicle: dbc/*.yaml profiles")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema."""
    print(schema_text(args.kind), end="")
    return EXIT_OK
