"""``drivegate protocol``: print the decision service's wire-protocol document.

The document (``docs/protocol.md`` in the source tree) is installed with the package, so a
client author on a head unit has the protocol of the very version that serves them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from safety import builtin
from safety.cli.common import EXIT_OK, EXIT_UNUSABLE, add_command


def register(sub: Any) -> None:
    """Add ``drivegate protocol``."""
    parser = add_command(
        sub,
        "protocol",
        help="print the wire protocol of drivegate serve (Markdown)",
        description=f"Print the protocol document installed at {builtin.protocol_path()}: transport, framing, "
        "every request and response, events, errors, and how a client fails closed.",
        examples=("drivegate protocol | less", "drivegate protocol --path"),
    )
    parser.add_argument("--path", action="store_true", help="print only where the document is installed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the document (or its path)."""
    path = builtin.protocol_path()
    if args.path:
        print(path)
        return EXIT_OK
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:  # a broken install: say so rather than print a traceback
        print(f"drivegate protocol: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    sys.stdout.write(text)
    return EXIT_OK
