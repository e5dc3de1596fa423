#!/usr/bin/env python3
"""Benchmark DriveGate: ``Engine.decide`` latency and replay throughput against a cantools baseline.

    python tools/bench.py                      # 1,000,000-frame replay, 200,000 decides
    python tools/bench.py --frames 200000      # a smaller log
    python tools/bench.py --quick              # CI smoke size: 50,000 frames, 20,000 decides
    python tools/bench.py --no-service         # the engine only (1 and 2 below)
    python tools/bench.py --service-only       # the decision service only (4 below)

Everything comes from one run in one process, because the machine it runs on is shared and noisy:
each figure is the median of several repeats, and the replay ratio compares runs interleaved
round by round (ours, then the baseline), so drifting background load hits both sides alike.

1. ``decide()`` latency: the demo sedan and the default policy, state fed from the scripted drive
   (20 s first, then every frame up to ``now`` between calls, untimed), ``now`` advancing 1 ms per
   call, requests cycling through the built-in probes and variations of their text length and list
   size.  Each call is timed alone with ``perf_counter_ns``; percentiles are reported with the
   garbage collector enabled and disabled (p99 is where GC pauses show).
2. Replay throughput: a candump log written by ``tools/gen_drive.py``, replayed by
   ``drivegate replay`` (in process, through ``safety.cli.main.main``) and by ``replay_file``; and by the
   baseline a user would write without DriveGate's fast path: ``can.LogReader`` for reading,
   ``cantools`` ``decode_message`` for decoding, then the same ``VehicleState`` and ``Evaluator``.
   Both must decode the same frames and write the same timeline (checked before timing).
3. A Markdown table of every figure, with the machine, to paste into the README.
4. Replay as a user times it (``tools/bench_replay.py``, also runnable alone; not with ``--quick``):
   ``drivegate replay`` columnar and streaming and the python-can + cantools baseline, whole
   commands with process start, on a 10,000,000-frame candump log and a BLF log.
5. The decision service (``tools/bench_service.py``, also runnable alone): a ``drivegate serve``
   process replaying a saturated 1 Mbit/s bus through the virtual bus, 1 and 16 client processes:
   round trips, decisions per second, frames dropped, server CPU, with its own table.

Numbers depend on the machine; nothing here asserts a timing.  The exit status is 1 only when a
sanity check fails (frame counts or timelines disagree, a decision failed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.metadata
import io
import itertools
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout, installed or not

import can  # noqa: E402
import cantools  # noqa: E402
from cantools.database.namedsignalvalue import NamedSignalValue  # noqa: E402

from safety.audit.decisionlog import DecisionLog  # noqa: E402
from safety.cli import main as cli  # noqa: E402
from safety.decide.evaluate import Evaluator  # noqa: E402
from safety.demo.drive import scripted_drive  # noqa: E402
from safety.engine.engine import Engine  # noqa: E402
from safety.policy import load_policy  # noqa: E402
from safety.replay.timeline import BUILTIN_PROBES, replay_file  # noqa: E402
from safety.vehicle.profile import SignalSource, load_profile  # noqa: E402
from safety.vehicle.state import VehicleState  # noqa: E402

VEHICLE = ROOT / "dbc" / "demo_sedan.yaml"
POLICY = ROOT / "policies" / "default.yaml"
GEN_DRIVE = ROOT / "tools" / "gen_drive.py"

# Floors from the performance issue.
P99_FLOOR_US = 20.0
P99_LOGGED_FLOOR_US = 30.0  # issue 3: decide() with budgets and the decision log enabled
LOGGED = "budgets+log"
RATIO_FLOOR = 3.0

WARM_S = 20.0  # drive time fed before the first timed decide: the car is moving by then
DECIDE_STEP_S = 0.001  # ``now`` advances this much per decide call
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
# Largest log on which ours and the baseline are compared line by line (untimed): two passes
# of the 136 s drive, so the check crosses the point where the drive repeats.
CHECK_FRAMES = 110_000


# --------------------------------------------------------------------------- decide latency


def decide_requests() -> list[dict[str, Any]]:
    """The built-in probes plus variations around the policy's text and list limits."""
    requests = [dict(p) for p in BUILTIN_PROBES]
    text = next(p for p in BUILTIN_PROBES if p["id"] == "message-text")
    listing = next(p for p in BUILTIN_PROBES if p["id"] == "list")
    # 30 characters and 6 items are the default policy's limits: test both sides of each.
    for length in (5, 30, 31, 140, 1000):
        requests.append({**text, "id": f"text-{length}", "text_length": length})
    for items in (1, 6, 7, 50):
        requests.append({**listing, "id": f"list-{items}", "list_items": items})
    # Optional fields left out: the evaluator must consider every value they could take.
    requests.append({k: v for k, v in text.items() if k not in ("text_length", "id")})
    return requests


