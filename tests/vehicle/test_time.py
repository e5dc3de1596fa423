"""Time that is not time (#10, item 9): NaN, infinite, future, huge and backwards timestamps.

Reproduced first with the real demo DBC and the engine, then fixed: a frame whose time cannot be
believed is rejected and counted; a sample newer than ``now`` is unknown; ``now`` itself must be a
finite number.
"""

from __future__ import annotations

import math
import time

import can
import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import Engine
from safety.vehicle.state import StateConfig, VehicleState

VIDEO = request(kind="interaction", category="media", modality="visual", content="video", priority="normal")
KEYBOARD = request(kind="interaction", category="message", modality="manual", content="keyboard", priority="normal")


def engine() -> tuple[Engine, DemoCar]:
    e = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    return e, DemoCar(e)


def test_a_nan_stamped_gear_p_is_not_fresh_forever() -> None:
    e, car = engine()
    car.send("TRANSMISSION", math.nan, GearPosition="PARK")
    for i in range(301):  # 0 -> 30 km/h over 3 s, no more gear frames
        car.send("VEHICLE_SPEED", i * 0.01, VehicleSpeed=i * 0.1)
    state = e.state()
    assert state.values["gear"] is None
    assert state.unknown["gear"] == "never received"
    assert e.decide(VIDEO).outcome.value == "deny"
    assert e.decide(KEYBOARD).outcome.value != "allow"
    assert e.counters["frames_rejected"] == {"time-not-finite": 1}


@pytest.mark.parametrize("stamp", [math.inf, -math.inf])
def test_infinite_stamps_are_rejected(stamp: float) -> None:
    e, car = engine()
    car.state(0.0, speed=0.0, gear="P")
    car.send("VEHICLE_SPEED", stamp, VehicleSpeed=80.0)
    assert e.state().values["speed"] == 0.0
    assert e.counters["frames_rejected"] == {"time-not-finite": 1}


def test_one_frame_at_1e18_does_not_freeze_later_decisions() -> None:
    e, car = engine()
    car.hold(0.0, 1.0, speed=50.0, gear="D")
    car.send("VEHICLE_SPEED", 1e18, VehicleSpeed=50.0)
    car.hold(1.01, 3.0, speed=0.0, gear="P")
    state = e.state()
    assert state.time == pytest.approx(3.0)
    assert state.driving_state == "parked"
    assert e.decide(VIDEO).outcome.value == "allow"
    assert e.counters["frames_rejected"] == {"time-jump": 1}


def test_a_real_jump_of_the_time_base_is_followed_after_a_few_frames() -> None:
    """A logger restarted an hour later: the new base is believed once several frames agree."""
    e, car = engine()
    car.hold(0.0, 1.0, speed=0.0, gear="P")
    car.hold(3600.0, 3601.0, speed=0.0, gear="P")
    state = e.state()
    assert state.time == pytest.approx(3601.0)
    assert state.driving_state == "parked"
    assert 0 < e.counters["frames_rejected"]["time-jump"] <= 3


def test_after_a_new_time_base_old_samples_are_unknown_even_at_an_old_now() -> None:
    """Found by the stateful fail-closed test: gear P at t=1000, three frames of another message
    agreeing on 10**18 (a new time base), then gear R at 1000 (refused: 10**18 s backwards).
    Asked at now=1000, the engine still said gear P, fresh: a value the stream had moved past."""
    e, car = engine()
    car.send("TRANSMISSION", 1000.0, GearPosition="PARK")
    for _ in range(3):
        car.send("STEERING", 1e18, SteeringAngle=0.0)
    car.send("TRANSMISSION", 1000.0, GearPosition="REVERSE")
    state = e.state(now=1000.0)
    assert state.values["gear"] is None
    assert state.unknown["gear"] == "from before the time base moved to 1000000000000000000.000 s"


