"""``drivegate whatif OLD NEW --vehicle V LOG...``: where two policies decide differently on recorded drives."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    add_command,
    add_vehicle_option,
    policy_arg,
)
from safety.replay.timeline import BUILTIN_PROBES, load_probes
from safety.replay.whatif import format_report, what_if, write_results


def register(sub: Any) -> None:
    """Add ``drivegate whatif``."""
    parser = add_command(
        sub,
        "whatif",
        help="replay recorded drives under two policies: where NEW decides differently from OLD",
        description="Replay each log under OLD and under NEW (each with its own state thresholds) and list, "
        "per probe, the intervals where the two decide differently, with the state at each, and totals: "
        "seconds and minutes per hour of log time where NEW is looser (less restrictive) and where it is "
        "stricter, by probe and outcome pair. Looser is reported first. Exit 1 when NEW is looser anywhere "
        "(a reviewer's gate); lint --compare does the same over the whole state space.",
        examples=(
            "drivegate whatif default speed-bands --vehicle demo-sedan drive.log",
            "drivegate whatif policy.yaml policy-new.yaml --vehicle car.yaml drives/*.log --out whatif/",
        ),
    )
    parser.add_argument("old", type=policy_arg, help=f"the policy in force (YAML): {BUILTIN_HINT}")
    parser.add_argument("new", type=policy_arg, help="the policy proposed (YAML)")
    parser.add_argument("logs", nargs="+", metavar="LOG", help="recorded drives (any format replay reads)")
    add_vehicle_option(parser)
    parser.add_argument("--probes", help="YAML list of requests (each with an id) to decide along the drives")
    parser.add_argument("--out", type=Path, help="write intervals.jsonl and summary.json in this directory")
    parser.add_argument("--examples", type=int, default=10, help="intervals shown per direction (default 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress on a terminal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Compare ``args.old`` and ``args.new`` on ``args.logs``; 1 when NEW is looser anywhere."""
    probes: list[dict[str, Any]] = load_probes(args.probes) if args.probes else [dict(p) for p in BUILTIN_PROBES]
    show = sys.stderr.isatty() and not args.quiet

    def progress(i: int, log: str) -> None:
        if show:
            print(f"\rwhatif: drive {i + 1}/{len(args.logs)}: {log}\033[K", end="", file=sys.stderr, flush=True)

    result = what_if(args.vehicle, args.old, args.new, args.logs, probes, progress=progress)
    if show:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    for drive in result.drives:
        for summary in (drive.old_summary, drive.new_summary):
            if summary is not None and summary.log_errors:
                print(f"{drive.log}: {len(summary.log_errors)} bad line(s), first: {summary.log_errors[0]}", file=sys.stderr)
                break
    print(format_report(result, str(args.old), str(args.new), examples=args.examples))
    if args.out is not None:
        write_results(result, args.out)
    return EXIT_FINDINGS if result.looser else EXIT_OK
