#!/usr/bin/env python3
"""Replay as a user times it: whole commands, process start included, side by side.

    python tools/bench_replay.py                          # 10,000,000-frame candump log, 1,000,000-frame BLF
    python tools/bench_replay.py --frames 1000000 --blf-frames 200000 --rounds 3
    python tools/bench_replay.py --memory                 # peak RSS on 200 MB and 2 GB candump logs

Three commands on the same log, interleaved round by round (the machine is shared and drifts):

- ``drivegate replay LOG`` (the columnar engine, the default for a file);
- ``drivegate replay LOG --engine streaming``;
- the baseline a user would write: ``tools/baseline_replay.py`` (python-can's ``LogReader``,
  cantools ``decode_message`` on every mapped frame, the latest value per signal kept).

The log is the demo drive (``drivegate gen-drive``) with five frames the profile does not map
after each of its frames, so about a tenth of the frames are mapped, as on a real bus.  Each
run's wall time and peak RSS (``os.wait4``) are recorded; medians and the per-round ratio to the
baseline are printed, with a Markdown table.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safety.cli.gen_drive import DEFAULT_START_TIME, candump_lines  # noqa: E402

VEHICLE = ROOT / "dbc" / "demo_sedan.yaml"
UNMAPPED_PER_FRAME = 5


def busy_lines(frames: int) -> Iterator[str]:
    """``frames`` candump lines: the demo drive (repeated, time going on), each frame followed
    by five unmapped ones."""
    drive = candump_lines(start_time=DEFAULT_START_TIME, channel="can0", frames=frames // (1 + UNMAPPED_PER_FRAME) + 1)
    written = 0
    for i, line in enumerate(drive):
        stamp = line[: line.index(")") + 1]
        unmapped = (f"{stamp} can0 {0x300 + k:03X}#{i & 0xFF:02X}{k:02X}A1B2C3D4E5F6\n" for k in range(UNMAPPED_PER_FRAME))
        for text in (line, *unmapped):
            if written == frames:
                return
            yield text
            written += 1


def write_candump(path: Path, frames: int) -> None:
    with path.open("w", encoding="ascii") as f:
        chunk: list[str] = []
        for line in busy_lines(frames):
            chunk.append(line)
            if len(chunk) == 65536:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


def write_blf(candump: Path, path: Path, frames: int) -> None:
    import can

    from safety.io.logs import read_log

    with can.BLFWriter(str(path)) as writer:
        for n, frame in enumerate(read_log(candump)):
            if n == frames:
                break
            writer.on_message_received(
                can.Message(
                    timestamp=frame.timestamp,
                    arbitration_id=frame.arbitration_id,
                    is_extended_id=frame.is_extended_id,
                    data=frame.data,
                    channel=0,
                )
            )


def commands(log: Path) -> dict[str, list[str]]:
    replay = [sys.executable, "-m", "safety.cli", "replay", str(log), "--vehicle", str(VEHICLE)]
    replay += ["--policy", "default", "--out", os.devnull]
    return {
        "columnar": replay,
        "streaming": [*replay, "--engine", "streaming"],
        "baseline": [sys.executable, str(ROOT / "tools" / "baseline_replay.py"), str(log), "--vehicle", str(VEHICLE)],
    }


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one whole run of ``command``.

    The peak comes from GNU time (``/usr/bin/time -f %M``): the rusage of a child forked from
    this process would count this process's pages it shared before ``exec``.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-o", rss.name, "-f", "%M", *command],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        seconds = time.perf_counter() - start
        if result.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(command)} exited {result.returncode}")
        return seconds, int(rss.read().split()[-1]) / 1024


def bench(log: Path, frames: int, rounds: int, label: str) -> list[str]:
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands(log)}
    for r in range(rounds):
        for name, command in commands(log).items():
            runs[name].append(timed(command))
            print(f"  {label} round {r + 1} {name:10s} {runs[name][-1][0]:8.2f} s  {runs[name][-1][1]:7.0f} MB", flush=True)
    rows = []
    for name in ("columnar", "streaming", "baseline"):
        seconds = statistics.median(s for s, _ in runs[name])
        rss = statistics.median(m for _, m in runs[name])
        ratios = [b / s for (s, _), (b, _) in zip(runs[name], runs["baseline"], strict=True)]
        rows.append(
            f"| {label} | {name} | {seconds:.2f} s | {frames / seconds:,.0f} | {rss:.0f} MB | "
            f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) |"
        )
    return rows


def memory(directory: Path) -> list[str]:
    rows = []
    for size_mb in (200, 2000):
        path = directory / f"busy-{size_mb}mb.log"
        frames = size_mb * 1_000_000 // 37  # ~37 bytes a line
        write_candump(path, frames)
        actual = path.stat().st_size / 1e6
        for name in ("columnar", "streaming"):
            seconds, rss = timed(commands(path)[name])
            rows.append(f"| {actual:,.0f} MB ({frames:,} frames) | {name} | {seconds:.1f} s | {rss:.0f} MB |")
            print(rows[-1], flush=True)
        path.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Whole-command replay figures: columnar, streaming, baseline.")
    parser.add_argument("--frames", type=int, default=10_000_000, help="frames of the candump log (default 10,000,000)")
    parser.add_argument("--blf-frames", type=int, default=1_000_000, help="frames of the BLF log (default 1,000,000; 0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--memory", action="store_true", help="only the peak RSS on 200 MB and 2 GB candump logs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drivegate-bench-") as tmp:
        directory = Path(tmp)
        if args.memory:
            rows = memory(directory)
            print("\n| log | engine | wall | peak RSS |\n|---|---|---:|---:|")
            print("\n".join(rows))
            return 0
        log = directory / "busy.log"
        write_candump(log, args.frames)
        rows = bench(log, args.frames, args.rounds, f"candump, {args.frames:,} frames")
        if args.blf_frames:
            blf = directory / "busy.blf"
            write_blf(log, blf, args.blf_frames)
            rows += bench(blf, args.blf_frames, args.rounds, f"BLF, {args.blf_frames:,} frames")
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| log | command | wall (median) | frames/s | peak RSS | × baseline (per round) |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
