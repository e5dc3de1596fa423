"""Every threshold of the vehicle state decided exactly at, just below and just above it (#13).

Mutation testing found that no test decided on a boundary: ``age > max_age`` -> ``>=`` and every
threshold comparison survived.  Values here are exact in binary floating point (0.25 s, 0.5 km/h,
90 degrees), so "exactly at" is exactly at.  Each test names the mutants it kills; each was
checked to fail with them applied.
"""

from __future__ import annotations

import math

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine, Outcome
from safety.vehicle.state import StateConfig, Trigger, VehicleState

EPS = 2.0**-10  # just below / just above, still exact
AGES = {"speed": 0.25, "gear": 0.25, "steering_angle": 0.25, "steering_rate": 0.25}
CONFIG = StateConfig(
    standstill_on=0.5,
    standstill_off=2.0,
    triggers=(Trigger("steering_angle", on=90.0, off=45.0, use_abs=True),),
    hold_s=3.0,
    bands=(("low", 32.0), ("mid", 80.0), ("high", math.inf)),
    band_hysteresis=2.0,
    dwell_s=1.5,
)


def state() -> VehicleState:
    return VehicleState(AGES, CONFIG)


# ---------------------------------------------------------------------- staleness
@pytest.mark.parametrize(("now", "known"), [(1.25, True), (1.25 - EPS, True), (1.25 + EPS, False)])
def test_a_sample_is_fresh_up_to_exactly_max_age(now: float, known: bool) -> None:
    """Mutants: ``age > max_age`` -> ``>=`` (in snapshot and in expire)."""
    s = state()
    s.update("speed", 10.0, 1.0)
    s.expire(now)
    snap = s.snapshot(now)
    assert (snap.values["speed"] is not None) is known
    if not known:
        assert snap.unknown["speed"] == "stale: last frame 0.251 s ago (max 0.250 s)"


def test_ages_are_now_minus_the_frame_time() -> None:
    """Mutant: ``ages()`` computing ``now + t``."""
    s = state()
    s.update("speed", 10.0, 4.0)
    assert s.ages(10.0)["speed"] == 6.0
    assert s.ages(3.0)["speed"] == -1.0  # newer than now: negative
    assert s.ages(10.0)["gear"] is None


@pytest.mark.parametrize(("offset", "outcome"), [(-EPS, Outcome.DEFER), (0.0, Outcome.ALLOW)])
def test_the_engine_sees_the_hold_end_exactly_hold_s_after_the_last_trigger(offset: float, outcome: Outcome) -> None:
    """Mutant: ``t >= self._high_until`` -> ``>`` in ``expire``: the engine, reusing its snapshot
    until the state changes, would keep the workload high at exactly the end of the hold."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    car = DemoCar(engine)
    read_aloud = request(modality="voice")
    t = 0.0
    while t <= 3.0:
        angle = 100.5 if t == 0.0 else 0.0  # a sharp turn at t = 0 only: the 3 s hold runs from it
        car.send("STEERING", t, SteeringAngle=angle)
        car.send("VEHICLE_SPEED", t, VehicleSpeed=30.0)
        car.send("TRANSMISSION", t, GearPosition="DRIVE")
        car.send("BODY_STATUS", t, ParkingBrake="RELEASED")
        car.send("BRAKE", t)
        t += 0.0625
    assert engine.decide(read_aloud, now=3.0 - 2 * EPS).outcome is Outcome.DEFER  # the hold (IDIS)
    assert engine.decide(read_aloud, now=3.0 + offset).outcome is outcome


def test_a_signal_gone_stale_with_no_further_frames_is_unknown_to_the_engine() -> None:
    """Mutant: the loop of ``VehicleState.expire`` removed.  The engine reuses its snapshot while
    nothing changed; only expiry tells it that time alone made a signal stale."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).hold(0.0, 2.0, speed=0.0, gear="P")
    video = request(content="video", category="media", kind="interaction", priority="low")
    assert engine.decide(video, now=2.0).outcome is Outcome.ALLOW  # parked
    later = engine.decide(video, now=2.0 + 0.5)  # gear and speed frames are 0.5 s old (max 0.3 s)
    assert later.outcome is Outcome.DENY
    assert engine.state(now=2.5).unknown["speed"].startswith("stale: last frame")


# ---------------------------------------------------------------------- standstill
@pytest.mark.parametrize(("speed", "still"), [(0.5, True), (0.5 - EPS, True), (0.5 + EPS, False)])
def test_a_standstill_at_start_is_at_or_below_on(speed: float, still: bool) -> None:
    """Mutants: ``speed <= standstill_on`` -> ``<``."""
    s = state()
    s.update("gear", "D", 0.0)
    s.update("speed", speed, 0.0)
    assert s.snapshot(0.0).values["driving_state"] == ("stationary" if still else "moving")


@pytest.mark.parametrize(("speed", "still"), [(2.0, True), (2.0 - EPS, True), (2.0 + EPS, False)])
def test_a_standstill_ends_only_above_off(speed: float, still: bool) -> None:
    """Mutants: ``speed > standstill_off`` -> ``>=``."""
    s = state()
    s.update("gear", "D", 0.0)
    s.update("speed", 0.0, 0.0)
    s.update("speed", speed, 0.125)
    assert s.snapshot(0.125).values["driving_state"] == ("stationary" if still else "moving")


