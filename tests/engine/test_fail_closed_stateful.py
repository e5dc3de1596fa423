"""The fail-closed invariant, stateful: random frame streams (good, corrupted, SNA, truncated,
repeated, mistimed) and requests at random times, against a model of what the test knows.

The model keeps, per signal, the values a receiver could believe: the value of the last good
frame, and after a jump plausibility may reject, the value before it too; a corrupted,
truncated or SNA frame leaves nothing to believe.  A value is believable while it is fresh
(not older than max_age at ``now``, not newer than ``now``).  After every step:

- nothing is known to the engine that the model cannot believe, with the value it believes;
- video, an image or the keyboard (NHTSA: not unless stopped and in Park) are allowed only when
  the model can believe gear P and a standstill;
- when the model can believe nothing at all, every request gets exactly the decision of the
  most demanding state (every signal unknown);
- a decision never raises and is one of the four outcomes.
"""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from safety import Engine, Outcome
from safety.replay.timeline import BUILTIN_PROBES

LOCKED_OUT = ("video", "image", "keyboard")
PROBES = {p["id"]: p for p in BUILTIN_PROBES}
STANDSTILL_OFF = 2.0  # km/h: the default policy's standstill holds up to here (hysteresis)
GEARS = ("P", "R", "N", "D")
# Per message: the canonical signal it carries and its max_age (the demo sedan's profile).
SIGNALS = {"VEHICLE_SPEED": ("speed", 0.3), "TRANSMISSION": ("gear", 0.3), "STEERING": ("steering_angle", 0.1)}


def _all_unknown_decisions() -> dict[str, str]:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    return {pid: engine.decide(p, now=0.0).outcome.value for pid, p in PROBES.items()}


ALL_UNKNOWN = _all_unknown_decisions()