def drive_messages(until_s: float) -> list[can.Message]:
    """The scripted drive (repeated as needed) as ``can.Message`` objects up to drive time ``until_s``."""
    return list(itertools.takewhile(lambda m: m.timestamp <= until_s, scripted_drive(repeat=None)))


def percentile(ordered: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))])


@dataclass
class LatencyRun:
    """Percentiles (ns) of one timed run of decide calls."""

    stats: dict[str, float]
    outcomes: dict[str, int]


def time_decides(
    messages: Sequence[can.Message],
    requests: Sequence[Mapping[str, Any]],
    calls: int,
    gc_enabled: bool,
    decision_log: Path | None = None,
    vehicle: Path = VEHICLE,
) -> LatencyRun:
    """One fresh engine, fed ``WARM_S`` of drive, then ``calls`` timed decides with frames in between.

    With ``decision_log`` every decision is also written (flushed) to that file, and the
    requests carry ``glance_ms``/``task_id`` so the glance budget is at work too.
    """
    if decision_log is not None:
        engine = Engine.load(VEHICLE, POLICY, decision_log=DecisionLog(decision_log, max_bytes=200_000_000))
        requests = [{**r, "glance_ms": 700, "task_id": f"task-{i % 4}"} for i, r in enumerate(requests)]
    else:
        engine = Engine.load(vehicle, POLICY)
    i = 0
    n_messages = len(messages)
    while i < n_messages and messages[i].timestamp <= WARM_S:
        engine.on_frame(messages[i])
        i += 1
    # One untimed pass so the first timed calls do not pay for first-time bytecode specialisation.
    for request in requests:
        engine.decide(request, now=WARM_S)
    samples = [0] * calls
    outcomes: dict[str, int] = {}
    n_requests = len(requests)
    clock = time.perf_counter_ns
    decide = engine.decide
    gc.collect()
    if not gc_enabled:
        gc.disable()
    try:
        for k in range(calls):
            now = WARM_S + (k + 1) * DECIDE_STEP_S
            # Frames arrive between decisions, as on the bus; feeding them is not timed.
            while i < n_messages and messages[i].timestamp <= now:
                engine.on_frame(messages[i])
                i += 1
            request = requests[k % n_requests]
            start = clock()
            decision = decide(request, now=now)
            samples[k] = clock() - start
            key = (
                decision.rules[0]
                if decision.rules and decision.rules[0] in ("internal-error", "request-invalid")
                else decision.outcome.value
            )
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        gc.enable()
    samples.sort()
    stats = {name: percentile(samples, p) for name, p in PERCENTILES}
    stats["mean"] = statistics.fmean(samples)
    stats["max"] = float(samples[-1])
    return LatencyRun(stats, outcomes)


