"""``drivegate replay LOG``: a recorded CAN log through the engine, as a JSONL decision timeline."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_vehicle_option,
    output,
    policy_arg,
)
from safety.cli.progress import Progress
from safety.engine.engine import Engine
from safety.replay.columnar import replay_columnar
from safety.replay.timeline import (
    BUILTIN_PROBES,
    load_probes,
    replay_file,
    replay_virtual,
    silent_replay_warning,
)


def register(sub: Any) -> None:
    """Add ``drivegate replay``."""
    parser = add_command(
        sub,
        "replay",
        help="replay a recorded CAN log through the engine and print the decision timeline",
        description="Replay a CAN log (candump .log, .asc, .blf, .trc, .csv, .mf4, or gzipped) "
        "and write a JSONL timeline of states and probe decisions; a summary goes to stderr. "
        "Exit 1 when no frame could be read, or when no frame matched the vehicle profile.",
        examples=(
            "drivegate gen-drive --out drive.log && drivegate replay drive.log --vehicle demo-sedan --policy default",
            "drivegate replay drive.log.gz --vehicle car.yaml --policy policy.yaml --out timeline.jsonl",
            "drivegate replay drive.log --vehicle demo-sedan --policy speed-bands --virtual --speed 0",
        ),
    )
    parser.add_argument("log", help="the log file")
    add_vehicle_option(parser)
    parser.add_argument(
        "--policy",
        required=True,
        type=policy_arg,
        help=f"policy file (YAML): {BUILTIN_HINT}, e.g. default or speed-bands",
    )
    parser.add_argument("--probes", help="YAML list of requests (each with an id) to decide along the drive")
    parser.add_argument("--out", help="write the timeline here (default: stdout)")
    parser.add_argument(
        "--sample-every", type=float, metavar="SECONDS", help="also write a line every SECONDS of log time"
    )
    parser.add_argument(
        "--reasons",
        action="store_true",
        help="add to every line why each unknown signal is unknown (stale, invalid, implausible, ...)",
    )
    parser.add_argument(
        "--virtual",
        action="store_true",
        help="play the log onto a python-can virtual bus and listen on it, as in the car",
    )
    parser.add_argument(
        "--engine",
        choices=("columnar", "streaming"),
        help="columnar (the default for a file): the log read as columns, only frames that can change "
        "a decision decided; streaming: every frame through the engine in turn (the default with "
        "--virtual).  Both write the same timeline.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on a terminal")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --virtual: playback speed (1 = real time, 10 = ten times faster, 0 = as fast as possible)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Replay ``args.log``; the exit code (1 when no frame was read)."""
    if args.speed < 0:
        print("drivegate replay: --speed must be >= 0", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.sample_every is not None and args.sample_every <= 0:
        print("drivegate replay: --sample-every must be > 0", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.virtual and args.engine == "columnar":
        print("drivegate replay: --virtual plays frames onto a bus one by one: use --engine streaming", file=sys.stderr)
        return EXIT_UNUSABLE
    engine = Engine.load(args.vehicle, args.policy)
    for warning in engine.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    probes: list[dict[str, Any]] = load_probes(args.probes) if args.probes else [dict(p) for p in BUILTIN_PROBES]
    out: TextIO
    with output(args.out) as out:
        if args.virtual:
            summary = replay_virtual(engine, args.log, probes, out, args.sample_every, args.speed, reasons=args.reasons)
        elif args.engine == "streaming":
            summary = replay_file(engine, args.log, probes, out, args.sample_every, reasons=args.reasons)
        else:
            progress = Progress(f"replay {args.log}", quiet=args.quiet)
            try:
                summary = replay_columnar(
                    engine, args.log, probes, out, args.sample_every, reasons=args.reasons, progress=progress.update
                )
            finally:
                progress.close()
    print(summary.format(), file=sys.stderr)
    if summary.frames_read == 0:
        print(f"{args.log}: no frames read", file=sys.stderr)
        return EXIT_FINDINGS
    if summary.frames_decoded == 0:
        print(silent_replay_warning(engine, args.log), file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK
