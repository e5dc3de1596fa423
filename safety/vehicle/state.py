"""Vehicle state: the latest value of each canonical signal, and the states derived from them.

Time comes only from the frames (or the caller's ``now``): the tracker never reads a
clock, so replaying a log gives the same states every time.

Fail closed: a signal is unknown when it was never received, when its last frame is
older than its ``max_age`` (or newer than ``now``), when the DBC marked the raw value
invalid, when the frame was too short to hold it, or when the value is out of its physical
range.  A jump no car can make is rejected: the signal keeps its last *accepted* value (which
goes stale as usual) until a plausible sample comes, or until the new level is confirmed by
several samples in a row.  Unknown speed or gear makes ``driving_state`` unknown; an unknown
driving state, or an unknown workload input, makes ``workload`` unknown unless another input
already says high.  The policy treats unknown as the most demanding driving.

Derived states use hysteresis (thresholds from the policy) so that a value hovering around
a threshold cannot make them flap, and a dwell (``StateConfig.dwell_s``) before they move to
a *less* demanding value (moving -> stationary, a speed band down), so that a value sweeping
across the whole hysteresis band (creeping in a queue) cannot make them flap either.  Moving
to a more demanding value is immediate.  ``parked`` needs gear P *and* a standstill: P at
speed is implausible, so unknown.

Times that are not finite are refused at the door (counted in ``counters.bad_time``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from safety.errors import Location
from safety.vehicle.signals import CANONICAL_SIGNALS


class DrivingState(StrEnum):
    """What the car is doing (Android Automotive's PARKED / IDLING / MOVING, with hysteresis)."""

    PARKED = "parked"  # gear P
    STATIONARY = "stationary"  # standing still in another gear (hysteresis on the speed)
    MOVING = "moving"
    UNKNOWN = "unknown"  # speed, gear or the standstill history unknown: the most demanding


class Workload(StrEnum):
    """How demanding the driving is right now (Volvo IDIS style triggers and hold)."""

    LOW = "low"
    HIGH = "high"
    UNKNOWN = "unknown"  # a trigger's signal unknown: treated as the most demanding


# How many consecutive rejected samples, each plausible against the one before, confirm a
# new level: a real step change (a sensor re-initialised) is believed after this many samples;
# a glitch of fewer samples never changes the accepted value.
REANCHOR_AFTER = 3
# Default dwell before a derived state moves to a less demanding value (seconds): a stop at a
# light reads stationary within a couple of seconds, creeping in a queue does not flap.
DEFAULT_DWELL_S = 1.5


@dataclass(frozen=True)
class Trigger:
    """A reason for high workload: |value| (or value) at ``on`` or above until below ``off``; or value in ``values``."""

    signal: str
    on: float = math.inf
    off: float = math.inf
    use_abs: bool = False
    values: frozenset[Any] = frozenset()


@dataclass(frozen=True)
class CrossCheck:
    """A numeric signal checked against a second source of the same quantity (``cross_check:``)."""

    signal: str  # the canonical signal, e.g. speed
    reference: str  # the state's name of the second source, e.g. speed_reference
    tolerance: float  # in the signal's unit
    tolerance_percent: float  # of the reference's magnitude; the larger of the two applies
    label: str  # the second source as errors and reasons print it: WHEEL_SPEEDS mean of 4 signals
    loc: Location = field(default_factory=Location)

    def allowed(self, reference: float) -> float:
        """How far the signal may be from ``reference``."""
        return max(self.tolerance, abs(reference) * self.tolerance_percent / 100.0)


@dataclass(frozen=True)
class StateConfig:
    """Thresholds for the derived states; compiled from a policy's ``state:`` section."""

    standstill_on: float = 0.5  # km/h: at or below this the car stands still ...
    standstill_off: float = 2.0  # ... until it exceeds this
    triggers: tuple[Trigger, ...] = ()
    hold_s: float = 0.0  # workload stays high this long after the last trigger
    bands: tuple[tuple[str, float], ...] = ()  # (name, upper edge exclusive); last edge inf
    band_hysteresis: float = 0.0
    rate_window_s: float = 0.1  # steering rate derived from the angle over this window
    dwell_s: float = DEFAULT_DWELL_S  # before moving to a less demanding driving state or speed band


@dataclass(slots=True)
class _Signal:
    max_age: float
    value: Any = None
    time: float = -math.inf
    why_unknown: str = "never received"
    anchor: float | None = None  # last accepted value (numbers)
    anchor_time: float = -math.inf
    pending: float | None = None  # a rejected level waiting for confirmation
    pending_time: float = -math.inf
    pending_count: int = 0
    rejected: str = ""  # why the samples since the accepted one were rejected ("" when none were)


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """The vehicle state at one time, as decisions see it.  ``None`` means unknown."""

    time: float | None
    values: Mapping[str, Any]  # canonical and derived fields; None = unknown
    ages: Mapping[str, float | None]  # seconds since the frame that carried each signal
    unknown: Mapping[str, str]  # why each unknown canonical signal is unknown
    driving_state: DrivingState
    workload: Workload
    # End-to-end check results per protected message (ok, repeated, wrong-sequence, error, ...),
    # as Engine.state() gives them; empty where no checks ran.
    integrity: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # What is wrong with the engine itself, by part (``decision_log``: why records cannot be
    # written), as Engine.state() gives it; empty when all is well.
    health: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "driving_state": self.driving_state.value,
            "workload": self.workload.value,
            "values": dict(self.values),
            "ages": dict(self.ages),
            "unknown": dict(self.unknown),
            "integrity": {message: dict(counts) for message, counts in self.integrity.items()},
        }


