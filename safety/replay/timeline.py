"""Replay: a recorded log through the engine, as a timeline of states and decisions.

The same loop serves a log read from a file and a log played onto a python-can virtual
bus (``--virtual``): both see the same frames with the same timestamps, so both give the
same timeline.  Probes (requests asked at every change) are decided through the same
cached evaluator as ``Engine.decide``; they are re-decided only when the state changed in
a way the policy can tell apart.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import can

from safety.engine.engine import Engine
from safety.errors import DriveGateError, LoadError, Location, LogFormatError, RequestError
from safety.io.logs import Frame, read_log
from safety.model.request import validate_request
from safety.vehicle.frames import EXTENDED_KEY
from safety.yamlsource import load_yaml

# A built-in probe set covering every content type (and every modality).
BUILTIN_PROBES: tuple[dict[str, Any], ...] = (
    {
        "id": "message-text",
        "kind": "notification",
        "category": "message",
        "modality": "visual",
        "content": "text",
        "priority": "normal",
        "text_length": 80,
    },
    {
        "id": "short-text",
        "kind": "notification",
        "category": "calendar",
        "modality": "visual",
        "content": "text",
        "priority": "normal",
        "text_length": 24,
    },
    {
        "id": "read-aloud",
        "kind": "notification",
        "category": "message",
        "modality": "voice",
        "content": "text",
        "priority": "normal",
        "text_length": 80,
    },
    {
        "id": "image",
        "kind": "notification",
        "category": "message",
        "modality": "visual",
        "content": "image",
        "priority": "normal",
    },
    {
        "id": "video",
        "kind": "interaction",
        "category": "media",
        "modality": "visual",
        "content": "video",
        "priority": "low",
    },
    {
        "id": "keyboard",
        "kind": "interaction",
        "category": "message",
        "modality": "manual",
        "content": "keyboard",
        "priority": "normal",
    },
    {
        "id": "list",
        "kind": "interaction",
        "category": "approval",
        "modality": "visual",
        "content": "list",
        "priority": "normal",
        "list_items": 12,
    },
    {
        "id": "chime",
        "kind": "notification",
        "category": "system",
        "modality": "audio",
        "content": "none",
        "priority": "low",
    },
    {
        "id": "critical-call",
        "kind": "notification",
        "category": "call",
        "modality": "visual",
        "content": "text",
        "priority": "critical",
        "text_length": 40,
    },
)


def load_probes(path: str | Path) -> list[dict[str, Any]]:
    """Read a YAML list of requests, each with an ``id``; every problem at its file:line."""
    name = str(path)

    def make(code: str, loc: Location, message: str) -> DriveGateError:
        return RequestError(message, loc, code=code)

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError([make("unreadable", Location(file=name), f"cannot read the probes: {exc}")]) from exc
    root = load_yaml(name, text, make)
    errors: list[DriveGateError] = []
    probes: list[dict[str, Any]] = []
    if not root.is_seq:
        raise LoadError([make("expected-type", root.loc, "the probes file must be a list of requests")])
    seen: set[str] = set()
    for item in root.value:
        request = item.plain()
        problem = validate_request(request)
        if problem is not None:
            where = item.key_loc(problem.location.field) if item.is_map else item.loc
            if item.is_map and problem.location.field in item.value and "unknown field" not in problem.message:
                where = item.value[problem.location.field].loc
            errors.append(make("bad-request", where, problem.message))
            continue
        probe_id = request.get("id")
        if not probe_id:
            errors.append(make("missing-key", item.loc, "each probe needs an 'id'"))
        elif probe_id in seen:
            errors.append(make("duplicate-id", item.loc, f"duplicate probe id '{probe_id}'"))
        else:
            seen.add(probe_id)
            probes.append(request)
    if errors:
        raise LoadError(errors)
    return probes


@dataclass
class ReplaySummary:
    """What a replay saw: counts and time spent per state and per probe outcome."""

    frames_read: int = 0
    frames_decoded: int = 0
    frames_skipped: int = 0  # error/remote frames, and frames on channels the profile does not read
    log_errors: list[LogFormatError] = field(default_factory=list)
    first_time: float | None = None
    last_time: float | None = None
    lines: int = 0
    state_seconds: dict[str, float] = field(default_factory=dict)
    outcome_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    outcome_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    implausible: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        span = 0.0 if self.first_time is None or self.last_time is None else self.last_time - self.first_time
        out = [
            f"frames read: {self.frames_read}, decoded: {self.frames_decoded}, skipped: {self.frames_skipped}, "
            f"bad lines: {len(self.log_errors)}",
            f"log time: {span:.3f} s, timeline lines: {self.lines}",
            "time in driving state: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.state_seconds.items())),
        ]
        if self.implausible:
            out.append("implausible samples: " + ", ".join(f"{k} {v}" for k, v in sorted(self.implausible.items())))
        if self.invalid:
            out.append(
                "invalid (not available) samples: " + ", ".join(f"{k} {v}" for k, v in sorted(self.invalid.items()))
            )
        out.append("outcomes per probe (periods, time):")
        for probe, counts in self.outcome_counts.items():
            seconds = self.outcome_seconds.get(probe, {})
            parts = [f"{o} {n}x {seconds.get(o, 0.0):.1f} s" for o, n in sorted(counts.items())]
            out.append(f"  {probe}: " + ", ".join(parts))
        for err in self.log_errors[:10]:
            out.append(f"log error: {err}")
        if len(self.log_errors) > 10:
            out.append(f"... and {len(self.log_errors) - 10} more log errors")
        return "\n".join(out)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def profile_channel(engine: Engine) -> str | None:
    """The one CAN channel the profile reads, if its signals name one."""
    buses = {src.bus for src in engine.profile.sources.values() if src.bus is not None}
    if len(buses) > 1:
        raise LoadError(
            [
                LogFormatError(
                    f"the profile reads several channels ({', '.join(sorted(buses))}); a replay needs one",
                    Location(file=engine.profile.file),
                    code="several-channels",
                )
            ]
        )
    return buses.pop() if buses else None


class Timeline:
    """Runs frames through an engine and writes the JSONL timeline."""

    def __init__(
        self,
        engine: Engine,
        probes: Iterable[Mapping[str, Any]],
        out: TextIO | None,
        sample_every: float | None = None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.on_line = on_line
        self.engine = engine
        self.probes = [dict(p) for p in probes]
        self.out = out
        self.sample_every = sample_every if sample_every and sample_every > 0 else None
        self.summary = ReplaySummary()
        self.channel = profile_channel(engine)

    def run(self, frames: Iterable[Frame]) -> ReplaySummary:
        engine, summary = self.engine, self.summary
        state = engine._state  # the replay owns the engine: no other thread, no lock needed
        handlers = engine._decoder.handlers
        decide = engine._pipeline.decide
        probes = self.probes
        channel = self.channel
        sample_every = self.sample_every
        next_sample = math.inf
        last_changes = -1
        previous: tuple[Any, ...] | None = None
        since = 0.0
        outcomes: dict[str, str] = {}
        driving = ""
        read = skipped = 0
        t = 0.0
        for frame in frames:
            read += 1
            t, arbitration_id, is_extended, data, frame_channel, is_error, is_remote = frame
            if (
                is_error
                or is_remote
                or (channel is not None and frame_channel is not None and frame_channel != channel)
            ):
                skipped += 1
                continue
            # frame_key(), inlined: this loop runs once per frame of the log.
            handler = handlers.get(arbitration_id | EXTENDED_KEY if is_extended else arbitration_id)
            if handler is not None:
                handler(t, data, frame_channel)
            if t >= state.next_expiry:
                state.expire(t)
            if state.changes == last_changes and t < next_sample:
                continue
            if previous is None:
                summary.first_time = since = t
                if sample_every:
                    next_sample = t
            last_changes = state.changes
            snap = state.snapshot(t)
            new_outcomes = {p["id"]: decide(snap.values, p, t).decision.outcome.value for p in probes}
            current = (snap.driving_state, snap.workload, new_outcomes)
            sampled = t >= next_sample
            if sampled:
                while next_sample <= t:
                    next_sample += sample_every or math.inf
            if previous is None or sampled or current != previous:
                if previous is not None:
                    self._account(driving, outcomes, t - since)
                    since = t
                for probe_id, outcome in new_outcomes.items():
                    if outcomes.get(probe_id) != outcome:
                        counts = summary.outcome_counts.setdefault(probe_id, {})
                        counts[outcome] = counts.get(outcome, 0) + 1
                driving, outcomes, previous = snap.driving_state, new_outcomes, current
                self._emit(t, snap.values, snap.driving_state, snap.workload, new_outcomes)
        summary.frames_read += read
        summary.frames_skipped += skipped
        summary.frames_decoded = engine._decoder.frames_decoded
        if previous is not None:
            self._account(driving, outcomes, t - since)
            summary.last_time = t
        summary.implausible = dict(state.counters.implausible)
        summary.invalid = dict(state.counters.invalid)
        return summary

    def _account(self, driving: str, outcomes: Mapping[str, str], seconds: float) -> None:
        summary = self.summary
        summary.state_seconds[driving] = summary.state_seconds.get(driving, 0.0) + seconds
        for probe_id, outcome in outcomes.items():
            per = summary.outcome_seconds.setdefault(probe_id, {})
            per[outcome] = per.get(outcome, 0.0) + seconds

    def _emit(self, t: float, values: Mapping[str, Any], driving: str, workload: str, outcomes: dict[str, str]) -> None:
        self.summary.lines += 1
        if self.out is None and self.on_line is None:
            return
        line = {
            "t": round(t, 6),
            "speed": _rounded(values.get("speed")),
            "gear": values.get("gear"),
            "steering_angle": _rounded(values.get("steering_angle")),
            "driving_state": None if driving == "unknown" else driving,
            "workload": None if workload == "unknown" else workload,
            "decisions": outcomes,
        }
        if self.on_line is not None:
            self.on_line(line)
        if self.out is not None:
            self.out.write(json.dumps(line, separators=(", ", ": ")) + "\n")


def replay_file(
    engine: Engine,
    log: str | Path,
    probes: Iterable[Mapping[str, Any]],
    out: TextIO | None,
    sample_every: float | None = None,
) -> ReplaySummary:
    """Replay a log file straight into the engine."""
    timeline = Timeline(engine, probes, out, sample_every)
    timeline.run(read_log(log, on_error=timeline.summary.log_errors.append))
    return timeline.summary


def replay_virtual(
    engine: Engine,
    log: str | Path,
    probes: Iterable[Mapping[str, Any]],
    out: TextIO | None,
    sample_every: float | None = None,
    speed: float = 1.0,
) -> ReplaySummary:
    """Play a log onto a python-can virtual bus (in real time times ``speed``; 0 = as fast
    as possible) and let the engine listen on that bus, as it would in the car."""
    timeline = Timeline(engine, probes, out, sample_every)
    source = read_log(log, on_error=timeline.summary.log_errors.append)
    player = VirtualPlayer(source, timeline.channel, speed)
    try:
        player.start()
        timeline.run(player.received())
    finally:
        player.stop()
    # Frames the player skipped (other channels, error frames) count as read and skipped.
    timeline.summary.frames_read += player.skipped
    timeline.summary.frames_skipped += player.skipped
    if player.error is not None:
        raise player.error
    return timeline.summary


class VirtualPlayer:
    """Plays a log onto a virtual bus from a thread; ``received()`` yields what a listener gets."""

    def __init__(self, source: Iterable[Frame], channel: str | None, speed: float) -> None:
        self.source = source
        self.channel = channel
        self.speed = speed
        name = channel or "drivegate-replay"
        # The bus carries the profile's channel name, as in the car.  Timestamps are kept
        # (preserve_timestamps) so the engine sees the log's times, not the wall clock.
        self.tx = can.Bus(interface="virtual", channel=name, preserve_timestamps=True, receive_own_messages=False)
        self.rx = can.Bus(interface="virtual", channel=name, rx_queue_size=65536)
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.skipped = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._play, name="drivegate-player", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _play(self) -> None:
        try:
            origin: tuple[float, float] | None = None
            for frame in self.source:
                if self.cancel.is_set():
                    return
                if (
                    frame.is_error_frame
                    or frame.is_remote_frame
                    or (self.channel is not None and frame.channel is not None and frame.channel != self.channel)
                ):
                    self.skipped += 1
                    continue
                if self.speed > 0:
                    # Pacing reads the wall clock: this is the player, not the engine.
                    if origin is None:
                        origin = (frame.timestamp, time.monotonic())
                    due = origin[1] + (frame.timestamp - origin[0]) / self.speed
                    delay = due - time.monotonic()
                    if delay > 0.001:
                        time.sleep(delay)
                self.tx.send(
                    can.Message(
                        timestamp=frame.timestamp,
                        arbitration_id=frame.arbitration_id,
                        is_extended_id=frame.is_extended_id,
                        data=frame.data,
                        dlc=len(frame.data),
                        is_fd=len(frame.data) > 8,
                    )
                )
        except BaseException as exc:  # surfaced to the caller after the replay
            self.error = exc
        finally:
            self.done.set()

    def received(self) -> Iterator[Frame]:
        channel = self.channel
        while True:
            msg = self.rx.recv(timeout=0.05)
            if msg is None:
                if self.done.is_set():
                    # The player has sent everything it will; drain what is left.
                    msg = self.rx.recv(timeout=0)
                    if msg is None:
                        return
                else:
                    continue
            yield Frame(
                msg.timestamp,
                msg.arbitration_id,
                msg.is_extended_id,
                bytes(msg.data),
                channel,
                msg.is_error_frame,
                msg.is_remote_frame,
            )

    def stop(self) -> None:
        self.cancel.set()
        self._thread.join(timeout=5)
        self.tx.shutdown()
        self.rx.shutdown()
