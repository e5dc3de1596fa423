"""``drivegate inject DRIVE.log --vehicle V --fault SPEC ... --out FAULTY.log``: a drive with faults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_vehicle_option,
)
from safety.errors import LogFormatError
from safety.faults import Injector, parse_faults
from safety.faults.spec import kinds_help
from safety.io.logs import read_log
from safety.io.write import WRITE_SUFFIXES, log_suffix, write_frames
from safety.vehicle.profile import load_profile

_GRAMMAR = (
    "fault: KIND[:MESSAGE][@START[+DURATION]][,key=value...]\n"
    "  MESSAGE  a DBC message name or frame id; START, DURATION  seconds after the log's first frame\n"
    "  (no @: the whole log; no +DURATION: to its end); count=N acts on the first N frames only\n\n"
    "fault kinds:\n"
)


def register(sub: Any) -> None:
    """Add ``drivegate inject``."""
    parser = add_command(
        sub,
        "inject",
        help="write a copy of a CAN log with faults injected at given times",
        description="Read a log, apply each --fault in the order given, and write the result (candump .log "
        "or .log.gz here; .asc, .blf, .trc, .csv through python-can).  Frames a fault corrupts as a "
        "sensor would (spike, sna) are re-sealed with the profile's e2e definition, so that only "
        "plausibility and validity checks can catch them.  The frames each fault changed go to stderr; "
        "exit 1 when a fault changed nothing (its window lies outside the log, or its message never occurs).",
        examples=(
            "drivegate inject drive.log --vehicle demo-sedan --fault drop:VEHICLE_SPEED@20+3 --out faulty.log",
            "drivegate inject drive.log --vehicle demo-sedan --fault 'spike:VEHICLE_SPEED@30+0.1,signal=VehicleSpeed,"
            "value=250' --fault silence@60+2 --out faulty.log",
            "drivegate inject drive.log --vehicle demo-sedan --fault bad-checksum:STEERING@40+1 --out faulty.blf",
        ),
    )
    # The grammar and the kinds, laid out by hand (the description above is wrapped): before the examples.
    parser.description = (parser.description or "") + "\n\n" + _GRAMMAR + kinds_help()
    parser.add_argument("log", help="the log to read (any format drivegate replay reads)")
    add_vehicle_option(parser)
    parser.add_argument(
        "--fault",
        action="append",
        required=True,
        metavar="SPEC",
        help="a fault to inject (repeatable; see below)",
    )
    parser.add_argument("--out", required=True, help="the log to write; its suffix gives the format")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Inject the faults; the exit code."""
    out = Path(args.out)
    if log_suffix(out) not in WRITE_SUFFIXES:
        print(
            f"drivegate inject: --out {args.out}: cannot write a log with suffix {log_suffix(out)!r}; "
            f"expected one of {', '.join(WRITE_SUFFIXES)} (each may end in .gz)",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    if out.exists() and Path(args.log).exists() and out.resolve() == Path(args.log).resolve():
        print("drivegate inject: --out must not be the log being read", file=sys.stderr)
        return EXIT_UNUSABLE
    specs = parse_faults(args.fault)
    injector = Injector(specs, load_profile(args.vehicle))
    log_errors: list[LogFormatError] = []
    written = write_frames(out, injector.run(read_log(args.log, on_error=log_errors.append)))
    for error in log_errors[:10]:
        print(f"warning: {error}", file=sys.stderr)
    if len(log_errors) > 10:
        print(f"warning: ... and {len(log_errors) - 10} more unreadable lines or frames (skipped)", file=sys.stderr)
    idle = []
    for text, changed in injector.changed.items():
        print(f"{text}: {changed} frames changed", file=sys.stderr)
        if changed == 0:
            idle.append(text)
    print(f"{args.out}: {written} frames written", file=sys.stderr)
    if idle:
        for text in idle:
            print(
                f"{text}: changed nothing (its window is outside the log, or its message never occurs)", file=sys.stderr
            )
        return EXIT_FINDINGS
    return EXIT_OK
