"""``drivegate log-stats LOG --vehicle V``: rates, gaps, lengths and channels of the messages a profile reads."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from safety.cli.common import EXIT_FINDINGS, EXIT_OK, add_command, add_vehicle_option
from safety.errors import LogFormatError
from safety.io.logs import read_log
from safety.replay.logstats import format_stats, log_stats
from safety.vehicle.profile import load_profile


def register(sub: Any) -> None:
    """Add ``drivegate log-stats``."""
    parser = add_command(
        sub,
        "log-stats",
        help="per message a vehicle profile reads: its rate, gaps, lengths and channels in a log",
        description="For each message the profile maps: frames, rate, median period, largest gap (and "
        "when), the 99th percentile gap, payload lengths, channels, the profile's max_age_ms and the "
        "one this traffic suggests.  Exit 1 with a warning when a profile limit is shorter than gaps of "
        "the log's own traffic (the signal would go stale while the car is fine) or a mapped message "
        "never occurs.",
        examples=(
            "drivegate log-stats drive.log --vehicle demo-sedan",
            "drivegate log-stats drive.blf --vehicle car.yaml --format json",
        ),
    )
    parser.add_argument("log", help="the log file (any format drivegate replay reads)")
    add_vehicle_option(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the statistics; 1 when there are warnings."""
    profile = load_profile(args.vehicle)
    log_errors: list[LogFormatError] = []
    stats = log_stats(profile, read_log(args.log, on_error=log_errors.append))
    text, warnings = format_stats(stats)
    if args.format == "json":
        print(json.dumps({"messages": [s.summary() for s in stats], "warnings": warnings}, indent=2))
    else:
        print(text)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in log_errors[:10]:
        print(f"log error: {error}", file=sys.stderr)
    if len(log_errors) > 10:
        print(f"... and {len(log_errors) - 10} more log errors", file=sys.stderr)
    return EXIT_FINDINGS if warnings else EXIT_OK
