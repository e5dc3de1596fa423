"""What a client-only process pays to import DriveGate's client: wall time and peak memory.

Runs ``python -c "<statement>"`` in fresh processes (median of ``--runs``), interleaved with a
baseline process that imports only what any client needs anyway (``socket``, ``json``), so the
machine's noise hits both alike.  ``--tree DIR`` measures another checkout (e.g. an older commit
made with ``git worktree add``) with the same interpreter.

    python tools/bench_import.py [--runs 21] [--tree DIR] [--statement "from safety import Client"]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import time, resource, sys\n"
    "t0 = time.perf_counter()\n"
    "{statement}\n"
    "t1 = time.perf_counter()\n"
    "import json\n"
    "heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'can', 'cantools', 'cryptography', 'numpy', 'yaml'}})\n"
    "print(json.dumps({{'ms': (t1 - t0) * 1000, 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
    " 'modules': len(sys.modules), 'heavy': heavy}}))\n"
)


def measure(statement: str, tree: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement)], cwd=tree, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose safety/ is imported")
    parser.add_argument("--statement", default="from safety import Client")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, object]]] = {"client": [], "baseline": []}
    for _ in range(args.runs):
        runs["client"].append(measure(args.statement, args.tree))
        runs["baseline"].append(measure("import socket, json", args.tree))
    for name, results in runs.items():
        ms = statistics.median(float(str(r["ms"])) for r in results)
        rss = statistics.median(float(str(r["rss_mb"])) for r in results)
        modules = statistics.median(int(str(r["modules"])) for r in results)
        print(
            f"{name:9s} import {ms:7.1f} ms   peak RSS {rss:6.1f} MB   modules {modules:5.0f}   heavy {results[0]['heavy']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
