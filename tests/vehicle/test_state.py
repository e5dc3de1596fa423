"""Vehicle state: staleness, fail closed, hysteresis, plausibility (the tracker itself)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from safety.vehicle.state import StateConfig, Trigger, VehicleState

AGES = {"speed": 0.3, "gear": 0.3, "steering_angle": 0.05}
CONFIG = StateConfig(
    standstill_on=0.5,
    standstill_off=2.0,
    triggers=(Trigger("steering_angle", 90.0, 45.0, use_abs=True), Trigger("gear", values=frozenset({"R"}))),
    hold_s=1.0,
    bands=(("crawl", 10.0), ("city", 60.0), ("highway", float("inf"))),
    band_hysteresis=2.0,
    dwell_s=0.0,  # hysteresis alone here; the dwell has its own tests (test_derived_states.py)
)


def tracker() -> VehicleState:
    return VehicleState(AGES, CONFIG)


def drive(state: VehicleState, t: float, speed: float, gear: str = "D", angle: float = 0.0) -> None:
    state.update("speed", speed, t)
    state.update("gear", gear, t)
    state.update("steering_angle", angle, t)


def test_never_received_is_unknown() -> None:
    snap = tracker().snapshot(5.0)
    assert (snap.driving_state, snap.workload) == ("unknown", "unknown")
    assert snap.unknown["speed"] == "never received"


def test_staleness_by_max_age() -> None:
    s = tracker()
    drive(s, 1.0, 50.0)
    assert s.snapshot(1.04).driving_state == "moving"
    late = s.snapshot(1.31)
    assert late.driving_state == "unknown"
    assert late.unknown["speed"] == "stale: last frame 0.310 s ago (max 0.300 s)"
    assert late.values["speed"] is None
    assert s.snapshot(1.06).workload == "unknown"  # steering angle stale after 50 ms


def test_parked_stationary_moving() -> None:
    s = tracker()
    drive(s, 0.0, 0.0, "P")
    assert s.snapshot().driving_state == "parked"
    drive(s, 0.1, 0.0, "D")
    assert s.snapshot().driving_state == "stationary"
    drive(s, 0.2, 1.5, "D")  # creeping below the exit threshold: still standing
    assert s.snapshot().driving_state == "stationary"
    drive(s, 0.3, 2.5, "D")
    assert s.snapshot().driving_state == "moving"
    drive(s, 0.4, 1.0, "D")  # above the entry threshold: still moving
    assert s.snapshot().driving_state == "moving"
    drive(s, 0.5, 0.3, "D")
    assert s.snapshot().driving_state == "stationary"


def test_starting_between_thresholds_counts_as_moving() -> None:
    s = tracker()
    drive(s, 0.0, 1.0, "D")
    assert s.snapshot().driving_state == "moving"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.6, max_value=1.99), min_size=2, max_size=60))
def test_no_flapping_between_thresholds(speeds: list[float]) -> None:
    """A speed hovering between the two thresholds never changes the driving state."""
    s = tracker()
    drive(s, 0.0, 0.0, "D")  # standing
    for i, v in enumerate(speeds, start=1):
        drive(s, i * 0.02, v, "D")
        assert s.snapshot().driving_state == "stationary"
    s2 = tracker()
    drive(s2, 0.0, 2.5, "D")  # moving
    for i, v in enumerate(speeds, start=1):
        drive(s2, i * 0.02, v, "D")
        assert s2.snapshot().driving_state == "moving"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=46.0, max_value=89.9), min_size=1, max_size=60))
def test_workload_hysteresis_holds(angles: list[float]) -> None:
    s = tracker()
    drive(s, 0.0, 30.0, "D", 40.0)
    for i, a in enumerate(angles, start=1):
        drive(s, i * 0.04, 30.0, "D", a)
        assert s.snapshot().workload == "low"  # never reached the entry threshold
    t = len(angles) * 0.04
    for a in (-60.0, -95.0):  # abs: either direction
        t += 0.04
        drive(s, t, 30.0, "D", a)
    assert s.snapshot().workload == "high"
    for i, a in enumerate(angles, start=1):
        drive(s, t + i * 0.04, 30.0, "D", -a)
        assert s.snapshot().workload == "high"  # not released above the exit threshold


def test_workload_hold_time_and_reverse() -> None:
    s = tracker()
    drive(s, 0.0, 5.0, "R")
    assert s.snapshot().workload == "high"
    drive(s, 0.02, 5.0, "D")
    assert s.snapshot(0.03).workload == "high"  # held for 1 s after leaving R
    for i in range(1, 60):
        drive(s, 0.02 + i * 0.02, 5.0, "D")
    assert s.snapshot().workload == "low"


def test_speed_bands_with_hysteresis() -> None:
    s = tracker()
    t = 0.0
    seen = []
    # Steps a car can make in 0.25 s (under 40 km/h per s, see the plausibility tests).
    for v in (5, 9.9, 10, 9, 8.5, 7.9, 17, 27, 37, 47, 57, 59, 60, 58.5, 57.9, 67):
        t += 0.25
        drive(s, t, float(v))
        seen.append(s.snapshot().values["speed_band"])
    assert seen == ["crawl", "crawl", "city", "city", "city", "crawl"] + ["city"] * 6 + [
        "highway",
        "highway",
        "city",
        "highway",
    ]


def test_out_of_physical_range_is_implausible() -> None:
    s = tracker()
    s.update("speed", 900.0, 0.0)
    assert s.snapshot().values["speed"] is None
    assert s.snapshot().unknown["speed"] == "implausible value 900 km/h (outside -60..400)"


def test_derived_rate_from_angle() -> None:
    s = tracker()
    for i in range(30):
        s.update("steering_angle", i * 3.0, i * 0.01)  # 300 deg/s
    rate = s.snapshot().values["steering_rate"]
    assert rate is not None and abs(rate - 300.0) < 1e-6


SAMPLES = st.lists(
    st.tuples(
        st.sampled_from(["speed", "gear", "steering_angle"]),
        st.sampled_from([0.0, 0.3, 1.0, 2.5, 30.0, 50.0, 95.0, -95.0, None, "P", "D", "R"]),
        st.sampled_from([0.0, 0.01, 0.02, 0.2, 0.5]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(SAMPLES)
def test_repeated_values_fast_path_changes_nothing(samples: list[tuple[str, object, float]]) -> None:
    """Skipping work for a repeated value gives exactly the states the full path gives."""
    fast, full = tracker(), tracker()
    full.fast_repeats = False
    t = 0.0
    for name, value, dt in samples:
        if (name == "gear") != isinstance(value, str):
            value = None
        t += dt
        for s in (fast, full):
            s.update(name, value, t)
            s.expire(t)
        assert fast.snapshot(t) == full.snapshot(t)
        assert fast.changes == full.changes
        assert fast.snapshot(t + 0.5) == full.snapshot(t + 0.5)


def test_starting_inside_a_trigger_band_is_high() -> None:
    """At start-up a value between release and entry thresholds counts as high (fail closed)."""
    s = tracker()
    drive(s, 0.0, 30.0, "D", 60.0)
    assert s.snapshot().workload == "high"
    drive(s, 0.04, 30.0, "D", 40.0)
    assert s.snapshot().workload == "high"  # held for 1 s after the trigger releases
    assert s.snapshot(1.05).workload == "unknown"  # angle stale by then
    assert tracker().snapshot().workload == "unknown"


def test_carry_over_keeps_a_workload_hold() -> None:
    s = tracker()
    drive(s, 0.0, 30.0, "R")
    drive(s, 0.02, 30.0, "D")
    moved = s.carry_over(CONFIG)
    assert moved.snapshot(0.03).workload == "high"  # the 1 s hold after reverse survives a reload
    assert moved.snapshot(0.03).values["speed"] == 30.0
