"""Benchmark: frames/s of ``safety.io.logs`` reading candump logs vs python-can's ``can.LogReader``.

Builds a large candump ``-L`` file in a temporary folder by repeating the real comma2k19 RAV4 log
(135,468 frames, 60 s) with timestamps shifted by 60 s per copy, then times iterating it to the
end, several times each, and prints the median (and best) frames/s.  Not a test: the numbers
depend on the machine.

    /work/venv/bin/python tools/bench_logs.py [--lines 500000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import can

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

from safety.io.candump import _candump_lines, iter_candump  # noqa: E402
from safety.io.logs import read_log  # noqa: E402

LOG = ROOT.parent / "shared" / "data" / "comma2k19_rav4_2017" / "comma2k19_rav4_2018-08-02_seg40.log.gz"


def build_log(source: Path, lines: int, dest: Path) -> int:
    """Write ``lines`` candump lines to ``dest``, repeating ``source`` with shifted timestamps."""
    with gzip.open(source, "rt", encoding="ascii") as f:
        original = [line.split(" ", 1) for line in f if line.strip()]
    written = 0
    with dest.open("w", encoding="ascii") as out:
        copy = 0
        while written < lines:
            shift = 60.0 * copy
            for stamp, rest in original[: lines - written]:
                out.write(f"({float(stamp[1:-1]) + shift:.6f}) {rest}")
            written += min(len(original), lines - written)
            copy += 1
    return written


def count(frames: Iterable[object]) -> int:
    n = 0
    for _ in frames:
        n += 1
    return n


def measure(label: str, run: Callable[[], int], repeats: int, expected: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = run()
        elapsed = time.perf_counter() - start
        if n != expected:
            raise SystemExit(f"{label}: read {n} frames, expected {expected}")
        rates.append(n / elapsed)
    median = statistics.median(rates)
    print(f"{label:42s} {median / 1e6:6.2f} M frames/s median   {max(rates) / 1e6:6.2f} best")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not LOG.exists():
        raise SystemExit(f"test data not found: {LOG}")

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "big.log"
        n = build_log(LOG, args.lines, plain)
        gz = Path(tmp) / "big.log.gz"
        gz.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6))
        lines = plain.read_text(encoding="ascii").splitlines(keepends=True)
        print(
            f"{n} frames, {plain.stat().st_size / 1e6:.1f} MB plain, {gz.stat().st_size / 1e6:.1f} MB gz; "
            f"median of {args.repeats} runs each, iterating every frame\n"
        )

        ours = measure("safety.io.logs.read_log(.log)", lambda: count(read_log(plain)), args.repeats, n)
        theirs = measure("can.LogReader(.log)", lambda: count(can.LogReader(plain)), args.repeats, n)
        measure("safety.io.logs.read_log(.log.gz)", lambda: count(read_log(gz)), args.repeats, n)
        measure("can.LogReader(.log.gz)", lambda: count(can.LogReader(gz)), args.repeats, n)
        measure("safety.io.logs.iter_candump(list of lines)", lambda: count(iter_candump(lines)), args.repeats, n)
        # The line-by-line parser is what blocks with remote/FD/error frames or bad lines take.
        measure(
            "  line-by-line path alone (for reference)",
            lambda: count(_candump_lines(lines, 0, "", print)),
            args.repeats,
            n,
        )
        print(f"\nread_log(.log) is {ours / theirs:.1f}x can.LogReader(.log)")


if __name__ == "__main__":
    main()
