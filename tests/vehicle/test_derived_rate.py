"""The steering rate a profile without a rate signal gets from the angle (``VehicleState._derive_rate``).

Times and angles are binary fractions, so every difference and quotient is exact and each
boundary (the window, ten windows, the rate's own max_age) is decided exactly at it.
"""

from __future__ import annotations

import math

import pytest

from safety.vehicle.state import StateConfig, Trigger, VehicleState, Workload

WINDOW = 0.125


def tracker(**config: object) -> VehicleState:
    state = VehicleState({"steering_angle": 0.25}, StateConfig(rate_window_s=WINDOW, **config))  # type: ignore[arg-type]
    assert state.derive_rate
    return state


def rate(state: VehicleState, now: float) -> object:
    return state.snapshot(now).values["steering_rate"]


def test_no_rate_until_a_window_has_passed_then_the_slope_over_it() -> None:
    state = tracker()
    state.update("steering_angle", 0.0, 0.0)
    assert rate(state, 0.0) is None
    assert state.snapshot(0.0).unknown["steering_rate"] == "never received"
    state.update("steering_angle", 8.0, 0.0625)  # half a window: not yet
    assert rate(state, 0.0625) is None
    state.update("steering_angle", 16.0, WINDOW)  # exactly a window after the first: a rate
    assert rate(state, WINDOW) == 128.0
    assert state.ages(WINDOW)["steering_rate"] == 0.0
    # The next rate is measured from the sample that gave the last one.
    state.update("steering_angle", 20.0, 0.1875)
    assert rate(state, 0.1875) == 128.0  # unchanged: half a window since the reference
    state.update("steering_angle", 8.0, 0.25)
    assert rate(state, 0.25) == -64.0  # (8 - 16) / 0.125


def test_the_rate_goes_stale_after_the_angle_max_age_plus_the_window() -> None:
    state = tracker()
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 4.0, WINDOW)
    limit = 0.25 + WINDOW  # the rate's max_age
    assert rate(state, WINDOW + limit) == 32.0  # exactly at the limit: still known
    assert rate(state, math.nextafter(WINDOW + limit, math.inf)) is None
    assert state.snapshot(WINDOW + 1).unknown["steering_rate"].startswith("stale: last frame ")


def test_an_unknown_angle_makes_the_rate_unknown_and_restarts_the_window() -> None:
    state = tracker()
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 4.0, WINDOW)
    changes = state.changes
    state.update("steering_angle", None, 0.1875, invalid=True)
    assert rate(state, 0.1875) is None
    assert state.snapshot(0.1875).unknown["steering_rate"] == "steering angle unknown"
    assert state.changes > changes
    # The next good angle starts a new reference: no rate from across the unknown sample.
    state.update("steering_angle", 8.0, 0.25)
    assert rate(state, 0.25) is None
    state.update("steering_angle", 12.0, 0.375)
    assert rate(state, 0.375) == 32.0


@pytest.mark.parametrize(
    ("gap", "derived"),
    [(10 * WINDOW, 4.0 / (10 * WINDOW)), (10 * WINDOW + 0.0625, None)],
    ids=["ten-windows-still-a-rate", "longer-restarts"],
)
def test_a_gap_of_more_than_ten_windows_restarts(gap: float, derived: float | None) -> None:
    state = VehicleState({"steering_angle": 10.0}, StateConfig(rate_window_s=WINDOW))
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 4.0, gap)
    assert rate(state, gap) == derived


def test_time_going_back_restarts_the_reference() -> None:
    state = tracker()
    state.update("steering_angle", 0.0, 1.0)
    state.update("steering_angle", 4.0, 0.5)  # earlier than the reference
    state.update("steering_angle", 8.0, 0.5 + WINDOW)
    assert rate(state, 0.5 + WINDOW) == 32.0  # measured from the 0.5 sample, not the 1.0 one


def test_the_derived_rate_feeds_a_workload_trigger() -> None:
    trigger = Trigger("steering_rate", on=180.0, off=90.0, use_abs=True)
    state = tracker(triggers=(trigger,), hold_s=0.0)
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", -24.0, WINDOW)  # -192 deg/s
    # No driving state is known (no speed or gear), so workload is unknown, but the trigger is on.
    assert state._trigger_active == [True]
    state.update("steering_angle", -32.0, 2 * WINDOW)  # -64 deg/s: below off
    assert state._trigger_active == [False]
    assert state.snapshot(2 * WINDOW).workload is Workload.UNKNOWN


def test_a_profile_with_a_rate_signal_does_not_derive_one() -> None:
    state = VehicleState({"steering_angle": 0.25, "steering_rate": 0.25})
    assert not state.derive_rate
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 16.0, 1.0)
    assert state.snapshot(1.0).values["steering_rate"] is None  # only the rate signal gives one


def test_a_second_angle_at_the_reference_time_does_not_move_the_reference() -> None:
    state = tracker()
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 8.0, 0.0)  # the same time: no rate, and the reference stays (0, 0)
    state.update("steering_angle", 16.0, WINDOW)
    assert rate(state, WINDOW) == 128.0  # from 0 deg, not from 8


def test_a_derived_rate_crossing_a_policy_threshold_is_a_change() -> None:
    # Replays re-decide only on counted changes: a rate crossing a threshold the policy compares
    # it with must count, a rate staying on one side must not.
    state = VehicleState({"steering_angle": 0.25}, StateConfig(rate_window_s=WINDOW), watch={"steering_rate": (100.0,)})
    state.update("steering_angle", 0.0, 0.0)
    state.update("steering_angle", 4.0, WINDOW)  # 32 deg/s
    before = state.changes
    state.update("steering_angle", 8.0, 2 * WINDOW)  # 32 deg/s again
    assert state.changes == before
    state.update("steering_angle", 32.0, 3 * WINDOW)  # 192 deg/s: across 100
    assert state.changes == before + 1