@dataclass
class StateCounters:
    """Samples that did not give a value, per canonical signal and cause."""

    implausible: dict[str, int] = field(default_factory=dict)  # out of range, or a jump no car can make
    invalid: dict[str, int] = field(default_factory=dict)  # the DBC's not-available value
    truncated: dict[str, int] = field(default_factory=dict)  # the frame was too short to hold it
    integrity: dict[str, int] = field(default_factory=dict)  # failed its end-to-end check
    bad_time: dict[str, int] = field(default_factory=dict)  # stamped NaN or infinite


# Why a canonical signal the vehicle profile does not map is unknown.
NOT_MAPPED = "not mapped by the vehicle profile"

# Update outcomes of the plausibility check.
_ACCEPT, _UNKNOWN, _DISCARD = 0, 1, 2


class VehicleState:
    """Tracks canonical signals and derived states from timed samples.

    ``max_age`` gives the staleness limit (seconds) of every signal the vehicle provides;
    signals not in it are never known.  ``watch`` names state fields whose changes matter
    to the policy (numbers with their thresholds): ``changes`` counts such changes so a
    replay re-decides only when a decision could differ.
    """

    def __init__(
        self,
        max_age: Mapping[str, float],
        config: StateConfig | None = None,
        *,
        watch: Mapping[str, tuple[float, ...]] | None = None,
        watch_values: Iterable[str] = (),
        resolution: Mapping[str, float] | None = None,
        cross_checks: Mapping[str, CrossCheck] | None = None,
    ) -> None:
        self.config = config or StateConfig()
        # Signals checked against a second source (the source's state name is cross.reference).
        self._cross = {k: c for k, c in (cross_checks or {}).items() if k in max_age and c.reference in max_age}
        self._cross_by_name: dict[str, CrossCheck] = {}
        for cross in self._cross.values():
            self._cross_by_name[cross.signal] = self._cross_by_name[cross.reference] = cross
        self._agree: dict[str, bool | None] = {}
        self._signals: dict[str, _Signal] = {name: _Signal(age) for name, age in max_age.items()}
        # A source's quantum (its DBC scale) widens the jump tolerance: a 1-mph step is no glitch.
        self._resolution = dict(resolution or {})
        self.derive_rate = "steering_rate" not in self._signals and "steering_angle" in self._signals
        if self.derive_rate:
            angle_age = self._signals["steering_angle"].max_age
            self._signals["steering_rate"] = _Signal(angle_age + self.config.rate_window_s)
        self._rate_ref: tuple[float, float] | None = None
        self.counters = StateCounters()
        self.latest_time: float | None = None
        # derived state, evolved sample by sample
        self._standstill: bool | None = None
        self._trigger_active: list[bool | None] = [None] * len(self.config.triggers)
        self._high_until = -math.inf
        self._band: int | None = None
        self._gear: Any = None
        self._speed_time = -math.inf  # the previous speed sample's time (a longer gap restarts)
        self._still_since: float | None = None  # standstill candidate, waiting for the dwell
        self._band_since: float | None = None  # lower speed band candidate, waiting for the dwell
        self._edges = tuple(edge for _, edge in self.config.bands[:-1])
        # change tracking for replays
        self._watch = {k: v for k, v in (watch or {}).items() if k in self._signals}
        self._watch_values = frozenset(watch_values) & set(self._signals)
        self._cells: dict[str, Any] = {}
        self.changes = 0
        self._derived_sig: tuple[Any, ...] = ()
        self._expired: set[str] = set()
        self._hold_pending = False
        self.next_expiry = math.inf  # no state can go stale before this frame time
        self._triggers_of: dict[str, tuple[int, ...]] = {}
        for i, trig in enumerate(self.config.triggers):
            self._triggers_of[trig.signal] = (*self._triggers_of.get(trig.signal, ()), i)
        # The angle feeds the derived rate on every sample, repeated or not.
        self._rate_source = frozenset({"steering_angle"} if self.derive_rate else ())
        self.fast_repeats = True  # tests turn it off to prove it changes nothing

    def carry_over(
        self,
        config: StateConfig,
        *,
        watch: Mapping[str, tuple[float, ...]] | None = None,
        watch_values: Iterable[str] = (),
    ) -> VehicleState:
        """A tracker with new thresholds (a new policy) that keeps every signal's latest sample.

        The derived states restart from the latest values under the new thresholds, as at
        start-up (a value between two thresholds starts on the demanding side).
        """
        fresh = VehicleState(
            {n: s.max_age for n, s in self._signals.items() if n != "steering_rate" or not self.derive_rate},
            config,
            watch=watch,
            watch_values=watch_values,
            resolution=self._resolution,
            cross_checks=self._cross,
        )
        for name, sig in self._signals.items():
            fresh._signals[name] = replace(sig)
        fresh._rate_ref = self._rate_ref
        fresh.counters = self.counters
        fresh.latest_time = self.latest_time
        # A workload hold in progress stays in force: a reload must never relax it early.
        fresh._high_until = self._high_until
        fresh._hold_pending = self._hold_pending
        for name, sig in sorted(fresh._signals.items(), key=lambda item: item[1].time):
            if sig.time != -math.inf:
                fresh._evolve(name, sig.value, sig.time)
                fresh._track(name, sig.value, sig.time)
        fresh.changes += 1
        return fresh

    # ------------------------------------------------------------------ updates
    def provides(self, name: str) -> bool:
        return name in self._signals

    def update(
        self,
        name: str,
        value: Any,
        t: float,
        *,
        invalid: bool = False,
        reason: str | None = None,
        cause: str = "",
    ) -> None:
        """Record one sample of a canonical signal at frame time ``t``.

        ``value`` None means no value: with ``invalid`` True the DBC marked the raw value not
        available; ``reason`` says why otherwise, and ``cause`` ("truncated" or "integrity") is
        the counter it goes to.  A ``t`` that is not a finite number is refused and counted.
        """
        sig = self._signals.get(name)
        if sig is None:
            return
        if t - t != 0.0:  # NaN or infinite: no age can be computed from it
            self.counters.bad_time[name] = self.counters.bad_time.get(name, 0) + 1
            return
        if self.latest_time is None or t > self.latest_time:
            self.latest_time = t
        previous = sig.value
        if (
            self.fast_repeats
            and value is not None
            and value == previous
            and type(value) is type(previous)
            and t >= sig.time
            and name not in self._expired
            and name not in self._rate_source
            # A speed with a dwell running, or after a gap, takes the full path.
            and (name != "speed" or self._speed_steady(t))
        ):
            # The same value again (most frames repeat the last one): plausibility holds (it
            # equals the accepted value) and every hysteresis is idempotent, so only time moves.
            if name == "speed":
                self._speed_time = t
            sig.time = t
            sig.anchor_time = t
            sig.pending_count = 0
            sig.rejected = ""
            for i in self._triggers_of.get(name, ()):
                if self._trigger_active[i]:
                    self._extend_hold(t)
            return
        if value is None:
            sig.value, sig.time = None, t
            if reason is not None:
                sig.why_unknown = reason
                counts = self.counters.truncated if cause == "truncated" else self.counters.integrity
                if cause:
                    counts[name] = counts.get(name, 0) + 1
            else:
                sig.why_unknown = "invalid value (DBC marks it not available)" if invalid else "invalid value"
                if invalid:
                    self.counters.invalid[name] = self.counters.invalid.get(name, 0) + 1
        elif isinstance(value, float | int) and not isinstance(value, bool):
            verdict = self._plausible(name, sig, float(value), t)
            if verdict is not _ACCEPT:
                self.counters.implausible[name] = self.counters.implausible.get(name, 0) + 1
                if verdict is _DISCARD:
                    return  # the last accepted value stands (and ages as usual)
                sig.value, sig.time = None, t
            else:
                sig.value, sig.time = value, t
        else:
            sig.value, sig.time = value, t
        if name == "steering_angle" and self.derive_rate:
            self._derive_rate(sig.value, t)
        self._evolve(name, sig.value, t)
        self._track(name, sig.value, t, previous)
        if self._cross_by_name and (cross := self._cross_by_name.get(name)) is not None:
            self._recheck(cross)

    def _recheck(self, cross: CrossCheck) -> None:
        """Count a change when a cross-checked signal starts or stops agreeing with its reference
        (the engine and replays re-decide only on counted changes)."""
        value, reference = self._signals[cross.signal].value, self._signals[cross.reference].value
        agree = None if value is None or reference is None else abs(value - reference) <= cross.allowed(reference)
        if agree != self._agree.get(cross.signal):
            self._agree[cross.signal] = agree
            self.changes += 1

    def _speed_steady(self, t: float) -> bool:
        return (
            self._still_since is None
            and self._band_since is None
            and t - self._speed_time <= self._signals["speed"].max_age
        )

    def _plausible(self, name: str, sig: _Signal, value: float, t: float) -> int:
        """Judge ``value`` against the last accepted one: accept it, make it unknown, or discard it."""
        spec = CANONICAL_SIGNALS.get(name)
        if not math.isfinite(value):
            sig.why_unknown = f"implausible value {value}"
            return _UNKNOWN
        if spec is None or spec.physical_range is None:
            return _ACCEPT
        low, high = spec.physical_range
        if not low <= value <= high:
            sig.why_unknown = f"implausible value {value:g} {spec.unit} (outside {low:g}..{high:g})"
            return _UNKNOWN
        if spec.max_rate is None:
            return _ACCEPT
        if sig.anchor is None or not sig.anchor_time <= t <= sig.anchor_time + sig.max_age:
            # No fresh accepted value to compare with (start, a gap, SNA for a while): a new start.
            return self._accept(sig, value, t)
        tolerance = spec.jump_tolerance + self._resolution.get(name, 0.0)
        if abs(value - sig.anchor) <= spec.max_rate * (t - sig.anchor_time) + tolerance:
            return self._accept(sig, value, t)
        # Rejected.  Several rejected samples that agree with each other are a real step (a
        # sensor re-initialised), not a glitch: believe the new level once it is confirmed.
        if sig.pending is not None and abs(value - sig.pending) <= (
            spec.max_rate * max(t - sig.pending_time, 0.0) + tolerance
        ):
            sig.pending_count += 1
        else:
            sig.pending_count = 1
        sig.pending, sig.pending_time = value, t
        if sig.pending_count >= REANCHOR_AFTER:
            return self._accept(sig, value, t)
        sig.rejected = f"implausible jump {sig.anchor:g} -> {value:g} {spec.unit} in {t - sig.anchor_time:.3f} s"
        return _DISCARD

    @staticmethod
    def _accept(sig: _Signal, value: float, t: float) -> int:
        sig.anchor, sig.anchor_time, sig.pending, sig.pending_count, sig.rejected = value, t, None, 0, ""
        return _ACCEPT

    def rebase(self, t: float) -> None:
        """The stream's time base moved to ``t`` (a logger restarted, a clock reset): start the clock there.

        Samples of the old base are unknown from now on, at any ``now`` (a caller still asking in
        the old base must not see them fresh: the stream itself has moved on), until their
        messages come again; a workload hold in force runs its full length from ``t``; dwells
        and plausibility start afresh.
        """
        self.latest_time = t
        for sig in self._signals.values():
            if sig.time != -math.inf and sig.value is not None:
                sig.value, sig.why_unknown = None, f"from before the time base moved to {t:.3f} s"
        if self._high_until > t or self._hold_pending:
            self._high_until = t + self.config.hold_s
            self._hold_pending = self.config.hold_s > 0
        for sig in self._signals.values():
            sig.anchor, sig.pending, sig.pending_count, sig.rejected = None, None, 0, ""
        self._speed_time = -math.inf
        self._still_since = self._band_since = None
        self._rate_ref = None
        self.next_expiry = -math.inf
        self.changes += 1

    def _derive_rate(self, angle: Any, t: float) -> None:
        rate_sig = self._signals["steering_rate"]
        if angle is None:
            self._rate_ref = None
            previous = rate_sig.value
            rate_sig.value, rate_sig.time, rate_sig.why_unknown = None, t, "steering angle unknown"
            self._evolve("steering_rate", None, t)
            self._track("steering_rate", None, t, previous)
            return
        ref = self._rate_ref
        window = self.config.rate_window_s
        if ref is None or t - ref[0] > 10 * window or t < ref[0]:
            self._rate_ref = (t, float(angle))
            return
        dt = t - ref[0]
        if dt >= window:
            rate = (float(angle) - ref[1]) / dt
            self._rate_ref = (t, float(angle))
            previous = rate_sig.value
            rate_sig.value, rate_sig.time = rate, t
            self._evolve("steering_rate", rate, t)
            self._track("steering_rate", rate, t, previous)

    def _evolve(self, name: str, value: Any, t: float) -> None:
        """Advance the hysteresis of every derived state that ``name`` feeds."""
        cfg = self.config
        if name == "gear":
            self._gear = value
        elif name == "speed":
            # A gap longer than the speed's max_age (it was stale meanwhile) restarts the derived
            # states, as at start-up: no dwell or hysteresis spans a time nobody saw.
            restart = t - self._speed_time > self._signals["speed"].max_age
            self._speed_time = t
            if value is None:
                self._standstill = None
                self._band = None
                self._still_since = self._band_since = None
            else:
                speed = abs(value)
                if self._standstill is None or restart:
                    # Starting up: only a clear standstill counts as one (fail closed).
                    self._standstill = speed <= cfg.standstill_on
                    self._still_since = None
                elif self._standstill:
                    if speed > cfg.standstill_off:  # more demanding: at once
                        self._standstill = False
                elif speed <= cfg.standstill_on:
                    # Less demanding: only once the speed stayed down for the dwell.
                    if self._still_since is None:
                        self._still_since = t
                    if t - self._still_since >= cfg.dwell_s:
                        self._standstill, self._still_since = True, None
                else:
                    self._still_since = None
                if cfg.bands:
                    self._band = self._next_band(speed, t, restart)
        for i, trig in enumerate(cfg.triggers):
            if trig.signal != name:
                continue
            if value is None:
                self._trigger_active[i] = None
            elif trig.values:
                self._trigger_active[i] = value in trig.values
            else:
                x = abs(value) if trig.use_abs else value
                active = self._trigger_active[i]
                # Starting up (None) inside the hysteresis band counts as active: the demanding side.
                if active is None or active:
                    self._trigger_active[i] = x >= trig.off
                else:
                    self._trigger_active[i] = x >= trig.on
            if self._trigger_active[i]:
                self._extend_hold(t)

    def _extend_hold(self, t: float) -> None:
        hold = self.config.hold_s
        if t + hold > self._high_until:
            self._high_until = t + hold
            self._hold_pending = hold > 0
            if self._hold_pending and self._high_until < self.next_expiry:
                self.next_expiry = self._high_until

    def _next_band(self, speed: float, t: float, restart: bool) -> int:
        edges = self._edges
        band = self._band
        if band is None or restart:
            self._band_since = None
            return bisect_right(edges, speed)
        up = band
        while up < len(edges) and speed >= edges[up]:
            up += 1
        if up > band:  # more demanding: at once
            self._band_since = None
            return up
        down = band
        while down > 0 and speed < edges[down - 1] - self.config.band_hysteresis:
            down -= 1
        if down == band:
            self._band_since = None
            return band
        # Less demanding: only once the speed stayed below for the dwell.
        if self._band_since is None:
            self._band_since = t
        if t - self._band_since >= self.config.dwell_s:
            self._band_since = None
            return down
        return band

    def _track(self, name: str, value: Any, t: float, previous: Any = None) -> None:
        """Count changes that can change a decision (or a signal's being known); keep the time the next signal expires."""
        sig = self._signals[name]
        if (value is None) != (previous is None):
            self.changes += 1  # known <-> unknown: replays account unknown time per signal
        expiry = sig.time + sig.max_age
        if expiry < self.next_expiry:
            self.next_expiry = expiry
        if self._hold_pending and self._high_until < self.next_expiry:
            self.next_expiry = self._high_until
        if name in self._expired:
            self._expired.discard(name)
            self.changes += 1
        if name in self._watch:
            cell = None if value is None else _cell(self._watch[name], value)
            if self._cells.get(name, "never") != cell:
                self._cells[name] = cell
                self.changes += 1
        elif name in self._watch_values and self._cells.get(name, "never") != value:
            self._cells[name] = value
            self.changes += 1
        derived = (self._standstill, self._band, self._gear, *self._trigger_active)
        if derived != self._derived_sig:
            self._derived_sig = derived
            self.changes += 1

    def expire(self, t: float) -> None:
        """Note, at frame time ``t``, signals gone stale and workload holds run out.

        Cheap to call on every frame: it does work only once ``t`` reaches
        ``next_expiry``.
        """
        if t < self.next_expiry:
            return
        following = math.inf
        for name, sig in self._signals.items():
            if sig.time == -math.inf:
                continue
            expiry = sig.time + sig.max_age
            if t > expiry:
                if name not in self._expired:
                    self._expired.add(name)
                    self.changes += 1
            elif expiry < following:
                following = expiry
        if self._hold_pending:
            if t >= self._high_until:
                self._hold_pending = False
                self.changes += 1
            elif self._high_until < following:
                following = self._high_until
        self.next_expiry = following

    # ------------------------------------------------------------------ queries
    def ages(self, now: float) -> dict[str, float | None]:
        """Seconds since each signal's last frame at ``now`` (None: never received; negative: newer than ``now``)."""
        # On the logged decision path: plain arithmetic, no calls.
        return {name: (now - t) if (t := sig.time) != -math.inf else None for name, sig in self._signals.items()}

    def snapshot(self, now: float | None = None) -> StateSnapshot:
        """The state at ``now`` (default: the latest frame time).  Never reads a clock.

        A ``now`` that is not a finite number gives a state with everything unknown.
        """
        if now is None:
            now = self.latest_time
        values: dict[str, Any] = {}
        ages: dict[str, float | None] = {}
        unknown: dict[str, str] = {}
        bad_now = now is not None and now - now != 0.0
        for name, sig in self._signals.items():
            if sig.time == -math.inf or now is None or bad_now:
                values[name] = None
                ages[name] = None
                unknown[name] = f"no valid time: now is {now}" if bad_now else "never received"
                continue
            age = now - sig.time
            ages[name] = age
            if age > sig.max_age:
                values[name] = None
                if sig.rejected:
                    unknown[name] = f"{sig.rejected} (no plausible sample for {age:.3f} s, max {sig.max_age:.3f} s)"
                else:
                    unknown[name] = f"stale: last frame {age:.3f} s ago (max {sig.max_age:.3f} s)"
            elif age < 0.0:
                values[name] = None
                unknown[name] = f"newer than now: frame at {sig.time:.3f} s, now {now:.3f} s"
            else:
                values[name] = sig.value
                if sig.value is None:
                    unknown[name] = sig.why_unknown
        for cross in self._cross.values():
            value = values[cross.signal]
            if value is None:
                continue
            reference = values[cross.reference]
            unit = CANONICAL_SIGNALS[cross.signal].unit
            if reference is None:
                # Declared checked and not checkable: unverifiable data is unknown (fail closed).
                values[cross.signal] = None
                why = unknown.get(cross.reference, "unknown")
                unknown[cross.signal] = f"cannot be cross-checked: {cross.label} is {why}"
            elif abs(value - reference) > (allowed := cross.allowed(reference)):
                values[cross.signal] = None
                unknown[cross.signal] = (
                    f"cross-check failed: {value:g} {unit} against {reference:g} {unit} from {cross.label} "
                    f"(more than {allowed:g} {unit} apart)"
                )
        for name in CANONICAL_SIGNALS:
            if name not in values:
                values[name] = None
                ages[name] = None
                unknown[name] = NOT_MAPPED
        driving, driving_why = self._driving_state(values)
        if driving is DrivingState.UNKNOWN:
            # A car whose driving we cannot see may be in any manoeuvre.
            workload, workload_why = Workload.UNKNOWN, "driving state unknown"
        else:
            workload, workload_why = self._workload(values, now if not bad_now else None)
        if driving_why:
            unknown["driving_state"] = driving_why
        if workload_why:
            unknown["workload"] = workload_why
        # The evaluator's input spells every unknown field None, and values are plain strings.
        values["driving_state"] = None if driving is DrivingState.UNKNOWN else driving.value
        values["workload"] = None if workload is Workload.UNKNOWN else workload.value
        if self.config.bands:
            values["speed_band"] = (
                None if self._band is None or values["speed"] is None else self.config.bands[self._band][0]
            )
        return StateSnapshot(None if bad_now else now, values, ages, unknown, driving, workload)

    def _driving_state(self, values: Mapping[str, Any]) -> tuple[DrivingState, str]:
        gear, speed = values.get("gear"), values.get("speed")
        if gear is None or speed is None or self._standstill is None:
            missing = [name for name, v in (("speed", speed), ("gear", gear)) if v is None]
            return DrivingState.UNKNOWN, f"{' and '.join(missing) or 'speed history'} unknown"
        if gear == "P":
            if self._standstill:
                return DrivingState.PARKED, ""
            # NHTSA: "stopped and in Park".  P while rolling is a sensor we cannot believe.
            return DrivingState.UNKNOWN, f"gear P while not standing still (speed {speed:g} km/h): implausible"
        return (DrivingState.STATIONARY if self._standstill else DrivingState.MOVING), ""

    def _workload(self, values: Mapping[str, Any], now: float | None) -> tuple[Workload, str]:
        unknown = ""
        for trig, active in zip(self.config.triggers, self._trigger_active, strict=True):
            if trig.signal not in self._signals:
                continue
            if values.get(trig.signal) is None or active is None:
                unknown = unknown or f"{trig.signal} unknown (a workload trigger reads it)"
            elif active:
                return Workload.HIGH, ""
        if now is not None and now < self._high_until:
            return Workload.HIGH, ""
        return (Workload.UNKNOWN, unknown) if unknown else (Workload.LOW, "")


def _cell(thresholds: tuple[float, ...], value: Any) -> Any:
    """Which interval of ``thresholds`` holds ``value``, telling equality apart."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    i = bisect_right(thresholds, value)
    return 2 * i + (1 if i and thresholds[i - 1] == value else 0)
