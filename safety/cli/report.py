"""``drivegate report LOG... --out report.html``: recorded drives as one self-contained HTML page."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from safety.cli.common import BUILTIN_HINT, EXIT_OK, EXIT_UNUSABLE, add_command, add_vehicle_option, policy_arg
from safety.cli.progress import Progress
from safety.replay.timeline import BUILTIN_PROBES, load_probes


def register(sub: Any) -> None:
    """Add ``drivegate report``."""
    parser = add_command(
        sub,
        "report",
        help="recorded drives as one self-contained HTML page: signals, state and decision bands, unknown time",
        description="Per drive: speed, steering angle and gear over time; the driving state, workload and one band "
        "per probe coloured by outcome (with --compare: the other policy's bands and where they differ); the time "
        "each signal spent unknown, by cause; a table of time per outcome per probe. One HTML file with plotly.js "
        "inlined: it opens offline, zooms and pans. --png DIR also writes static images (needs kaleido). Needs "
        "plotly: pip install 'drivegate[fleet]'.",
        examples=(
            "drivegate report drive.log --vehicle demo-sedan --policy default --out report.html",
            "drivegate report a.log b.log --vehicle car.yaml --policy new.yaml --compare old.yaml --out report.html --png pngs/",
        ),
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="recorded drives (any format replay reads)")
    add_vehicle_option(parser)
    parser.add_argument("--policy", required=True, type=policy_arg, help=f"policy file (YAML): {BUILTIN_HINT}")
    parser.add_argument("--compare", type=policy_arg, help="another policy: its bands, and where the two differ")
    parser.add_argument("--probes", help="YAML list of requests (each with an id) to decide along the drives")
    parser.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    parser.add_argument("--png", type=Path, metavar="DIR", help="also write the figures as PNG images here")
    parser.add_argument(
        "--sample-every", type=float, default=0.1, metavar="SECONDS", help="curve resolution in log time (default 0.1 s)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on a terminal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; 2 when plotly (or, for --png, kaleido) is missing."""
    if importlib.util.find_spec("plotly") is None:
        print("drivegate report needs plotly: pip install 'drivegate[fleet]'", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.png is not None and not _have_kaleido():
        print("drivegate report --png needs kaleido (and a Chrome or Chromium): pip install kaleido", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.sample_every <= 0:
        print("drivegate report: --sample-every must be > 0", file=sys.stderr)
        return EXIT_UNUSABLE
    from safety.fleet.report import replay_for_report, write_pngs, write_report

    probes = load_probes(args.probes) if args.probes else [dict(p) for p in BUILTIN_PROBES]
    progress = Progress("report", total=len(args.logs), unit="drives", quiet=args.quiet)
    drives = []
    for n, log in enumerate(args.logs):
        progress.update(n)
        drives.append(replay_for_report(args.vehicle, args.policy, log, probes, args.compare, args.sample_every))
    progress.close()
    write_report(drives, args.out)
    print(f"wrote {args.out} ({len(drives)} drive(s))")
    if args.png is not None:
        try:
            written = write_pngs(drives, args.png)
        except Exception as exc:  # kaleido and choreographer errors (no browser, one that dies) share no base; tested
            print(f"drivegate report --png: kaleido could not draw the images: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
        for path in written:
            print(f"wrote {path}")
    return EXIT_OK


def _have_kaleido() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True
