#!/usr/bin/env python3
"""Write the demo sedan's scripted drive as a candump ``-L`` log.

    python tools/gen_drive.py --out demo.log
    python tools/gen_drive.py --out bench.log.gz --frames 1000000

Each line is ``(1700000000.000000) can0 0B4#0011223344556677``, the format of ``candump -L``
that python-can's ``can.LogReader`` reads.  With ``--frames N`` the drive repeats -- timestamps
and rolling counters carrying on, never restarting -- until exactly N frames are written.

Lines are formatted here rather than through python-can's ``CanutilsLogWriter``: the writer
costs a ``can.Message`` and a method call per frame, and the drive repeats the same payloads,
so each distinct frame text is built once and only the timestamp is formatted per line.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

# Run from a checkout without installing: the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safety.demo.drive import DEFAULT_SEED, DEMO_DBC, drive_duration, drive_frames

DEFAULT_START_TIME = 1_700_000_000.0
# Lines per write() call: big enough to amortise the call, small enough to stay cache-friendly.
_CHUNK = 4096


def candump_lines(*, start_time: float, channel: str, frames: int | None, seed: int = DEFAULT_SEED) -> Iterator[str]:
    """The drive's candump lines (with newline); repeats the drive until ``frames`` lines."""
    texts: dict[tuple[int, bytes], str] = {}
    repeat = None if frames is not None else 1
    source = drive_frames(start_time=start_time, seed=seed, repeat=repeat)
    if frames is not None:
        source = itertools.islice(source, frames)
    for timestamp, frame_id, data in source:
        key = (frame_id, data)
        text = texts.get(key)
        if text is None:
            text = f") {channel} {frame_id:03X}#{data.hex().upper()}\n"
            texts[key] = text
        yield f"({timestamp:.6f}{text}"


def write_log(out: TextIO, lines: Iterator[str]) -> int:
    """Write ``lines`` to ``out`` in chunks; return how many were written."""
    written = 0
    while chunk := list(itertools.islice(lines, _CHUNK)):
        out.write("".join(chunk))
        written += len(chunk)
    return written


def _open(path: Path, compresslevel: int) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="ascii", compresslevel=compresslevel, newline="\n")
    return path.open("w", encoding="ascii", newline="\n")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(
        prog="gen_drive.py",
        description=(
            "Write the demo sedan's scripted drive "
            f"({drive_duration():.0f} s, DBC {DEMO_DBC.name}) as a candump -L log."
        ),
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="log file to write; a .gz suffix writes it gzip-compressed",
    )
    parser.add_argument(
        "--frames",
        type=_positive,
        default=None,
        metavar="N",
        help="write exactly N frames, repeating the drive with continuing timestamps and counters (default: one drive)",
    )
    parser.add_argument(
        "--start-time",
        type=float,
        default=DEFAULT_START_TIME,
        metavar="T",
        help=f"timestamp of the drive's first instant, seconds since the epoch (default {DEFAULT_START_TIME:.0f})",
    )
    parser.add_argument("--channel", default="can0", help="channel name written on each line (default can0)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the frame timing jitter (default: fixed)"
    )
    parser.add_argument(
        "--compresslevel",
        type=int,
        choices=range(1, 10),
        default=6,
        metavar="1-9",
        help="gzip level for .gz output (default 6)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: write the log, report frames and time on stderr."""
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    lines = candump_lines(start_time=args.start_time, channel=args.channel, frames=args.frames, seed=args.seed)
    with _open(args.out, args.compresslevel) as out:
        written = write_log(out, lines)
    if not args.quiet:
        elapsed = time.perf_counter() - began
        print(f"wrote {written} frames to {args.out} in {elapsed:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
