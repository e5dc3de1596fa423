"""``drivegate gen-drive --out LOG``: the demo sedan's scripted drive as a candump ``-L`` log.

Each line is ``(1700000000.000000) can0 0B4#0011223344556677``, the format of ``candump -L``
that python-can's ``can.LogReader`` (and ``drivegate replay``) reads.  With ``--frames N`` the
drive repeats -- timestamps and rolling counters carrying on, never restarting -- until exactly
N frames are written.  ``tools/gen_drive.py`` is this command as a script (:func:`main`).

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
from typing import Any, TextIO

from safety.cli.common import EXIT_OK, EXIT_UNUSABLE, add_command, describe, examples_epilog
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options, shared by ``drivegate gen-drive`` and ``tools/gen_drive.py``."""
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


_HELP = "write the demo sedan's scripted drive as a candump -L log"
_EXAMPLES = (
    "drivegate gen-drive --out drive.log",
    "drivegate gen-drive --out bench.log.gz --frames 1000000",
    "drivegate gen-drive --out short.log --frames 500 && drivegate replay short.log --vehicle demo-sedan --policy default",
)


def _description() -> str:
    return (
        f"One drive lasts {drive_duration():.0f} s (DBC {DEMO_DBC.name}); with --frames the drive repeats, "
        "timestamps and rolling counters carrying on, until exactly N frames are written."
    )


def register(sub: Any) -> None:
    """Add ``drivegate gen-drive``."""
    parser = add_command(sub, "gen-drive", help=_HELP, description=_description(), examples=_EXAMPLES)
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the log; report frames and time on stderr (unless ``--quiet``)."""
    began = time.perf_counter()
    lines = candump_lines(start_time=args.start_time, channel=args.channel, frames=args.frames, seed=args.seed)
    try:
        with _open(args.out, args.compresslevel) as out:
            written = write_log(out, lines)
    except OSError as exc:
        print(f"drivegate gen-drive: cannot write {args.out}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if not args.quiet:
        elapsed = time.perf_counter() - began
        print(f"wrote {written} frames to {args.out} in {elapsed:.2f} s", file=sys.stderr)
    return EXIT_OK


def build_parser(prog: str = "gen_drive.py") -> argparse.ArgumentParser:
    """The standalone parser of ``tools/gen_drive.py`` (the same options as ``drivegate gen-drive``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=describe(_HELP, _description()),
        epilog=examples_epilog(_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``tools/gen_drive.py``: parse ``argv`` and write the log; the exit code."""
    return run(build_parser().parse_args(argv))
