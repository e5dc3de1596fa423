"""Micro-benchmark: per-frame cost of a compiled reader vs cantools' ``Message.decode``.

Decodes the real SPEED (0xB4) payloads of the comma2k19 RAV4 log with the RAV4 DBC, and prints the
median per-frame time over several repeats.  Not a test: numbers depend on the machine.

    /work/venv/bin/python tools/bench_decode.py [--repeats 7] [--frames 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can
import cantools

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

from safety.vehicle.decode import compile_message_reader  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "comma2k19_rav4_2017"
DBC = DATA / "toyota_new_mc_pt_generated.dbc"
LOG = DATA / "comma2k19_rav4_2018-08-02_seg40.log.gz"


def per_frame_ns(decode: Callable[[bytes], Any], payloads: list[bytes], repeats: int) -> float:
    """Median over ``repeats`` of the time per payload, minus the cost of the bare loop."""

    def run(function: Callable[[bytes], Any]) -> float:
        start = time.perf_counter_ns()
        for payload in payloads:
            function(payload)
        return (time.perf_counter_ns() - start) / len(payloads)

    def nothing(payload: bytes) -> None:
        return None

    run(decode)  # warm up (and let CPython 3.11 specialise the bytecode)
    loop = statistics.median(run(nothing) for _ in range(repeats))
    return statistics.median(run(decode) for _ in range(repeats)) - loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", type=int, default=20000, help="payloads per repeat (cycled from the log)")
    args = parser.parse_args()
    if not DBC.is_file() or not LOG.is_file():
        print(f"shared data not found under {DATA}", file=sys.stderr)
        return 1

    db = cantools.database.load_file(DBC, strict=False)
    assert isinstance(db, cantools.database.can.Database)
    message = db.get_message_by_name("SPEED")
    speed = [bytes(f.data) for f in can.LogReader(str(LOG)) if f.arbitration_id == message.frame_id]
    payloads = (speed * (args.frames // len(speed) + 1))[: args.frames]
    names = [signal.name for signal in message.signals]

    start = time.perf_counter_ns()
    compile_message_reader(message, names)
    compile_us = (time.perf_counter_ns() - start) / 1000

    speed_only = compile_message_reader(message, ["SPEED"])
    cases: dict[str, Callable[[bytes], Any]] = {
        "cantools decode()": message.decode,
        "cantools decode(decode_choices=False)": lambda d: message.decode(d, decode_choices=False),
        "cantools decode(decode_choices=False, scaling=False)": lambda d: message.decode(
            d, decode_choices=False, scaling=False
        ),
        f"reader {names} scaled": compile_message_reader(message, names),
        f"reader {names} raw": compile_message_reader(message, names, scaled=False),
        "reader ['SPEED'] scaled": speed_only,
        # Includes slicing the payload to 6 bytes, which the other cases do not pay.
        "reader ['SPEED'] scaled, 6-byte frame (short path)": lambda d: speed_only(d[:6]),
    }
    print(
        f"SPEED 0x{message.frame_id:03X}: {len(speed)} real payloads, {len(payloads)} per repeat, "
        f"median of {args.repeats} repeats, Python {sys.version.split()[0]}"
    )
    print(f"compile_message_reader (3 signals): {compile_us:.0f} µs once")
    baseline = None
    for label, function in cases.items():
        ns = per_frame_ns(function, payloads, args.repeats)
        baseline = baseline or ns
        print(f"  {label:<58} {ns:8.0f} ns/frame  ({baseline / ns:5.1f}x vs decode())")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