def timer_overhead_ns(rounds: int = 200_000) -> float:
    """Median cost of an empty ``perf_counter_ns`` pair: the floor under every latency sample."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(rounds):
        start = clock()
        samples.append(clock() - start)
    return float(statistics.median(samples))


@dataclass
class LatencyResult:
    calls: int
    repeats: int
    by_mode: dict[str, dict[str, float]]  # mode -> stat -> median over repeats (µs)
    p99_spread: dict[str, tuple[float, float]]  # mode -> (min, max) p99 over repeats (µs)
    outcomes: dict[str, int]
    timer_ns: float


def bench_decide(calls: int, repeats: int, log: Callable[[str], None]) -> LatencyResult:
    messages = drive_messages(WARM_S + calls * DECIDE_STEP_S + 1.0)
    requests = decide_requests()
    log(
        f"decide(): {calls} calls x {repeats} repeats per GC mode, {len(requests)} request kinds, "
        f"{len(messages)} drive frames fed between calls"
    )
    runs: dict[str, list[LatencyRun]] = {"gc enabled": [], "gc disabled": [], LOGGED: []}
    for r in range(repeats):
        # Rotate which mode goes first so none always runs in the warmer/cooler slot.
        modes = ("gc enabled", "gc disabled", LOGGED)
        modes = modes[r % 3 :] + modes[: r % 3]
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="drivegate-bench-log-") as tmp:
                run = time_decides(
                    messages,
                    requests,
                    calls,
                    gc_enabled=(mode != "gc disabled"),
                    decision_log=Path(tmp) / "decisions.jsonl" if mode == LOGGED else None,
                )
            runs[mode].append(run)
            log(
                f"  repeat {r + 1} {mode:<11}: p50 {run.stats['p50'] / 1000:6.2f} µs  "
                f"p99 {run.stats['p99'] / 1000:6.2f} µs  p99.9 {run.stats['p99.9'] / 1000:6.2f} µs  "
                f"max {run.stats['max'] / 1000:8.1f} µs"
            )
    by_mode = {
        mode: {stat: statistics.median(run.stats[stat] for run in mode_runs) / 1000 for stat in mode_runs[0].stats}
        for mode, mode_runs in runs.items()
    }
    spread = {
        mode: (min(run.stats["p99"] for run in mode_runs) / 1000, max(run.stats["p99"] for run in mode_runs) / 1000)
        for mode, mode_runs in runs.items()
    }
    outcomes: dict[str, int] = {}
    for run in runs["gc enabled"]:
        for key, count in run.outcomes.items():
            outcomes[key] = outcomes.get(key, 0) + count
    return LatencyResult(calls, repeats, by_mode, spread, outcomes, timer_overhead_ns())


# --------------------------------------------------------------------------- replay: ours


@dataclass
class ReplayRun:
    seconds: float
    frames_read: int
    frames_decoded: int
    lines: int


_SUMMARY_COUNTS = re.compile(r"frames read: (\d+), decoded: (\d+).*?timeline lines: (\d+)", re.DOTALL)


def run_cli(log: Path, out: str) -> ReplayRun:
    """``drivegate replay LOG --vehicle ... --policy ... --out OUT``, in process, stderr captured."""
    argv = ["replay", str(log), "--vehicle", str(VEHICLE), "--policy", str(POLICY), "--out", out]
    captured = io.StringIO()
    gc.collect()
    start = time.perf_counter()
    with contextlib.redirect_stderr(captured):
        status = cli.main(argv)
    seconds = time.perf_counter() - start
    match = _SUMMARY_COUNTS.search(captured.getvalue())
    if status != 0 or match is None:
        raise RuntimeError(f"drivegate replay failed (exit {status}):\n{captured.getvalue()}")
    read, decoded, lines = (int(g) for g in match.groups())
    return ReplayRun(seconds, read, decoded, lines)


def run_replay_file(log: Path, out: TextIO) -> ReplayRun:
    """``Engine.load`` + ``replay_file``: the library call the CLI makes."""
    gc.collect()
    start = time.perf_counter()
    engine = Engine.load(VEHICLE, POLICY)
    summary = replay_file(engine, log, BUILTIN_PROBES, out)
    seconds = time.perf_counter() - start
    return ReplayRun(seconds, summary.frames_read, summary.frames_decoded, summary.lines)


# --------------------------------------------------------------------------- replay: baseline


@dataclass
class BaselineStats:
    frames_read: int = 0
    frames_decoded: int = 0
    lines: int = 0
    invalid: dict[str, int] = field(default_factory=dict)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "min": min,
    "max": max,
    "mean": statistics.fmean,
}


def baseline_replay(
    log: Path, vehicle: Path, policy_path: Path, probes: Iterable[Mapping[str, Any]], out: TextIO
) -> BaselineStats:
    """What a user would write with python-can and cantools, on DriveGate's state and policy logic.

    Read with ``can.LogReader``; decode every mapped frame with ``Database.decode_message``; turn
    the decoded signals into canonical values as the profile says; feed a ``VehicleState`` built
    as the Engine builds it; re-decide the probes whenever the state's change counter moves, and
    write a JSONL line whenever the driving state, workload or a decision changed.
    """
    profile = load_profile(vehicle)
    policy = load_policy(policy_path)
    db = cantools.database.load_file(profile.dbc_file, strict=False)
    assert isinstance(db, cantools.database.can.Database)
    state = VehicleState(
        profile.max_ages(), policy.state_config, watch=policy.thresholds, watch_values=policy.watched_values
    )
    evaluator = Evaluator(policy)
    probes = [dict(p) for p in probes]

    # Per frame id, the canonical signals it carries.  Mapped (enum/bool) signals are looked up
    # by the decoded value as text: the choice name for DBC value tables ("DRIVE"), else the raw
    # number ("1").
    by_id: dict[int, list[tuple[SignalSource, dict[str, Any] | None]]] = {}
    for src in profile.sources.values():
        names: dict[str, Any] | None = None
        if src.value_map is not None:
            choices: Mapping[int, Any] = (
                db.get_message_by_frame_id(src.frame_id).get_signal_by_name(src.signals[0]).choices or {}
            )
            names = {str(choices.get(raw, raw)): value for raw, value in src.value_map.items()}
        by_id.setdefault(src.frame_id, []).append((src, names))

    stats = BaselineStats()
    last_changes = -1
    previous: tuple[Any, ...] | None = None
    last_t = -math.inf

    def observe(t: float) -> None:
        nonlocal last_changes, previous
        last_changes = state.changes
        snap = state.snapshot(t)
        outcomes = {p["id"]: evaluator.verdict(snap.values, p).outcome.value for p in probes}
        current = (snap.driving_state, snap.workload, outcomes)
        if current == previous:
            return
        previous = current
        values = snap.values
        line = {
            "t": round(t, 6),
            "speed": _rounded(values.get("speed")),
            "gear": values.get("gear"),
            "steering_angle": _rounded(values.get("steering_angle")),
            "driving_state": None if snap.driving_state == "unknown" else snap.driving_state,
            "workload": None if snap.workload == "unknown" else snap.workload,
            "decisions": outcomes,
        }
        out.write(json.dumps(line, separators=(", ", ": ")) + "\n")
        stats.lines += 1

    for msg in can.LogReader(str(log)):
        stats.frames_read += 1
        if msg.is_error_frame or msg.is_remote_frame:
            continue
        t = msg.timestamp
        # A signal going stale (or a workload hold ending) between two frames does so at its
        # own time, just after its limit: observe it there, as DriveGate's replay does.
        while last_t < state.next_expiry < t:
            when = math.nextafter(state.next_expiry, math.inf)
            state.expire(when)
            if state.changes != last_changes:
                observe(when)
        last_t = t
        sources = by_id.get(msg.arbitration_id)
        if sources is not None:
            # python-can hands out bytearray, which cantools decodes as is (its hints say bytes).
            decoded: Any = db.decode_message(msg.arbitration_id, msg.data)  # type: ignore[arg-type]
            stats.frames_decoded += 1
            for src, names in sources:
                if names is not None:
                    raw = decoded.get(src.signals[0])
                    if raw is None:  # a multiplexed signal not on this page
                        continue
                    value = names.get(str(raw))
                    state.update(src.name, value, t, invalid=value is None)
                    continue
                parts = [decoded.get(s) for s in src.signals]
                if any(p is None for p in parts):
                    continue
                if any(isinstance(p, NamedSignalValue) for p in parts):  # e.g. SNA: not available
                    state.update(src.name, None, t, invalid=True)
                    continue
                value = _COMBINE[src.combine](parts) * src.scale + src.offset
                state.update(src.name, -value if src.invert else value, t)
        state.expire(t)
        if state.changes == last_changes:
            continue
        observe(t)
    stats.invalid = dict(state.counters.invalid)
    return stats


def run_baseline(log: Path, out: TextIO) -> ReplayRun:
    gc.collect()
    start = time.perf_counter()
    stats = baseline_replay(log, VEHICLE, POLICY, BUILTIN_PROBES, out)
    seconds = time.perf_counter() - start
    return ReplayRun(seconds, stats.frames_read, stats.frames_decoded, stats.lines)


# --------------------------------------------------------------------------- replay: driver


def generate_log(frames: int, path: Path) -> None:
    """Write the demo drive as a candump log with ``tools/gen_drive.py``, as an engineer would."""
    subprocess.run([sys.executable, str(GEN_DRIVE), "--frames", str(frames), "--out", str(path), "--quiet"], check=True)


@dataclass
class CheckResult:
    frames: int
    ours_decoded: int
    baseline_decoded: int
    ours_lines: int
    baseline_lines: int
    identical: bool
    ours_invalid: dict[str, int]
    baseline_invalid: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.identical and self.ours_decoded == self.baseline_decoded


def check_equivalence(log: Path, frames: int) -> CheckResult:
    """Untimed: ours and the baseline must decode the same frames and write the same timeline."""
    ours_out, base_out = io.StringIO(), io.StringIO()
    engine = Engine.load(VEHICLE, POLICY)
    summary = replay_file(engine, log, BUILTIN_PROBES, ours_out)
    base = baseline_replay(log, VEHICLE, POLICY, BUILTIN_PROBES, base_out)
    return CheckResult(
        frames,
        summary.frames_decoded,
        base.frames_decoded,
        summary.lines,
        base.lines,
        ours_out.getvalue() == base_out.getvalue(),
        summary.invalid,
        base.invalid,
    )


@dataclass
class ThroughputResult:
    frames: int
    repeats: int
    cli: list[ReplayRun]
    library: list[ReplayRun]
    baseline: list[ReplayRun]
    check: CheckResult

    @staticmethod
    def fps(runs: Sequence[ReplayRun]) -> float:
        return statistics.median(run.frames_read / run.seconds for run in runs)

    @property
    def ratio(self) -> float:
        return self.fps(self.cli) / self.fps(self.baseline)

    @property
    def round_ratios(self) -> list[float]:
        """Per-round ratios: each pair ran back to back, so under the same background load."""
        return [b.seconds / c.seconds for c, b in zip(self.cli, self.baseline, strict=True)]

    @property
    def counts_agree(self) -> bool:
        decoded = {run.frames_decoded for run in (*self.cli, *self.library, *self.baseline)}
        read = {run.frames_read for run in (*self.cli, *self.library, *self.baseline)}
        return len(decoded) == 1 and read == {self.frames}


def bench_replay(frames: int, repeats: int, workdir: Path, log: Callable[[str], None]) -> ThroughputResult:
    path = workdir / "drive.log"
    start = time.perf_counter()
    generate_log(frames, path)
    log(f"replay: wrote {frames} frames ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")

    check_frames = min(frames, CHECK_FRAMES)
    check_path = path if check_frames == frames else workdir / "check.log"
    if check_path != path:
        generate_log(check_frames, check_path)
    check = check_equivalence(check_path, check_frames)
    log(
        f"  equivalence on {check_frames} frames: decoded ours {check.ours_decoded} / baseline "
        f"{check.baseline_decoded}, timeline lines {check.ours_lines} / {check.baseline_lines}, "
        f"identical: {'yes' if check.identical else 'NO'}"
    )

    cli_runs: list[ReplayRun] = []
    lib_runs: list[ReplayRun] = []
    base_runs: list[ReplayRun] = []
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        for r in range(repeats):
            # Interleaved: a burst of background load lands on one round, not on one contender.
            cli_runs.append(run_cli(path, os.devnull))
            lib_runs.append(run_replay_file(path, devnull))
            base_runs.append(run_baseline(path, devnull))
            log(
                f"  round {r + 1}: drivegate replay {frames / cli_runs[-1].seconds:10,.0f} frames/s   "
                f"replay_file {frames / lib_runs[-1].seconds:10,.0f} frames/s   "
                f"baseline {frames / base_runs[-1].seconds:10,.0f} frames/s"
            )
    return ThroughputResult(frames, repeats, cli_runs, lib_runs, base_runs, check)


# --------------------------------------------------------------------------- integrity cost


def profile_without_e2e(workdir: Path) -> Path:
    """The demo sedan's profile with its ``e2e:`` section removed (and its DBC by absolute path)."""
    text = VEHICLE.read_text(encoding="utf-8")
    text = text.split("\ne2e:")[0].replace("dbc: demo_sedan.dbc", f"dbc: {VEHICLE.parent / 'demo_sedan.dbc'}")
    path = workdir / "demo_sedan_no_e2e.yaml"
    path.write_text(text, encoding="utf-8")
    assert not Engine.load(path, POLICY).profile.e2e
    return path


