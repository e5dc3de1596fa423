"""``drivegate schema policy|vehicle``: print a JSON Schema for YAML editors."""

from __future__ import annotations

import argparse
from typing import Any

from safety.policy.schema import SCHEMAS, schema_text


def register(sub: Any) -> None:
    """Add ``drivegate schema``."""
    parser = sub.add_parser(
        "schema",
        help="print the JSON Schema of policy files or vehicle profiles (for YAML editors)",
        description="Print a JSON Schema (draft 2020-12) to stdout.",
    )
    parser.add_argument("kind", choices=SCHEMAS, help="policy: policies/*.yaml; vehicle: dbc/*.yaml profiles")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema."""
    print(schema_text(args.kind), end="")
    return 0
