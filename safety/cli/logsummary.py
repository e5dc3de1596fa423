"""``drivegate log-summary LOG``: what a decision log says, in a few lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from safety.audit.decisionlog import read_lines, summarize


def register(sub: Any) -> None:
    parser = sub.add_parser("log-summary", help="summarise a decision log (JSONL)")
    parser.add_argument("log", nargs="+", help="decision log file(s), e.g. decisions.jsonl decisions.jsonl.1")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    lines: list[str] = []
    for name in args.log:
        try:
            lines += read_lines(name)
        except OSError as exc:
            print(f"{name}: cannot read the decision log: {exc}", file=sys.stderr)
            return 2
    summary = summarize(lines)
    print(summary.format())
    return 0 if summary.bad_lines == 0 else 1
