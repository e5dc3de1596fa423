"""What counts as a change of the vehicle state, exactly: replays and the engine re-decide on a
counted change and only then, so a change missed is a decision missed at its time."""

from __future__ import annotations

import math

from safety.vehicle.state import CrossCheck, StateConfig, Trigger, VehicleState


def test_going_stale_counts_once_exactly_past_the_limit_and_coming_back_counts_again() -> None:
    state = VehicleState({"gear": 1.0, "speed": 0.25})  # gear is never received: it must not stop the check
    state.update("speed", 10.0, 0.0)
    before = state.changes
    state.expire(0.25)  # exactly at the limit: still fresh
    assert state.changes == before
    state.expire(math.nextafter(0.25, math.inf))
    assert state.changes == before + 1
    state.expire(1.0)  # already counted
    assert state.changes == before + 1
    state.update("speed", 10.0, 1.0)  # the same value again: fresh again, a change
    assert state.changes == before + 2


def test_a_short_hold_ending_is_a_change() -> None:
    trigger = Trigger("turn_signal", values=frozenset({"left"}))
    state = VehicleState({"turn_signal": 5.0}, StateConfig(triggers=(trigger,), hold_s=0.5))
    state.update("turn_signal", "left", 10.0)
    state.update("turn_signal", "off", 10.25)
    before = state.changes
    state.expire(10.5)
    assert state.changes == before + 1
    state.expire(11.0)
    assert state.changes == before + 1


def test_a_cross_check_starting_or_stopping_to_agree_is_one_change() -> None:
    cross = CrossCheck("speed", "speed_reference", tolerance=2.0, tolerance_percent=0.0, label="WHEELS")
    state = VehicleState({"speed": 5.0, "speed_reference": 5.0}, cross_checks={"speed": cross})
    state.update("speed_reference", 48.0, 0.0)
    state.update("speed", 50.0, 0.0)  # exactly the tolerance apart: agrees
    before = state.changes
    state.update("speed", 49.5, 0.01)  # still agrees: no change
    assert state.changes == before
    state.update("speed", 50.5, 0.02)  # 2.5 apart: stops agreeing
    assert state.changes == before + 1
    state.update("speed", 50.0, 0.03)  # agrees again
    assert state.changes == before + 2
