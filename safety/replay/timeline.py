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
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.vehicle.state import NOT_MAPPED
from safety.yamlsource import load_yaml, read_yaml_text

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
        text = read_yaml_text(path)
    except (OSError, UnicodeDecodeError) as exc:
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
    truncated: dict[str, int] = field(default_factory=dict)
    integrity: dict[str, int] = field(default_factory=dict)
    frames_rejected: dict[str, int] = field(default_factory=dict)  # refused for their time, by reason
    unknown_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # signal -> cause -> s
    not_mapped: tuple[str, ...] = ()  # canonical signals the profile does not map (always unknown)

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
        if self.truncated:
            out.append("truncated samples: " + ", ".join(f"{k} {v}" for k, v in sorted(self.truncated.items())))
        if self.integrity:
            out.append("integrity failures: " + ", ".join(f"{k} {v}" for k, v in sorted(self.integrity.items())))
        if self.frames_rejected:
            out.append(
                "frames refused for their time: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.frames_rejected.items()))
            )
        if self.unknown_seconds:
            parts = []
            for name, causes in sorted(self.unknown_seconds.items()):
                parts.append(f"{name} " + ", ".join(f"{c} {v:.1f} s" for c, v in sorted(causes.items())))
            out.append("unknown time per signal: " + "; ".join(parts))
        if self.not_mapped:
            out.append("not mapped by the profile (always unknown): " + ", ".join(self.not_mapped))
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


