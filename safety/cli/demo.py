"""``drivegate demo``: the scripted drive on a virtual CAN bus, the decisions shown as they change."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safety import builtin
from safety.cli.common import BUILTIN_HINT, EXIT_UNUSABLE, add_command, policy_arg, vehicle_arg
from safety.demo.demo import DEMO_SPEED, run_demo


def register(sub: Any) -> None:
    """Add ``drivegate demo``."""
    parser = add_command(
        sub,
        "demo",
        help="drive the demo sedan on a virtual bus and show the decisions changing",
        description="Play the scripted two-minute drive (parked, city, red light, sharp turn, highway, "
        "reversing) onto a python-can virtual bus, run the engine on it and print a line whenever the "
        "vehicle state or a decision changes.  Needs no car and no files.",
        examples=(
            "drivegate demo",
            "drivegate demo --policy speed-bands --speed 20",
            "drivegate demo --vehicle demo-sedan --policy my-policy.yaml",
        ),
    )
    parser.add_argument(
        "--policy",
        type=policy_arg,
        default=str(builtin.DEFAULT_POLICY),
        help=f"policy file (YAML): {BUILTIN_HINT} (default: default)",
    )
    parser.add_argument(
        "--vehicle",
        type=vehicle_arg,
        default=str(builtin.DEMO_VEHICLE),
        help=f"vehicle profile whose DBC is the demo sedan's: {BUILTIN_HINT} (default: demo-sedan)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEMO_SPEED,
        metavar="X",
        help=f"playback speed factor: 1 = real time, 0 = as fast as possible (default: {DEMO_SPEED:g}, "
        "or $DRIVEGATE_DEMO_SPEED)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when the drive played through, 1 when the player failed."""
    if args.speed < 0:
        print("drivegate demo: --speed must be >= 0", file=sys.stderr)
        return EXIT_UNUSABLE
    return run_demo(Path(args.vehicle), Path(args.policy), speed=args.speed)
