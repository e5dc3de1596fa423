"""``drivegate log-summary LOG...``: what a decision log says, in a few lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from safety.audit.decisionlog import read_lines, summarize
from safety.cli.common import EXIT_FINDINGS, EXIT_OK, EXIT_UNUSABLE, add_command


def register(sub: Any) -> None:
    """Add ``drivegate log-summary``."""
    parser = add_command(
        sub,
        "log-summary",
        help="summarise a decision log (JSONL)",
        description="Count the records of a decision log (drivegate serve --decision-log) by outcome, rule "
        "and policy, with the time span and the evaluation time.  Exit 1 when some lines are not decision records.",
        examples=(
            "drivegate log-summary decisions.jsonl",
            "drivegate log-summary decisions.jsonl.1 decisions.jsonl",
        ),
    )
    parser.add_argument("log", nargs="+", help="decision log file(s), e.g. decisions.jsonl decisions.jsonl.1")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Summarise the logs; 1 when some lines could not be read as records, 2 when a file cannot be read."""
    lines: list[str] = []
    for name in args.log:
        try:
            lines += read_lines(name)
        except OSError as exc:
            print(f"{name}: cannot read the decision log: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    summary = summarize(lines)
    print(summary.format())
    return EXIT_OK if summary.bad_lines == 0 else EXIT_FINDINGS