@dataclass
class IntegrityResult:
    frames: int
    with_e2e_fps: float
    without_e2e_fps: float
    round_ratios: list[float]
    decide_p50_with_us: float
    decide_p50_without_us: float
    decide_p99_with_us: float
    decide_p99_without_us: float

    @property
    def replay_cost(self) -> float:
        """Replay time with the checks over without (1.10 = 10 % slower), median of the rounds."""
        return statistics.median(self.round_ratios)


def bench_integrity(
    log_path: Path, frames: int, decides: int, repeats: int, workdir: Path, log: Callable[[str], None]
) -> IntegrityResult:
    """Replay and decide() with the demo profile's five E2E-protected messages, and without them.

    The same log, interleaved rounds (with, then without), medians: what the checks cost.
    """
    plain = profile_without_e2e(workdir)
    ratios: list[float] = []
    with_fps: list[float] = []
    without_fps: list[float] = []
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        for r in range(repeats):
            timed = []
            for vehicle in (VEHICLE, plain):
                gc.collect()
                start = time.perf_counter()
                summary = replay_file(Engine.load(vehicle, POLICY), log_path, BUILTIN_PROBES, devnull)
                timed.append(time.perf_counter() - start)
                assert summary.frames_read == frames
            with_fps.append(frames / timed[0])
            without_fps.append(frames / timed[1])
            ratios.append(timed[0] / timed[1])
            log(
                f"  round {r + 1}: with E2E {with_fps[-1]:10,.0f} frames/s   without {without_fps[-1]:10,.0f} "
                f"frames/s   ({ratios[-1]:.3f}x the time)"
            )
    messages = drive_messages(WARM_S + decides * DECIDE_STEP_S + 1.0)
    requests = decide_requests()
    with_runs: list[LatencyRun] = []
    without_runs: list[LatencyRun] = []
    for _ in range(repeats):
        with_runs.append(time_decides(messages, requests, decides, gc_enabled=True))
        without_runs.append(time_decides(messages, requests, decides, gc_enabled=True, vehicle=plain))

    def median_of(runs: list[LatencyRun], stat: str) -> float:
        return statistics.median(run.stats[stat] for run in runs) / 1000

    return IntegrityResult(
        frames,
        statistics.median(with_fps),
        statistics.median(without_fps),
        ratios,
        median_of(with_runs, "p50"),
        median_of(without_runs, "p50"),
        median_of(with_runs, "p99"),
        median_of(without_runs, "p99"),
    )


