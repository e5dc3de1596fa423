#!/usr/bin/env python3
"""The fault matrix of the README: every fault kind injected into the demo drive, replayed, compared.

    python tools/fault_matrix.py            # the Markdown table
    python tools/fault_matrix.py --virtual  # also replay each faulty log on a python-can virtual bus

For each case of ``safety.demo.fault_matrix.DEMO_FAULTS``: the frames the fault changed, the time
the targeted signal was unknown and why, the time some probe was more restrictive than in the
clean drive, how often a request NHTSA locks out while driving was allowed while the car moved
(must be 0), any decision less restrictive than the clean drive's (must be 0), and how long after
the fault's end the timeline was the clean one again.  Exit 1 when a must-be-0 column is not 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from safety.cli.gen_drive import DEFAULT_START_TIME, candump_lines, write_log
from safety.demo.fault_matrix import DEMO_FAULTS, replay_timeline, run_fault
from safety.faults import parse_fault


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--virtual", action="store_true", help="also check each faulty log on a virtual bus")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        drive = Path(tmp) / "drive.log"
        with drive.open("w", encoding="ascii") as out:
            write_log(out, candump_lines(start_time=DEFAULT_START_TIME, channel="can0", frames=None))
        clean, _, _ = replay_timeline(drive)
        t0 = clean[0]["t"]
        print(
            "| fault | frames changed | unknown signal: time, cause | stricter (s, any probe) "
            "| lockouts allowed while moving | looser decisions | clean again after the fault |"
        )
        print("|---|---:|---|---:|---:|---:|---|")
        for case in DEMO_FAULTS:
            run = run_fault(drive, clean, case, Path(tmp) / "faulty.log")
            spec = parse_fault(case.spec)
            if case.signal is None:
                unknown = "none (as it must)"
            else:
                causes = run.summary.unknown_seconds.get(case.signal, {})
                unknown = f"{case.signal}: " + ", ".join(
                    f"{s:.2f} s {c}" for c, s in sorted(causes.items()) if s >= 0.005 and c != "never received"
                )
            stricter = max(run.difference.stricter_seconds.values(), default=0.0)
            again = run.difference.equal_again
            recovery = "never differed" if again is None else f"{again - (t0 + spec.end):+.2f} s"
            if args.virtual:
                on_bus, _, _ = replay_timeline(Path(tmp) / "faulty.log", virtual=True)
                if on_bus != run.lines:
                    print(f"{case.spec}: the virtual bus replay differs from the file replay", file=sys.stderr)
                    failed = True
            failed |= bool(run.difference.looser) or run.locked_allowed_while_moving > 0
            print(
                f"| `{case.spec}` | {run.changed} | {unknown} | {stricter:.2f} | "
                f"{run.locked_allowed_while_moving} | {len(run.difference.looser)} | {recovery} |"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
