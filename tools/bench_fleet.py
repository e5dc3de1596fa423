#!/usr/bin/env python3
"""Fleet replay figures: ``drivegate fleet`` with 1 and 2 worker processes, and Dask's cost per task.

    pip install -e '.[fleet]'
    python tools/bench_fleet.py                    # 12 logs of 500,000 frames, 2 rounds
    python tools/bench_fleet.py --logs 24 --frames 200000 --rounds 3
    python tools/bench_fleet.py --long 10000000  # one long log: one task, or cut into chunks

The logs are the benchmark logs of ``tools/bench_replay.py`` (the demo drive among unmapped
frames, about a tenth mapped).  Each run is the whole command (process start, cluster start,
every log replayed, Parquet written) into a fresh directory, 1 and 2 workers interleaved round
by round.  Dask's overhead per task is measured on a LocalCluster of the same shape: 2,000
tasks that do nothing.  Then a projection, on paper, for 1,000 hours of logs (about 7e9
frames) on a 32-core cluster, from the measured frames/s per worker and the cost per task.
With ``--long N``: one log of N frames on 2 workers, as one task (``--chunk-frames 0``) and cut
into 2 and 3 chunks (spliced exactly), each the whole command; medians and the ratio to one task.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

from bench_replay import write_candump  # noqa: E402


def fleet_run(logs: list[Path], out: Path, workers: int, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "safety.cli", "fleet", *map(str, logs), "--vehicle", "demo-sedan"]
    command += ["--policy", "default", "--out", str(out), "--workers", str(workers), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _nothing(x: int) -> int:
    return x


def task_overhead(workers: int, tasks: int = 2000) -> float:
    """Seconds per task of Dask itself: ``tasks`` no-op tasks on a LocalCluster, submitted and gathered."""
    from distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        client.submit(_nothing, -1).result()  # warm
        start = time.perf_counter()
        for future in as_completed(client.map(_nothing, range(tasks), pure=False)):
            future.result()
        return (time.perf_counter() - start) / tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="drivegate fleet with 1 and 2 workers; Dask's cost per task.")
    parser.add_argument("--logs", type=int, default=12)
    parser.add_argument("--frames", type=int, default=500_000, help="frames per log")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--long", type=int, metavar="N", help="instead: one log of N frames, whole or in chunks")
    args = parser.parse_args(argv)
    if args.long:
        return long_log(args.long, args.rounds)
    with tempfile.TemporaryDirectory(prefix="drivegate-fleet-") as tmp:
        directory = Path(tmp)
        first = directory / "log-0.log"
        write_candump(first, args.frames)
        logs = [first]
        for i in range(1, args.logs):
            logs.append(directory / f"log-{i}.log")
            shutil.copyfile(first, logs[-1])  # a distinct file: its own task and part
        seconds: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.rounds):
            for workers in (1, 2):
                seconds[workers].append(fleet_run(logs, directory / "out", workers))
                print(f"  round {r + 1}: {workers} worker(s) {seconds[workers][-1]:.2f} s", flush=True)
        overhead = task_overhead(2)
    frames = args.logs * args.frames
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    per_worker = frames / one
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.logs} logs x {args.frames:,} frames")
    print("| workers | wall (median, whole command) | logs/s | frames/s |")
    print("|---:|---:|---:|---:|")
    for workers, wall in ((1, one), (2, two)):
        print(f"| {workers} | {wall:.2f} s | {args.logs / wall:.2f} | {frames / wall:,.0f} |")
    print(f"\nscaling 1 -> 2 workers: {one / two:.2f}x; Dask's own cost per task: {overhead * 1e3:.2f} ms")
    total_frames, cores, log_frames = 7e9, 32, 2.5e6  # 1,000 h; logs of ~6 min at 7,000 frames/s
    tasks = total_frames / log_frames
    compute = total_frames / (per_worker * cores)
    scheduling = tasks * overhead / cores
    print(
        f"projection: 1,000 h (7e9 frames, {tasks:,.0f} logs of {log_frames:,.0f} frames) on {cores} cores at "
        f"{per_worker:,.0f} frames/s per worker: {compute / 3600:.2f} h of replay + {scheduling:.0f} s of Dask "
        f"overhead = {(compute + scheduling) / 3600:.2f} h (reading the logs from storage not counted)"
    )
    return 0


def long_log(frames: int, rounds: int) -> int:
    """One long log on 2 workers: one task, and 2 and 3 chunks spliced."""
    import json

    ways = {
        "one task": ["--chunk-frames", "0"],
        "2 chunks": ["--chunk-frames", str(frames // 2 + 1)],
        "3 chunks": ["--chunk-frames", str(frames // 3 + 1)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="drivegate-long-") as tmp:
        directory = Path(tmp)
        log = directory / "long.log"
        write_candump(log, frames)
        for r in range(rounds):
            for name, extra in ways.items():
                out = directory / "out"
                seconds[name].append(fleet_run([log], out, 2, *extra))
                totals = json.loads((out / "summary.json").read_text())
                print(f"  round {r + 1}: {name}: {seconds[name][-1]:.2f} s (spliced {totals['chunked']}, whole after chunks {totals['unspliced']})", flush=True)
    base = statistics.median(seconds["one task"])
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; one log of {frames:,} frames, 2 workers")
    print("| tasks | wall (median, whole command) | frames/s | vs one task |")
    print("|---|---:|---:|---:|")
    for name in ways:
        wall = statistics.median(seconds[name])
        print(f"| {name} | {wall:.2f} s | {frames / wall:,.0f} | {base / wall:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
