"""``drivegate fleet LOG...|--manifest FILE``: a fleet's recorded drives replayed on Dask, as Parquet."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_vehicle_option,
    policy_arg,
)
from safety.replay.timeline import BUILTIN_PROBES, load_probes

FLEET_MODULES = ("distributed", "pyarrow", "tqdm", "plotly")

# The local cluster's workers, set up for a replay (measured here on a 2,000,000-frame log,
# one task: 3.4 s in a default worker, 2.25 s with these, 2.3 s in the driver's own process).
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in each worker so that freed memory goes back
# to the system at once: a replay allocates and frees small objects at every frame and its
# memory is flat, so glibc's own (adaptive) threshold is the right one; None unsets it.  The
# worker's sampling profiler (every 10 ms) is off: nobody reads it here.  A cluster given with
# --scheduler is its operators' to set up (the same two settings apply to its workers).
LOCAL_WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


def register(sub: Any) -> None:
    """Add ``drivegate fleet``."""
    parser = add_command(
        sub,
        "fleet",
        help="replay many recorded drives on a Dask cluster: decision intervals as Parquet, resumable",
        description="One task per log on dask.distributed (a local cluster of worker processes, or --scheduler). "
        "Writes DIR/parts/*.parquet (one row per probe and span of the same decision: log, probe, start, end, "
        "outcome, rules, other_outcome with --compare), DIR/summary.json and DIR/errors.jsonl, and prints a "
        "summary. A very long candump log is cut into chunks (one task each) that are spliced where their replays "
        "agree, so its rows are exactly those of a whole replay. A log already done for the same inputs is skipped; a log that cannot be read is reported "
        "and the others go on (exit 1 when any failed). Needs the fleet extra: pip install 'drivegate[fleet]'.",
        examples=(
            "drivegate fleet drives/*.log --vehicle demo-sedan --policy default --out fleet/",
            "drivegate fleet --manifest month.txt --vehicle car.yaml --policy new.yaml --compare old.yaml --out fleet/",
            "drivegate fleet --manifest month.txt --vehicle car.yaml --policy p.yaml --out fleet/ --scheduler tcp://10.0.0.5:8786",
        ),
    )
    parser.add_argument("logs", nargs="*", metavar="LOG", help="recorded drives (any format replay reads)")
    parser.add_argument("--manifest", type=Path, help="a file listing the logs, one per line (relative to it; # comments)")
    add_vehicle_option(parser)
    parser.add_argument("--policy", required=True, type=policy_arg, help=f"policy file (YAML): {BUILTIN_HINT}")
    parser.add_argument("--compare", type=policy_arg, help="another policy (the one in the cars): its outcome in every row")
    parser.add_argument("--probes", help="YAML list of requests (each with an id) to decide along the drives")
    parser.add_argument("--out", required=True, type=Path, help="the results directory")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="an existing Dask scheduler, e.g. tcp://HOST:8786")
    where.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per core)")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        metavar="N",
        help="cut a candump log of more than about N frames (lines) into chunks, one task each, spliced exactly "
        "(default 4,000,000; 0: never)",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=None,
        metavar="N",
        help="frames (lines) of warm-up and run-on shared by neighbouring chunks (default 400,000; under half a chunk)",
    )
    parser.add_argument("--report", action="store_true", help="also write DIR/report.html over the whole fleet (plotly)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on a terminal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Replay the fleet; 1 when a log failed, 2 when the inputs or the extra are missing."""
    missing = [m for m in FLEET_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"drivegate fleet needs the fleet extra: pip install 'drivegate[fleet]' (missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    from safety.fleet.run import FleetJob, chunk_planner, dask_submit, job_keys, read_manifest, run_fleet
    from safety.replay.chunks import DEFAULT_CHUNK_FRAMES, DEFAULT_EVERY_FRAMES, DEFAULT_OVERLAP_FRAMES

    logs = list(args.logs)
    if args.manifest is not None:
        logs += read_manifest(args.manifest)
    if not logs:
        print("drivegate fleet: no logs (give LOG arguments or --manifest)", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.workers is not None and args.workers < 1:
        print("drivegate fleet: --workers must be at least 1", file=sys.stderr)
        return EXIT_UNUSABLE
    chunk_frames = DEFAULT_CHUNK_FRAMES if args.chunk_frames is None else args.chunk_frames
    overlap = args.chunk_overlap
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP_FRAMES, max(1, (chunk_frames - 1) // 2))
    if chunk_frames < 0:
        print(f"drivegate fleet: --chunk-frames must be 0 (never cut a log) or more, got {chunk_frames}", file=sys.stderr)
        return EXIT_UNUSABLE
    if chunk_frames and not 1 <= overlap < chunk_frames / 2:
        print(
            f"drivegate fleet: --chunk-overlap must be at least 1 and under half of --chunk-frames ({chunk_frames}), "
            f"got {overlap}",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    chunking = chunk_planner(chunk_frames, overlap, min(DEFAULT_EVERY_FRAMES, overlap)) if chunk_frames else None
    from safety.engine.engine import Engine

    Engine.load(args.vehicle, args.policy)  # unusable inputs fail here, before a cluster starts
    if args.compare is not None:
        Engine.load(args.vehicle, args.compare)
    probes = load_probes(args.probes) if args.probes else [dict(p) for p in BUILTIN_PROBES]
    vehicle, policy = str(args.vehicle), str(args.policy)
    compare = None if args.compare is None else str(args.compare)
    keys = job_keys(logs, vehicle, policy, compare, probes)
    jobs = [FleetJob(log, vehicle, policy, compare, tuple(probes), key) for log, key in zip(logs, keys, strict=True)]
    show = sys.stderr.isatty() and not args.quiet

    import logging

    import dask
    from distributed import Client, LocalCluster
    from tqdm import tqdm

    cluster = None
    if args.scheduler is not None:
        client = Client(args.scheduler)
    else:
        workers = args.workers or os.cpu_count() or 1
        with dask.config.set(LOCAL_WORKER_CONFIG):
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
            )
        client = Client(cluster)
    bar = tqdm(total=len(jobs), unit="log", disable=not show, file=sys.stderr)
    frames = 0

    def on_result(result: Any) -> None:
        nonlocal frames
        frames += result.frames_read
        bar.update(1)
        bar.set_postfix(frames=f"{frames:,}", refresh=False)

    try:
        summary = run_fleet(
            jobs, args.out, dask_submit(client), compare=compare is not None, on_result=on_result, chunking=chunking
        )
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    print(summary.format())
    if args.report:
        from safety.fleet.report import write_fleet_report

        write_fleet_report(summary.totals(), summary.figures, args.out / "report.html")
        print(f"wrote {args.out / 'report.html'}")
    return EXIT_FINDINGS if summary.failed else EXIT_OK
