"""A new time base (``VehicleState.rebase``) and a new policy (``carry_over``), decided exactly.

rebase: the stream's time moved (a logger restarted); carry_over: a reload keeps every signal's
latest sample under new thresholds.  Each test pins one thing the engine and replays rely on.
"""

from __future__ import annotations

from safety.vehicle.state import CrossCheck, DrivingState, StateConfig, Trigger, VehicleState, Workload

AGES = {"speed": 5.0, "gear": 5.0, "turn_signal": 5.0}
TURNING = Trigger("turn_signal", values=frozenset({"left"}))


def standing(state: VehicleState, t: float, speed: float = 0.0, gear: str = "D") -> None:
    state.update("speed", speed, t)
    state.update("gear", gear, t)
    state.update("turn_signal", "off", t)


# ------------------------------------------------------------------ rebase
def test_rebase_moves_the_latest_time_and_counts_a_change() -> None:
    state = VehicleState(AGES)
    standing(state, 100.0)
    before = state.changes
    state.rebase(50.0)
    assert state.changes == before + 1
    assert state.snapshot().time == 50.0
    assert state.snapshot().values["speed"] is None  # the old base's samples are not believed


def test_a_hold_in_force_runs_its_full_length_from_the_new_base() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=2.0))
    standing(state, 100.0)
    state.update("turn_signal", "left", 100.0)  # hold until 102
    state.rebase(50.0)
    standing(state, 50.5)
    assert state.snapshot(51.0).workload is Workload.HIGH
    assert state.snapshot(51.9).workload is Workload.HIGH
    before = state.changes
    state.expire(52.0)
    assert state.changes == before + 1  # the hold's end is a change: replays note it there
    assert state.snapshot(52.0).workload is Workload.LOW


def test_a_hold_that_ended_in_the_old_base_runs_again_after_a_base_before_its_end() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=2.0))
    standing(state, 100.0)
    state.update("turn_signal", "left", 100.0)
    state.update("turn_signal", "off", 100.5)  # hold until 102
    state.expire(103.0)
    assert state.snapshot(103.0).workload is Workload.LOW
    state.rebase(50.0)  # earlier than the hold's end: fail closed, the hold again from 50
    standing(state, 50.5)
    assert state.snapshot(51.0).workload is Workload.HIGH
    state.expire(52.0)
    assert state.snapshot(52.5).workload is Workload.LOW  # its full length from 50, not until the old 102


def test_a_base_exactly_at_the_end_of_an_ended_hold_does_not_renew_it() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=2.0))
    standing(state, 100.0)
    state.update("turn_signal", "left", 100.0)
    state.update("turn_signal", "off", 100.5)
    state.expire(103.0)
    state.rebase(102.0)
    standing(state, 102.5)
    assert state.snapshot(103.0).workload is Workload.LOW


def test_a_short_hold_renewed_by_a_rebase_still_ends_with_a_change() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=0.5))
    standing(state, 100.0)
    state.update("turn_signal", "left", 100.0)
    state.rebase(50.0)
    before = state.changes
    state.expire(50.5)
    assert state.changes == before + 1


def test_without_a_hold_a_rebase_arms_nothing() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=0.0))
    standing(state, 100.0)
    state.update("turn_signal", "left", 100.0)
    state.rebase(50.0)
    before = state.changes
    state.expire(50.0)
    assert state.changes == before


def test_after_a_rebase_the_standstill_starts_afresh() -> None:
    state = VehicleState(AGES)
    standing(state, 100.0)
    assert state.snapshot(100.0).driving_state is DrivingState.STATIONARY
    state.rebase(200.0)
    standing(state, 200.0, speed=1.0)  # inside the hysteresis band: a start-up there is moving
    assert state.snapshot(200.0).driving_state is DrivingState.MOVING


def test_a_rejected_jump_before_the_rebase_is_not_the_reason_after_it() -> None:
    state = VehicleState(AGES)
    state.update("speed", 10.0, 100.0)
    state.update("speed", 200.0, 100.01)  # a jump no car makes: rejected
    state.rebase(200.0)
    assert state.snapshot(200.0).unknown["speed"].startswith("stale: last frame 100.000 s ago")