# --------------------------------------------------------------------------- report


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": str(os.cpu_count()),
        "load average (1/5/15 min)": load,
        "python-can / cantools": f"{_version('python-can')} / {_version('cantools')}",
    }


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def markdown_table(
    info: Mapping[str, str], lat: LatencyResult, thr: ThroughputResult, integrity: IntegrityResult
) -> str:
    on, off = lat.by_mode["gc enabled"], lat.by_mode["gc disabled"]
    p99 = on["p99"]
    rows: list[tuple[str, str]] = [
        ("Machine", f"{info['platform']}, {info['cpus']} CPUs, {info['python']}"),
        ("Date", info["date"]),
        ("Load average at start", info["load average (1/5/15 min)"]),
        ("python-can / cantools", info["python-can / cantools"]),
        ("`decide()` calls", f"{lat.calls:,} x {lat.repeats} repeats per GC mode (medians of repeats)"),
    ]
    for label, stats in (("GC on", on), ("GC off", off), ("with glance budget + decision log", lat.by_mode[LOGGED])):
        rows.append(
            (
                f"`decide()` {label}: p50 / p90 / p99 / p99.9 / mean",
                " / ".join(f"{stats[k]:.2f}" for k in ("p50", "p90", "p99", "p99.9", "mean")) + " µs",
            )
        )
    rows += [
        ("`decide()` p99 floor (≤ 20 µs, GC on)", f"{p99:.2f} µs: {_met(p99 <= P99_FLOOR_US)}"),
        (
            "`decide()` p99 with budgets + log (floor ≤ 30 µs)",
            f"{lat.by_mode[LOGGED]['p99']:.2f} µs: {_met(lat.by_mode[LOGGED]['p99'] <= P99_LOGGED_FLOOR_US)}",
        ),
        ("Timer overhead in each sample", f"{lat.timer_ns:.0f} ns"),
        (
            "Replay log",
            f"{thr.frames:,} candump frames ({thr.cli[0].frames_decoded:,} decoded), median of {thr.repeats} rounds",
        ),
        ("`drivegate replay` (in process)", f"{thr.fps(thr.cli):,.0f} frames/s"),
        ("`Engine.load` + `replay_file`", f"{thr.fps(thr.library):,.0f} frames/s"),
        ("Baseline (`can.LogReader` + cantools `decode_message`)", f"{thr.fps(thr.baseline):,.0f} frames/s"),
        (
            "Ratio ours / baseline (floor ≥ 3x)",
            f"{thr.ratio:.2f}x: {_met(thr.ratio >= RATIO_FLOOR)} "
            f"(per-round median {statistics.median(thr.round_ratios):.2f}x)",
        ),
        ("Same frames decoded, same timeline", "yes" if thr.check.ok and thr.counts_agree else "NO"),
        (
            "Replay with / without the E2E checks (5 protected messages)",
            f"{integrity.with_e2e_fps:,.0f} / {integrity.without_e2e_fps:,.0f} frames/s: "
            f"{integrity.replay_cost:.3f}x the time (median of per-round ratios)",
        ),
        (
            "`decide()` p50 / p99 with / without the E2E checks",
            f"{integrity.decide_p50_with_us:.2f} / {integrity.decide_p99_with_us:.2f} vs "
            f"{integrity.decide_p50_without_us:.2f} / {integrity.decide_p99_without_us:.2f} µs",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    lines = [f"| {'Measure':<{width}} | {'Result':<{vwidth}} |", f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|"]
    lines += [f"| {k:<{width}} | {v:<{vwidth}} |" for k, v in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmark decide() latency and replay throughput against a cantools baseline.",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="frames in the replay log (default 1,000,000; --quick: 50,000)",
    )
    parser.add_argument(
        "--decides",
        type=int,
        default=None,
        metavar="N",
        help="timed decide() calls per repeat (default 200,000; --quick: 20,000)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="repeats of each measurement; medians are reported (default 5; --quick: 3)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run for CI smoke tests")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--no-service", action="store_true", help="skip the decision service benchmark")
    parts.add_argument("--service-only", action="store_true", help="only the decision service benchmark")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    frames = args.frames or (50_000 if args.quick else 1_000_000)
    decides = args.decides or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (3 if args.quick else 5)
    if min(frames, decides, repeats) <= 0:
        print("bench.py: --frames, --decides and --repeats must be positive", file=sys.stderr)
        return 2

    def log(text: str) -> None:
        print(text, flush=True)

    if args.service_only:
        return bench_service(args.quick)
    info = machine()
    log("DriveGate benchmark" + (" (quick)" if args.quick else ""))
    for key, value in info.items():
        log(f"  {key}: {value}")

    began = time.perf_counter()
    lat = bench_decide(decides, repeats, log)
    with tempfile.TemporaryDirectory(prefix="drivegate-bench-") as tmp:
        thr = bench_replay(frames, repeats, Path(tmp), log)
        log(f"integrity checks (E2E on 5 of the 8 messages), {frames} frames, interleaved rounds:")
        integrity = bench_integrity(Path(tmp) / "drive.log", frames, decides, repeats, Path(tmp), log)

    on, off = lat.by_mode["gc enabled"], lat.by_mode["gc disabled"]
    log("")
    log(
        f"decide() latency, median of {repeats} repeats x {decides} calls (timer overhead {lat.timer_ns:.0f} ns "
        "included in each sample):"
    )
    logged = lat.by_mode[LOGGED]
    for mode, stats in (("gc enabled", on), ("gc disabled", off), (LOGGED, logged)):
        lo, hi = lat.p99_spread[mode]
        log(
            f"  {mode:<11}: p50 {stats['p50']:.2f}  p90 {stats['p90']:.2f}  p99 {stats['p99']:.2f}  "
            f"p99.9 {stats['p99.9']:.2f}  mean {stats['mean']:.2f} µs   (p99 over repeats {lo:.2f}..{hi:.2f})"
        )
    log(f"  decisions: {', '.join(f'{k} {v}' for k, v in sorted(lat.outcomes.items()))}")
    log(
        f"decide() p99 (gc enabled): {on['p99']:.2f} µs  [floor <= {P99_FLOOR_US:g} µs: {_met(on['p99'] <= P99_FLOOR_US)}]"
    )
    log(f"decide() p99 (gc disabled): {off['p99']:.2f} µs")
    log(
        f"decide() p99 with budgets and decision log: {logged['p99']:.2f} µs  "
        f"[floor <= {P99_LOGGED_FLOOR_US:g} µs: {_met(logged['p99'] <= P99_LOGGED_FLOOR_US)}]"
    )
    log("")
    log(f"replay throughput, {frames} frames, median of {repeats} interleaved rounds:")
    log(f"  drivegate replay (cli.main, in process): {thr.fps(thr.cli):12,.0f} frames/s")
    log(f"  Engine.load + replay_file:               {thr.fps(thr.library):12,.0f} frames/s")
    log(f"  baseline (can.LogReader + cantools):     {thr.fps(thr.baseline):12,.0f} frames/s")
    log(
        f"  frames decoded: ours {thr.cli[0].frames_decoded}, baseline {thr.baseline[0].frames_decoded} "
        f"({'agree' if thr.counts_agree else 'DISAGREE'}); timeline lines: ours {thr.cli[0].lines}, "
        f"baseline {thr.baseline[0].lines}"
    )
    if thr.check.ours_invalid != thr.check.baseline_invalid:
        log(
            f"  note: 'not available' samples differ (ours {thr.check.ours_invalid}, baseline "
            f"{thr.check.baseline_invalid})"
        )
    log(
        f"  per-round ratios: {', '.join(f'{x:.2f}x' for x in thr.round_ratios)} "
        f"(median {statistics.median(thr.round_ratios):.2f}x)"
    )
    log(f"replay ratio ours/baseline: {thr.ratio:.2f}x  [floor >= {RATIO_FLOOR:g}x: {_met(thr.ratio >= RATIO_FLOOR)}]")
    log(
        f"integrity checks: replay {integrity.with_e2e_fps:,.0f} frames/s with E2E, "
        f"{integrity.without_e2e_fps:,.0f} without ({integrity.replay_cost:.3f}x the time, median of "
        f"{', '.join(f'{x:.3f}' for x in integrity.round_ratios)}); decide() p50 {integrity.decide_p50_with_us:.2f} "
        f"vs {integrity.decide_p50_without_us:.2f} µs, p99 {integrity.decide_p99_with_us:.2f} vs "
        f"{integrity.decide_p99_without_us:.2f} µs"
    )
    log(f"(total bench time {time.perf_counter() - began:.0f} s)")
    log("")
    log(markdown_table(info, lat, thr, integrity))

    problems = []
    if not thr.check.ok:
        problems.append("ours and the baseline disagree on decoded frames or the timeline")
    if not thr.counts_agree:
        problems.append("the timed runs disagree on frame counts")
    failed = {k: v for k, v in lat.outcomes.items() if k in ("internal-error", "request-invalid")}
    if failed:
        problems.append(f"decide() failed: {failed}")
    for problem in problems:
        print(f"bench.py: sanity check failed: {problem}", file=sys.stderr)
    # Whole commands as a user times them (10,000,000-frame candump and a BLF log): the full run only.
    replay_status = 0 if args.quick else bench_replay_commands()
    service_status = 0 if args.no_service else bench_service(args.quick)
    return 1 if problems or service_status or replay_status else 0


def bench_replay_commands() -> int:
    """``tools/bench_replay.py``: columnar, streaming and the python-can + cantools baseline, whole commands."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_replay  # a sibling script, not a package

    print("", flush=True)
    return int(bench_replay.main([]))


def bench_service(quick: bool) -> int:
    """The decision service benchmark (``tools/bench_service.py``); its exit status."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_service  # a sibling script, not a package

    print("", flush=True)
    return int(bench_service.main(["--quick"] if quick else []))


if __name__ == "__main__":
    sys.exit(main())