def test_a_frame_older_than_the_latest_of_its_message_is_dropped() -> None:
    e, car = engine()
    car.state(1.0, speed=50.0, gear="D")
    car.send("VEHICLE_SPEED", 0.99, VehicleSpeed=0.0)  # late: older than the 1.0 sample
    assert e.state().values["speed"] == 50.0
    assert e.counters["frames_rejected"] == {"out-of-order": 1}
    car.send("VEHICLE_SPEED", 1.0, VehicleSpeed=50.0)  # a duplicate time is not older
    assert e.counters["frames_rejected"] == {"out-of-order": 1}


def test_a_sample_newer_than_now_is_unknown() -> None:
    e, car = engine()
    car.state(5.0, speed=0.0, gear="P")
    state = e.state(4.0)
    assert state.values["gear"] is None
    assert state.unknown["gear"] == "newer than now: frame at 5.000 s, now 4.000 s"
    assert state.driving_state == "unknown"
    assert e.decide(VIDEO, now=4.0).outcome.value == "deny"


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_a_now_that_is_not_a_finite_number_fails_closed(now: float) -> None:
    e, car = engine()
    car.state(5.0, speed=0.0, gear="P")
    decision = e.decide(VIDEO, now=now)
    assert decision.outcome.value == "deny"
    assert decision.rules == ("request-invalid",)
    assert decision.reason == f"invalid request: now must be a finite number of seconds, got {now}"
    assert e.verdict(VIDEO, now=now).rules == ("request-invalid",)
    assert e.state(now).driving_state == "unknown"


def test_tracker_ignores_a_sample_at_a_time_that_is_not_finite() -> None:
    s = VehicleState({"speed": 0.3, "gear": 0.3})
    s.update("speed", 10.0, 1.0)
    s.update("speed", 90.0, math.nan)
    s.update("gear", "P", math.inf)
    assert s.latest_time == 1.0
    assert s.snapshot().values["speed"] == 10.0
    assert s.counters.bad_time == {"speed": 1, "gear": 1}


# A stream of (signal, value, time) with every kind of time a hostile log can hold.
TIMES = st.one_of(
    st.floats(0.0, 100.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e18, -1e18, 0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=300, deadline=None)
@given(
    samples=st.lists(st.tuples(st.sampled_from(["speed", "gear"]), st.booleans(), TIMES), max_size=30),
    now=TIMES,
)
def test_parked_only_on_fresh_samples_of_p_at_standstill(samples: list[tuple[str, bool, float]], now: float) -> None:
    """The fail-closed invariant over timestamps: parked only when, at ``now``, the latest samples of
    gear and speed are fresh (0 <= age <= max_age), say P and a standstill."""
    s = VehicleState({"speed": 0.3, "gear": 0.3}, StateConfig(dwell_s=0.0))
    for name, flag, t in samples:
        s.update(name, ("P" if flag else "D") if name == "gear" else (0.0 if flag else 50.0), t)
    snap = s.snapshot(now)
    if snap.driving_state == "parked":
        assert math.isfinite(now)
        gears = [(flag, t) for n, flag, t in samples if n == "gear" and math.isfinite(t)]
        assert gears and gears[-1][0] and 0.0 <= now - gears[-1][1] <= 0.3  # the gear the tracker holds
        assert any(n == "speed" and flag and math.isfinite(t) and 0.0 <= now - t <= 0.3 for n, flag, t in samples)


def test_virtual_bus_frames_with_a_nan_stamp_are_rejected() -> None:
    """The same through a real python-can virtual bus and a Notifier."""
    e, car = engine()
    with (
        can.Bus(interface="virtual", channel="t-nan", preserve_timestamps=True) as tx,
        can.Bus(interface="virtual", channel="t-nan") as rx,
    ):
        notifier = can.Notifier(rx, [e])
        try:
            tx.send(car.frame("TRANSMISSION", math.nan, GearPosition="PARK"))
            tx.send(car.frame("VEHICLE_SPEED", 1.0, VehicleSpeed=20.0))
            for _ in range(200):
                if e.frames_seen >= 2:
                    break
                time.sleep(0.01)
        finally:
            notifier.stop()
    assert e.frames_seen == 2
    assert e.state().values["gear"] is None
    assert e.counters["frames_rejected"] == {"time-not-finite": 1}