@pytest.mark.parametrize(("held", "still"), [(1.5, True), (1.5 - EPS, False)])
def test_moving_to_stationary_waits_exactly_the_dwell(held: float, still: bool) -> None:
    """Mutants: ``t - still_since >= dwell`` -> ``>``."""
    s = state()
    s.update("gear", "D", 0.0)
    s.update("speed", 3.0, 0.0)  # moving; 3 -> 0 km/h in 0.125 s is a plausible stop
    t = 0.125
    steps = [t + k * 0.125 for k in range(int(held / 0.125) + 1)] + [t + held]
    for when in steps:  # speed and gear kept fresh
        s.update("speed", 0.0, when)
        s.update("gear", "D", when)
    assert s.snapshot(t + held).values["driving_state"] == ("stationary" if still else "moving")


def test_an_invalid_speed_resets_the_standstill_hysteresis() -> None:
    """Mutant: the reset of the standstill (and band) when the speed goes invalid removed.
    Standing still, then SNA, then 1 km/h (inside the band): a fresh start, so moving."""
    s = state()
    s.update("gear", "D", 0.0)
    s.update("speed", 0.0, 0.0)
    s.update("speed", None, 0.125, invalid=True)
    s.update("speed", 1.0, 0.25)
    assert s.snapshot(0.25).values["driving_state"] == "moving"


# ---------------------------------------------------------------------- workload triggers and hold
def _turning(angle: float) -> VehicleState:
    s = state()
    s.update("gear", "D", 0.0)
    s.update("speed", 20.0, 0.0)
    s.update("steering_angle", angle, 0.0)
    return s


@pytest.mark.parametrize(("angle", "high"), [(90.0, True), (90.0 - EPS, False), (-90.0, True), (-90.0 + EPS, False)])
def test_a_trigger_fires_at_or_above_on(angle: float, high: bool) -> None:
    """Mutants: ``x >= trig.on`` -> ``>``; ``abs`` removed."""
    s = _turning(10.0)
    s.update("steering_angle", angle, 0.125)
    assert s.snapshot(0.125).values["workload"] == ("high" if high else "low")


@pytest.mark.parametrize(("angle", "active"), [(45.0, True), (45.0 - EPS, False)])
def test_a_trigger_holds_until_below_off(angle: float, active: bool) -> None:
    """Mutants: ``x >= trig.off`` -> ``>`` (the trigger itself, seen past the hold)."""
    s = _turning(100.0)
    for k in range(1, 30):  # keep the angle fresh past the 3 s hold
        s.update("steering_angle", angle, k * 0.125)
        s.update("speed", 20.0, k * 0.125)
        s.update("gear", "D", k * 0.125)
    t = 29 * 0.125  # 3.625 s: the hold from t=0 has ended
    s.expire(t)
    assert s.snapshot(t).values["workload"] == ("high" if active else "low")


@pytest.mark.parametrize(("now", "high"), [(3.0 - EPS, True), (3.0, False)])
def test_the_hold_ends_exactly_hold_s_after_the_last_trigger(now: float, high: bool) -> None:
    """Mutants: the end of the workload hold (``t >= high_until``) -> ``>``."""
    s = _turning(100.0)
    s.update("steering_angle", 0.0, 0.125)  # the manoeuvre ends; the hold runs from t=0
    for t in (1.0, 2.0, now):
        s.update("steering_angle", 0.0, t)
        s.update("speed", 20.0, t)
        s.update("gear", "D", t)
    s.expire(now)
    assert s.snapshot(now).values["workload"] == ("high" if high else "low")


# ---------------------------------------------------------------------- speed bands
@pytest.mark.parametrize(("speed", "band"), [(32.0, "mid"), (32.0 - EPS, "low"), (80.0, "high"), (80.0 - EPS, "mid")])
def test_a_band_starts_at_its_lower_edge(speed: float, band: str) -> None:
    """Mutants: ``bisect_right`` -> ``bisect_left``, ``speed >= edges[up]`` -> ``>``."""
    s = state()
    s.update("speed", speed, 0.0)
    assert s.snapshot(0.0).values["speed_band"] == band
    # Climbing into it from just under the band below (no restart: the speed stays fresh).
    up = state()
    up.update("speed", speed - 1.0 if band != "low" else speed - 0.5, 0.0)
    up.update("speed", speed, 0.125)
    assert up.snapshot(0.125).values["speed_band"] == band


def test_a_stale_speed_has_no_speed_band() -> None:
    """Mutant: ``self._band is None or values["speed"] is None`` -> ``and``."""
    s = state()
    s.update("speed", 50.0, 0.0)
    assert s.snapshot(0.0).values["speed_band"] == "mid"
    s.expire(1.0)
    assert s.snapshot(1.0).values["speed_band"] is None


# ---------------------------------------------------------------------- plausibility
@pytest.mark.parametrize(("speed", "known"), [(400.0, True), (400.0 + EPS, False), (-60.0, True), (-60.0 - EPS, False)])
def test_the_physical_range_includes_its_limits(speed: float, known: bool) -> None:
    """Mutants: ``low <= value <= high`` -> ``<``."""
    s = state()
    s.update("speed", speed, 0.0)
    assert (s.snapshot(0.0).values["speed"] is not None) is known


@pytest.mark.parametrize(("speed", "accepted"), [(16.0, True), (16.0 + EPS, False), (4.0, True), (4.0 - EPS, False)])
def test_the_jump_limit_includes_its_edge(speed: float, accepted: bool) -> None:
    """Mutants: ``abs(value - anchor) <= max_rate * dt + tolerance`` -> ``<``, ``-`` -> ``+``.
    From 10 km/h, 0.125 s later: 40 km/h/s x 0.125 s + 1 km/h = 6 km/h either way."""
    s = state()
    s.update("speed", 10.0, 0.0)
    s.update("speed", speed, 0.125)
    assert s.snapshot(0.125).values["speed"] == (speed if accepted else 10.0)
