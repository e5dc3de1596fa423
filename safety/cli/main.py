"""The ``drivegate`` command line: ``replay`` and ``demo``.

Exit codes: 0 success; 1 the command ran but found problems; 2 unusable input (a profile,
policy, probes or log that cannot be loaded), with every problem printed as
``file:line:col: code: message``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from safety import builtin
from safety.cli import lint, logsummary, policy, schema, serve, signing
from safety.engine.engine import Engine
from safety.errors import DriveGateError
from safety.replay.timeline import BUILTIN_PROBES, load_probes, replay_file, replay_virtual

# Modules that add subcommands (see _parser): each has register(subparsers).
COMMAND_MODULES = (logsummary, policy, serve, lint, schema, signing)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drivegate",
        description="DriveGate: driver-distraction safety policy engine.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser(
        "replay",
        help="replay a recorded CAN log through the engine and print the decision timeline",
        description="Replay a CAN log (candump .log, .asc, .blf, .trc, .csv, .mf4, or gzipped) "
        "and write a JSONL timeline of states and probe decisions.",
    )
    rp.add_argument("log", help="the log file")
    rp.add_argument("--vehicle", required=True, help="vehicle profile (YAML beside its DBC)")
    rp.add_argument("--policy", required=True, help="policy file (YAML)")
    rp.add_argument("--probes", help="YAML list of requests (each with an id) to decide along the drive")
    rp.add_argument("--out", help="write the timeline here (default: stdout)")
    rp.add_argument("--sample-every", type=float, metavar="SECONDS", help="also write a line every SECONDS of log time")
    rp.add_argument(
        "--virtual",
        action="store_true",
        help="play the log onto a python-can virtual bus and listen on it, as in the car",
    )
    rp.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --virtual: playback speed (1 = real time, 10 = ten times faster, 0 = as fast as possible)",
    )
    rp.set_defaults(run=_replay)
    demo_parser = sub.add_parser("demo", help="drive the demo sedan on a virtual bus and show the decisions changing")
    demo_parser.set_defaults(run=lambda args: demo())
    # Further commands live in their own modules: each has register(subparsers), which adds
    # its parser with set_defaults(run=function(args) -> exit code).
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except DriveGateError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _replay(args: argparse.Namespace) -> int:
    if args.speed < 0:
        print("drivegate replay: --speed must be >= 0", file=sys.stderr)
        return 2
    if args.sample_every is not None and args.sample_every <= 0:
        print("drivegate replay: --sample-every must be > 0", file=sys.stderr)
        return 2
    engine = Engine.load(args.vehicle, args.policy)
    for warning in engine.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    probes: list[dict[str, Any]] = load_probes(args.probes) if args.probes else [dict(p) for p in BUILTIN_PROBES]
    out: TextIO
    with open(args.out, "w", encoding="utf-8") if args.out else _stdout() as out:
        if args.virtual:
            summary = replay_virtual(engine, args.log, probes, out, args.sample_every, args.speed)
        else:
            summary = replay_file(engine, args.log, probes, out, args.sample_every)
    print(summary.format(), file=sys.stderr)
    if summary.frames_read == 0:
        print(f"{args.log}: no frames read", file=sys.stderr)
        return 1
    return 0


class _stdout:
    """stdout as a context manager that does not close it."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def demo() -> int:
    """Drive the scripted demo car on a virtual bus; print each change of state or decision."""
    from safety.demo.demo import run_demo

    return run_demo(builtin.DEMO_VEHICLE, builtin.DEFAULT_POLICY)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