def test_the_derived_rate_starts_afresh_after_a_rebase() -> None:
    state = VehicleState({"steering_angle": 0.25}, StateConfig(rate_window_s=0.125))
    state.update("steering_angle", 0.0, 100.0)
    state.rebase(200.0)
    state.update("steering_angle", 0.0, 200.0)
    state.update("steering_angle", 16.0, 200.125)
    assert state.snapshot(200.125).values["steering_rate"] == 128.0


# ------------------------------------------------------------------ carry_over
def test_carry_over_uses_the_new_thresholds() -> None:
    state = VehicleState(AGES)
    standing(state, 10.0, speed=3.0)
    assert state.snapshot(10.0).driving_state is DrivingState.MOVING
    fresh = state.carry_over(StateConfig(standstill_on=5.0, standstill_off=8.0))
    assert fresh.snapshot(10.0).driving_state is DrivingState.STATIONARY


def test_carry_over_watches_what_the_new_policy_compares() -> None:
    state = VehicleState(AGES)
    standing(state, 10.0, speed=40.0)
    fresh = state.carry_over(StateConfig(), watch={"speed": (50.0,)}, watch_values=["turn_signal"])
    before = fresh.changes
    fresh.update("speed", 60.0, 11.0)  # across 50
    assert fresh.changes == before + 1
    fresh.update("turn_signal", "left", 11.0)  # a watched value changes
    assert fresh.changes == before + 2
    unwatched = state.carry_over(StateConfig())
    before = unwatched.changes
    unwatched.update("speed", 60.0, 11.0)
    unwatched.update("turn_signal", "left", 11.0)
    assert unwatched.changes == before


def test_carry_over_keeps_the_source_resolution_in_the_jump_limit() -> None:
    # 10 -> 12.5 km/h in 10 ms: 1.4 km/h allowed plus the source's 2 km/h quantum.
    state = VehicleState(AGES, resolution={"speed": 2.0})
    state.update("speed", 10.0, 10.0)
    fresh = state.carry_over(StateConfig())
    fresh.update("speed", 12.5, 10.01)
    assert fresh.snapshot(10.01).values["speed"] == 12.5
    plain = VehicleState(AGES)
    plain.update("speed", 10.0, 10.0)
    plain.update("speed", 12.5, 10.01)
    assert plain.snapshot(10.01).values["speed"] == 10.0  # rejected without the quantum


def test_carry_over_keeps_the_cross_check() -> None:
    cross = CrossCheck("speed", "speed_reference", tolerance=2.0, tolerance_percent=0.0, label="WHEEL_SPEEDS")
    state = VehicleState({**AGES, "speed_reference": 5.0}, cross_checks={"speed": cross})
    state.update("speed", 50.0, 10.0)
    state.update("speed_reference", 40.0, 10.0)
    fresh = state.carry_over(StateConfig())
    assert fresh.snapshot(10.0).values["speed"] is None
    assert fresh.snapshot(10.0).unknown["speed"].startswith("cross-check failed: 50 km/h against 40 km/h")


def test_carry_over_keeps_deriving_the_rate_from_the_same_reference() -> None:
    state = VehicleState({"steering_angle": 0.25}, StateConfig(rate_window_s=0.125))
    state.update("steering_angle", 0.0, 10.0)
    fresh = state.carry_over(StateConfig(rate_window_s=0.125))
    assert fresh.derive_rate and set(fresh._signals) == {"steering_angle", "steering_rate"}
    assert fresh._signals["steering_rate"].max_age == 0.375
    fresh.update("steering_angle", 16.0, 10.125)
    assert fresh.snapshot(10.125).values["steering_rate"] == 128.0  # measured from before the reload


def test_carry_over_keeps_a_hold_in_force_and_its_end_is_a_change() -> None:
    state = VehicleState(AGES, StateConfig(triggers=(TURNING,), hold_s=2.0))
    standing(state, 10.0)
    state.update("turn_signal", "left", 10.0)
    state.update("turn_signal", "off", 11.0)  # hold until 12
    fresh = state.carry_over(StateConfig(triggers=(TURNING,), hold_s=2.0))
    assert fresh.snapshot(11.5).workload is Workload.HIGH
    before = fresh.changes
    fresh.expire(12.0)
    assert fresh.changes == before + 1