def next_sample_after(next_sample: float, t: float, every: float) -> float:
    """The first time of the sampling grid (``next_sample`` + k * ``every``, by repeated
    addition) after ``t``.  Where ``every`` is below the resolution of the times (adding it
    changes nothing) the grid moves to the next representable time instead of never moving."""
    while next_sample <= t:
        following = next_sample + every
        next_sample = following if following > next_sample else math.nextafter(next_sample, math.inf)
    return next_sample


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
        reasons: bool = False,
        rules: bool = False,
    ) -> None:
        self.on_line = on_line
        self.reasons = reasons
        # With rules, each line also says which rules decided each probe, and a change of the
        # deciding rules is a change (a new line) even when the outcome stays: fleet replays
        # keep one row per (outcome, rules) interval.
        self.rules = rules
        self.engine = engine
        self.probes = [dict(p) for p in probes]
        self.out = out
        self.sample_every = sample_every if sample_every and sample_every > 0 else None
        self.summary = ReplaySummary()
        self.channel = profile_channel(engine)
        self.run_state: Callable[[], tuple[Any, ...]] = tuple  # the running loop's, once run() starts

    def run(self, frames: Iterable[Frame], admit: Callable[[float], float | None] | None = None) -> ReplaySummary:
        """Run ``frames`` through the engine, writing the timeline; the summary.

        ``admit`` gives the stream's time after each frame that is not skipped (default: the
        engine's stream clock); the columnar replay passes the times it computed for the
        whole log, which can differ from the clock's over only the frames it hands over.
        """
        engine, summary = self.engine, self.summary
        state = engine._state  # the replay owns the engine: no other thread, no lock needed
        handlers = engine._decoder.handlers
        if admit is None:
            admit = engine._decoder.clock.admit
        resolve = engine._decoder.resolve  # J1939: a 29-bit id matched by PGN, once per id
        decide = engine._pipeline.decide
        probes = self.probes
        with_rules = self.rules
        channel = self.channel
        sample_every = self.sample_every
        sample_gap = sample_every or 0.0
        next_sample = math.inf
        last_changes = -1
        previous: tuple[Any, ...] | None = None
        since = 0.0
        outcomes: dict[str, str] = {}
        driving = ""
        read = skipped = 0
        t = -math.inf
        unknown: Mapping[str, str] = {}
        unknown_since = 0.0

        def run_state() -> tuple[Any, ...]:
            """What of this loop decides its future lines (a chunked replay compares it, see
            :mod:`safety.replay.chunks`); counts only add up and are left out."""
            # ``since`` and ``unknown_since`` only time what is summed (the chunks' splice re-sums it).
            return (next_sample, state.changes != last_changes, previous, outcomes, driving, t, unknown)

        self.run_state = run_state

        def observe(t: float) -> None:
            """Decide the probes on the state at ``t``; write a line when anything changed (or a sample is due)."""
            nonlocal next_sample, last_changes, previous, since, outcomes, driving, unknown, unknown_since
            if previous is None:
                summary.first_time = since = t
                if sample_every:
                    next_sample = t
            last_changes = state.changes
            snap = state.snapshot(t)
            if previous is not None:
                self._account_unknown(unknown, t - unknown_since)
            unknown, unknown_since = snap.unknown, t
            decisions = {p["id"]: decide(snap.values, p, t).decision for p in probes}
            new_outcomes = {k: d.outcome.value for k, d in decisions.items()}
            deciding = {k: d.rules for k, d in decisions.items()} if with_rules else None
            current = (snap.driving_state, snap.workload, new_outcomes, deciding)
            sampled = t >= next_sample
            if sampled:
                next_sample = next_sample_after(next_sample, t, sample_every or math.inf)
            if previous is None or sampled or current != previous:
                if previous is not None:
                    self._account(driving, outcomes, since, t)
                    since = t
                for probe_id, outcome in new_outcomes.items():
                    if outcomes.get(probe_id) != outcome:
                        counts = summary.outcome_counts.setdefault(probe_id, {})
                        counts[outcome] = counts.get(outcome, 0) + 1
                driving, outcomes, previous = snap.driving_state, new_outcomes, current
                self._emit(t, snap.values, snap.driving_state, snap.workload, new_outcomes, snap.unknown, deciding)

        for frame in frames:
            read += 1
            stamp, arbitration_id, is_extended, data, frame_channel, is_error, is_remote, is_fd, _, _ = frame
            if (
                is_error
                or is_remote
                or (channel is not None and frame_channel is not None and frame_channel != channel)
            ):
                skipped += 1
                continue
            # The stream's time: the latest believable frame time (None: this frame's time is refused).
            now = admit(stamp)
            if now is None:
                continue
            # A signal that went stale (or a workload hold that ran out) between the last frame and
            # this one did so at its own time, and the timeline says so then, with the samples due
            # meanwhile: a bus silent for seconds shows as seconds of unknown, as a caller asking
            # during the silence would have seen.
            while True:
                expiry = state.next_expiry
                expiring = t < expiry < now
                # A sample is taken at the first frame at or after its time, as always; only one
                # a whole interval before this frame (the bus was silent) is taken on its own.
                sampling = next_sample <= now - sample_gap
                if not (expiring or sampling):
                    break
                # An expiry is observed just after its limit: stale once the age exceeds max_age.
                when = math.nextafter(expiry, math.inf) if expiring and expiry < next_sample else next_sample
                state.expire(when)
                # Most expiry times find nothing gone stale (a newer frame came): decide only on a change.
                if state.changes != last_changes or when >= next_sample:
                    observe(when)
            t = now
            # frame_key(), inlined: this loop runs once per frame of the log.
            key = arbitration_id | EXTENDED_KEY if is_extended else arbitration_id
            handler = handlers.get(key)
            if handler is None and is_extended and resolve is not None:
                handler = resolve(key)
            if handler is not None:
                handler(stamp, data, frame_channel, is_fd)
            if t >= state.next_expiry:
                state.expire(t)
            if state.changes == last_changes and t < next_sample:
                continue
            observe(t)
        summary.frames_read += read
        summary.frames_skipped += skipped
        summary.frames_decoded = engine._decoder.frames_decoded
        if previous is not None:
            self._account(driving, outcomes, since, t)
            self._account_unknown(unknown, t - unknown_since)
            summary.last_time = t
        summary.implausible = dict(state.counters.implausible)
        summary.invalid = dict(state.counters.invalid)
        summary.truncated = dict(state.counters.truncated)
        summary.integrity = dict(state.counters.integrity)
        summary.frames_rejected = dict(engine._decoder.rejected)
        summary.not_mapped = tuple(n for n in CANONICAL_SIGNALS if n not in engine.profile.sources)
        return summary

    def _account_unknown(self, unknown: Mapping[str, str], seconds: float) -> None:
        if seconds <= 0.0:
            return
        per_signal = self.summary.unknown_seconds
        for name, why in unknown.items():
            cause = unknown_cause(why)
            if cause == "not mapped" or name not in CANONICAL_SIGNALS:
                continue  # unmapped signals are listed once; derived states have their own times
            causes = per_signal.setdefault(name, {})
            causes[cause] = causes.get(cause, 0.0) + seconds

    def _account(self, driving: str, outcomes: Mapping[str, str], since: float, until: float) -> None:
        """Time from ``since`` to ``until`` spent in ``driving`` and with ``outcomes``."""
        seconds = until - since
        summary = self.summary
        summary.state_seconds[driving] = summary.state_seconds.get(driving, 0.0) + seconds
        for probe_id, outcome in outcomes.items():
            per = summary.outcome_seconds.setdefault(probe_id, {})
            per[outcome] = per.get(outcome, 0.0) + seconds

    def _emit(
        self,
        t: float,
        values: Mapping[str, Any],
        driving: str,
        workload: str,
        outcomes: dict[str, str],
        unknown: Mapping[str, str],
        deciding: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
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
        if self.reasons:
            # Why each unknown signal (and derived state) is unknown; unmapped ones are in the summary.
            line["unknown"] = {k: v for k, v in unknown.items() if v != NOT_MAPPED}
        if deciding is not None:
            line["rules"] = {k: list(v) for k, v in deciding.items()}
        if self.on_line is not None:
            self.on_line(line)
        if self.out is not None:
            self.out.write(json.dumps(line, separators=(", ", ": ")) + "\n")


# Causes of unknown, by the start of the tracker's reason (see safety.vehicle.state).
_CAUSES = (
    ("stale", "stale"),
    ("never received", "never received"),
    ("invalid value", "invalid"),
    ("implausible", "implausible"),
    ("truncated", "truncated"),
    ("integrity", "integrity"),
    ("cross-check failed", "cross-check"),
    ("cannot be cross-checked", "cross-check"),
    ("newer than now", "newer than now"),
    ("not mapped", "not mapped"),
)


def unknown_cause(reason: str) -> str:
    """The cause of an unknown signal, from the tracker's reason: stale, invalid, implausible, ..."""
    for prefix, cause in _CAUSES:
        if reason.startswith(prefix):
            return cause
    return "other"


def replay_file(
    engine: Engine,
    log: str | Path,
    probes: Iterable[Mapping[str, Any]],
    out: TextIO | None,
    sample_every: float | None = None,
    *,
    reasons: bool = False,
) -> ReplaySummary:
    """Replay a log file straight into the engine."""
    timeline = Timeline(engine, probes, out, sample_every, reasons=reasons)
    timeline.run(read_log(log, on_error=timeline.summary.log_errors.append))
    return timeline.summary


def replay_virtual(
    engine: Engine,
    log: str | Path,
    probes: Iterable[Mapping[str, Any]],
    out: TextIO | None,
    sample_every: float | None = None,
    speed: float = 1.0,
    *,
    reasons: bool = False,
) -> ReplaySummary:
    """Play a log onto a python-can virtual bus (in real time times ``speed``; 0 = as fast
    as possible) and let the engine listen on that bus, as it would in the car."""
    timeline = Timeline(engine, probes, out, sample_every, reasons=reasons)
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


def frames_seen(log: str | Path, limit: int = 12) -> tuple[list[str], list[str], int]:
    """The channels and the most frequent frame ids of a log (for a replay that decoded nothing).

    Returns (channels, ids as printed, number of distinct ids).
    """
    from collections import Counter

    channels: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    for frame in read_log(log, on_error=lambda _error: None):
        if frame.is_error_frame or frame.is_remote_frame:
            continue
        channels[str(frame.channel) if frame.channel is not None else "(none)"] += 1
        width = 8 if frame.is_extended_id else 3
        ids[f"0x{frame.arbitration_id:0{width}X}"] += 1
    return [c for c, _ in channels.most_common()], [i for i, _ in ids.most_common(limit)], len(ids)


def silent_replay_warning(engine: Engine, log: str | Path) -> str:
    """What to tell a user whose replay decoded nothing: what the profile reads, and what the log has."""
    wanted = sorted({f"{src.frame}{' on ' + src.bus if src.bus else ''}" for src in engine.profile.sources.values()})
    channels, ids, distinct = frames_seen(log)
    more = f" (+{distinct - len(ids)} more)" if distinct > len(ids) else ""
    return (
        f"warning: {log}: no frame matched the vehicle profile, nothing was decoded (every signal stayed unknown). "
        f"The profile reads {', '.join(wanted)}; the log has channels {', '.join(channels) or 'none'} "
        f"and ids {', '.join(ids) or 'none'}{more}. Check the profile's message ids and 'bus:' channels "
        "(a J1939 entry matches by PGN with 'source: any' or a list of senders)."
    )


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
                        is_fd=frame.is_fd or len(frame.data) > 8,
                        bitrate_switch=frame.bitrate_switch,
                        error_state_indicator=frame.error_state_indicator,
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
                msg.is_fd,
                msg.bitrate_switch,
                msg.error_state_indicator,
            )

    def stop(self) -> None:
        self.cancel.set()
        self._thread.join(timeout=5)
        self.tx.shutdown()
        self.rx.shutdown()