class FailClosed(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
        self.car = DemoCar(self.engine)
        self.now = 1000.0
        self.sent: dict[str, float] = {"VEHICLE_SPEED": 0.0, "TRANSMISSION": 0.0, "STEERING": 0.0}
        # signal -> [(frame time, value)]: what a receiver could believe.
        self.believable: dict[str, list[tuple[float, Any]]] = {"speed": [], "gear": [], "steering_angle": []}
        self.last_values: dict[str, tuple[dict[str, Any], Any]] = {}  # message -> (DBC values, canonical value)

    # ------------------------------------------------------------------ frames
    def _send(
        self, name: str, *, seal: bool = True, corrupt: str = "", stamp: float | None = None, **values: Any
    ) -> None:
        frame = self.car.frame(name, self.now if stamp is None else stamp, seal=seal, **values)
        if corrupt == "checksum":
            frame.data[7] ^= 0x5A
        elif corrupt == "truncated":
            frame.data = frame.data[:3]
            frame.dlc = 3
        self.engine.on_frame(frame)

    def _good(self, message: str, value: Any, *, values: dict[str, Any] | None = None) -> None:
        """A good frame: believed at once when plausible against every value believed now (well
        inside the engine's limits); otherwise plausibility may reject it, and what was believed
        before it stays believable beside it."""
        if values is not None:
            self.last_values[message] = (values, value)
        signal, _ = SIGNALS[message]
        fresh = [c for c in self.believable[signal] if self._fresh(message, c[0])]
        if isinstance(value, float) and signal == "speed":
            sure = all(abs(value - v) <= 0.5 + 20.0 * (self.now - t) for t, v in fresh)
        else:
            sure = signal == "gear"  # a gear is not judged for plausibility; an angle may be
        self.believable[signal] = [(self.now, value)] if sure else [*fresh, (self.now, value)]

    @rule(delta=st.floats(-20.0, 20.0))
    def speed_frame(self, delta: float) -> None:
        """A speed near the last one sent: at most 20 km/h per second away (or 0.5 km/h at once)."""
        dt = self.now - self.sent.get("VEHICLE_SPEED", self.now)
        step = max(-0.5 - 20 * dt, min(0.5 + 20 * dt, delta))
        speed = round(min(300.0, max(0.0, self.sent.get("speed_value", 0.0) + step)), 2)
        self._send("VEHICLE_SPEED", VehicleSpeed=speed)
        self.sent["VEHICLE_SPEED"], self.sent["speed_value"] = self.now, speed
        self._good("VEHICLE_SPEED", speed, values={"VehicleSpeed": speed})

    @rule(speed=st.sampled_from([0.0, 1.0, 30.0, 120.0, 250.0]))
    def speed_jump(self, speed: float) -> None:
        """Any speed at once: plausibility may reject it, leaving the value before it standing."""
        self._send("VEHICLE_SPEED", VehicleSpeed=speed)
        self.sent["VEHICLE_SPEED"], self.sent["speed_value"] = self.now, speed
        self._good("VEHICLE_SPEED", speed, values={"VehicleSpeed": speed})

    @rule(gear=st.sampled_from(GEARS))
    def gear_frame(self, gear: str) -> None:
        values = {"GearPosition": {"P": "PARK", "R": "REVERSE", "N": "NEUTRAL", "D": "DRIVE"}[gear]}
        self._send("TRANSMISSION", **values)
        self._good("TRANSMISSION", gear, values=values)

    @rule(angle=st.integers(-200, 200))
    def steering_frame(self, angle: int) -> None:
        self._send("STEERING", SteeringAngle=angle * 1.5)
        self._good("STEERING", angle * 1.5, values={"SteeringAngle": angle * 1.5})

    @rule(
        message=st.sampled_from(sorted(SIGNALS)),
        corrupt=st.sampled_from(["checksum", "truncated", "sna"]),
    )
    def bad_frame(self, message: str, corrupt: str) -> None:
        """A frame that must make its signal unknown: a bad checksum, cut short, or SNA."""
        values: dict[str, Any] = {}
        if corrupt == "sna":
            if message == "STEERING":
                corrupt = "checksum"  # the steering angle has no SNA value
            else:
                values = {"VehicleSpeed": 655.35} if message == "VEHICLE_SPEED" else {"GearPosition": "SNA"}
        self._send(message, corrupt="" if corrupt == "sna" else corrupt, **values)
        self.believable[SIGNALS[message][0]] = []

    @rule(message=st.sampled_from(sorted(SIGNALS)), stamp=st.sampled_from([math.nan, math.inf, -math.inf, -5.0, 1e18]))
    def mistimed_frame(self, message: str, stamp: float) -> None:
        """A frame stamped NaN, ±inf, in the past or far in the future: refused (or, if ever accepted,
        newer than now and so unknown); the model believes nothing new from it."""
        t = stamp if stamp not in (-5.0,) else self.now - 5.0
        values = {"VEHICLE_SPEED": {"VehicleSpeed": 0.0}, "TRANSMISSION": {"GearPosition": "PARK"}}.get(message, {})
        self._send(message, stamp=t, **values)

    @rule(message=st.sampled_from(sorted(SIGNALS)))
    def repeated_counter(self, message: str) -> None:
        """The last frame's alive counter again, with the last values: a repeat is dropped (and a
        counter repeated three times is frozen); after a failure it may count as a good frame."""
        if message not in self.last_values:
            return
        self.car.counters[message] -= 1
        values, believed = self.last_values[message]
        self._send(message, **values)
        self._good(message, believed)

    @rule(dt=st.one_of(st.floats(0.0, 0.12), st.floats(0.12, 3.0)))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    # ------------------------------------------------------------------ the invariant
    def _fresh(self, message: str, t: float) -> bool:
        _, max_age = SIGNALS[message]
        return 0.0 <= self.now - t <= max_age

    def _candidates(self, signal: str) -> list[Any]:
        message = next(m for m, (s, _) in SIGNALS.items() if s == signal)
        return [v for t, v in self.believable[signal] if self._fresh(message, t)]

    @invariant()
    def known_only_what_can_be_believed(self) -> None:
        if not hasattr(self, "engine"):
            return
        snapshot = self.engine.state(now=self.now)
        for signal in ("speed", "gear", "steering_angle"):
            value = snapshot.values.get(signal)
            if value is not None:
                candidates = self._candidates(signal)
                assert any(
                    value == pytest.approx(c, abs=0.06) if isinstance(c, float) else value == c for c in candidates
                ), (
                    signal,
                    value,
                    self.believable[signal],
                    self.now,
                )

    @invariant()
    def lockouts_hold_unless_parked_can_be_believed(self) -> None:
        if not hasattr(self, "engine"):
            return
        decisions = {pid: self.engine.decide(p, now=self.now) for pid, p in PROBES.items()}
        assert all(isinstance(d.outcome, Outcome) for d in decisions.values())
        parked = "P" in self._candidates("gear") and any(v <= STANDSTILL_OFF for v in self._candidates("speed"))
        for pid in LOCKED_OUT:
            if decisions[pid].outcome is Outcome.ALLOW:
                assert parked, (pid, self.believable, self.now)
        if not any(self._candidates(s) for s in self.believable):
            assert {pid: d.outcome.value for pid, d in decisions.items()} == ALL_UNKNOWN


FailClosed.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestFailClosed = FailClosed.TestCase
