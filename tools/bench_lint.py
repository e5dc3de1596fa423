#!/usr/bin/env python3
"""Benchmark ``drivegate lint``: the shipped policies, and a generated 500-rule policy.

    python tools/bench_lint.py                 # shipped policies + 500 rules, 5 repeats
    python tools/bench_lint.py --rules 200 --repeats 3
    python tools/bench_lint.py --write big.yaml  # also keep the generated policy

``bench_lint(repeats, rules, seed, log)`` is the entry point for ``tools/bench.py``.  Each
figure is the median wall time of ``repeats`` runs of ``lint_file`` (load, parse, compile,
analyse, format nothing), in process.  The generated policy is realistic in shape: rules
over driving state, workload, speed band, content, modality, category, priority, kind,
text length, list size, speed, steering angle and turn signal, with the thresholds real
policies use (30 characters, 6 items, 10/60 km/h, ...), 2 to 4 tests per rule, sometimes
under ``any``/``not``, outcomes weighted towards allow and deny, a few critical-priority
exceptions.  Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safety.workflow.lint import lint_file  # noqa: E402

SHIPPED = ("policies/default.yaml", "policies/speed-bands.yaml")
CATEGORIES = ("message", "call", "meeting", "calendar", "approval", "document", "navigation", "media", "system")
CONTENTS = ("text", "image", "video", "list", "keyboard", "none")
MODALITIES = ("visual", "audio", "voice", "manual")


def _test(rng: random.Random) -> tuple[str, Any]:
    """One realistic field test."""
    kind = rng.choices(
        (
            "driving_state",
            "workload",
            "speed_band",
            "content",
            "modality",
            "category",
            "priority",
            "kind",
            "text_length",
            "list_items",
            "speed",
            "steering_angle",
            "turn_signal",
        ),
        weights=(10, 6, 4, 9, 8, 5, 4, 2, 4, 3, 3, 2, 1),
    )[0]
    if kind == "driving_state":
        return kind, rng.choice(({"ne": "parked"}, "moving", "stationary", ["stationary", "moving"]))
    if kind == "workload":
        return kind, rng.choice(("low", "high"))
    if kind == "speed_band":
        return kind, rng.choice(("crawl", "city", "highway", ["city", "highway"]))
    if kind == "content":
        return kind, rng.choice(CONTENTS) if rng.random() < 0.6 else rng.sample(CONTENTS, 2)
    if kind == "modality":
        return kind, rng.choice(MODALITIES) if rng.random() < 0.6 else rng.sample(MODALITIES, 2)
    if kind == "category":
        return kind, rng.sample(CATEGORIES, rng.randint(1, 3))
    if kind == "priority":
        return kind, rng.choice(({"ne": "critical"}, "high", ["normal", "low"], "critical"))
    if kind == "kind":
        return kind, rng.choice(("notification", "interaction"))
    if kind == "text_length":
        return kind, {rng.choice(("gt", "le")): rng.choice((20, 30, 60, 120, 200))}
    if kind == "list_items":
        return kind, {rng.choice(("gt", "le")): rng.choice((3, 6, 12, 21))}
    if kind == "speed":
        return kind, {rng.choice(("gt", "lt")): rng.choice((5, 10, 30, 60, 100, 130))}
    if kind == "steering_angle":
        return kind, {rng.choice(("gt", "lt")): rng.choice((-90, -45, 45, 90))}
    return kind, ["left", "right"]


def _condition(rng: random.Random) -> dict[str, Any]:
    when: dict[str, Any] = {}
    while len(when) < rng.randint(2, 4):
        name, test = _test(rng)
        when.setdefault(name, test)
    if rng.random() < 0.15:
        a, b = _test(rng), _test(rng)
        when["any"] = [{a[0]: a[1]}, {b[0]: b[1]}]
    elif rng.random() < 0.08:
        name, test = _test(rng)
        if name not in when:
            when["not"] = {name: test}
    return when


def generate_policy(rules: int, seed: int = 1) -> str:
    """The YAML text of a realistic policy with ``rules`` rules."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(rules):
        outcome = rng.choices(("allow", "degrade", "defer", "deny"), weights=(35, 25, 15, 25))[0]
        rule: dict[str, Any] = {
            "id": f"r{i:03d}-{outcome}",
            "ref": f"GEN-{rng.choice(('NHTSA-VM', 'AAOS', 'ESoP', 'AAM'))} §{rng.randint(1, 9)}.{rng.randint(1, 9)}",
            "when": _condition(rng),
            "outcome": outcome,
        }
        if outcome == "degrade":
            rule["constraints"] = rng.choice(
                ({"modality": "voice"}, {"max_text_length": 120}, {"max_list_items": 6}, {"input": "voice"})
            )
        elif outcome == "defer":
            rule["constraints"] = {"retry_after_ms": rng.choice((1000, 3000)), "until": "workload low"}
        out.append(rule)
    for j in range(max(1, rules // 50)):
        out.append(
            {
                "id": f"x{j:02d}-critical",
                "ref": "ESoP 5.2 (safety-relevant information given priority)",
                "when": {"priority": "critical", "content": rng.choice(CONTENTS)},
                "exception": True,
                "outcome": "degrade",
                "constraints": {"modality": "voice"},
            }
        )
    doc = {
        "version": 1,
        "name": f"generated-{rules}",
        "default": "deny",
        "state": {
            "standstill": {"on_below": 0.5, "off_above": 2.0},
            "workload": {
                "hold_ms": 3000,
                "high_when": [
                    {"signal": "steering_angle", "abs": True, "on_above": 90, "off_below": 45},
                    {"signal": "gear", "in": ["R"]},
                ],
            },
            "speed_bands": {
                "hysteresis": 2.0,
                "bands": [{"name": "crawl", "below": 10}, {"name": "city", "below": 60}, {"name": "highway"}],
            },
        },
        "rules": out,
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@dataclass
class LintTiming:
    """Median lint time of one policy file, with what the analysis did."""

    name: str
    rules: int
    seconds: list[float]
    mode: str
    cells: int
    regions: int
    findings: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_lint(path: Path, name: str, repeats: int) -> LintTiming:
    """Lint ``path`` ``repeats`` times; keep each wall time."""
    seconds = []
    report = None
    for _ in range(repeats):
        start = time.perf_counter()
        report = lint_file(path)
        seconds.append(time.perf_counter() - start)
    assert report is not None and report.analysis is not None, f"{path} did not load"
    text = path.read_text(encoding="utf-8")
    return LintTiming(
        name,
        text.count("\n  - id:") + text.count("\n- id:"),
        seconds,
        report.analysis.mode,
        report.analysis.cells,
        report.analysis.regions,
        len(report.findings),
    )


def bench_lint(
    repeats: int = 5, rules: int = 500, seed: int = 1, log: Callable[[str], None] = print, keep: Path | None = None
) -> list[LintTiming]:
    """Time lint of the shipped policies and of a generated ``rules``-rule policy."""
    timings = [time_lint(ROOT / p, p, repeats) for p in SHIPPED]
    with tempfile.TemporaryDirectory() as tmp:
        path = keep or Path(tmp) / f"generated-{rules}.yaml"
        path.write_text(generate_policy(rules, seed), encoding="utf-8")
        timings.append(time_lint(path, f"generated {rules}-rule policy (seed {seed})", repeats))
    for t in timings:
        log(
            f"lint {t.name}: median {t.median * 1000:.1f} ms over {len(t.seconds)} runs "
            f"(min {min(t.seconds) * 1000:.1f}, max {max(t.seconds) * 1000:.1f}); {t.mode} analysis, "
            f"{t.cells:.3g} cell combinations, {t.regions} regions, {t.findings} findings"
        )
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", type=Path, help="keep the generated policy here")
    args = parser.parse_args(argv)
    bench_lint(args.repeats, args.rules, args.seed, keep=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
