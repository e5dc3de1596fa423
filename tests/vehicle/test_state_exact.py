"""The vehicle state's smaller contracts, exactly: the snapshot's fields, which signals it
provides, which value changes count as changes, and the speed band's dwell from every side."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, ROOT

from safety.vehicle.state import StateConfig, Trigger, VehicleState


def test_the_snapshot_as_a_dict_names_every_field() -> None:
    state = VehicleState({"speed": 0.5, "gear": 1.0})
    state.update("speed", 12.5, 3.0)
    snap = state.snapshot(3.25)
    as_dict = snap.to_dict()
    assert list(as_dict) == ["time", "driving_state", "workload", "values", "ages", "unknown", "integrity"]
    assert as_dict["time"] == 3.25
    assert (as_dict["driving_state"], as_dict["workload"]) == ("unknown", "unknown")
    assert as_dict["values"]["speed"] == 12.5 and as_dict["values"]["gear"] is None
    assert as_dict["ages"]["speed"] == 0.25 and as_dict["ages"]["gear"] is None
    assert as_dict["unknown"]["gear"] == "never received"
    assert as_dict["unknown"]["driving_state"] == "gear unknown"
    assert as_dict["integrity"] == {}


def test_a_state_provides_exactly_the_signals_it_was_given() -> None:
    state = VehicleState({"speed": 0.5, "gear": 1.0})
    assert (state.provides("speed"), state.provides("gear"), state.provides("turn_signal")) == (True, True, False)


def test_a_watched_number_changes_only_when_it_changes_cell() -> None:
    # Cells of (10, 60): below 10, exactly 10, between, exactly 60, above.  steering_rate has
    # no jump limit, so any value may follow any other.
    state = VehicleState({"steering_rate": 10.0}, watch={"steering_rate": (10.0, 60.0)})
    state.update("steering_rate", 5.0, 0.0)
    counted = []
    for t, value in enumerate((6.0, 10.0, 10.5, 59.0, 60.0, 61.0, 10.0, 61.0, 9.0, 10.0), start=1):
        before = state.changes
        state.update("steering_rate", value, float(t))
        counted.append(state.changes - before)
    # 5 -> 6 stays below 10, 10.5 -> 59 between; every other step moves to another cell.
    assert counted == [0, 1, 1, 0, 1, 1, 1, 1, 1, 1]


BANDS = StateConfig(bands=(("low", 32.0), ("mid", 80.0), ("high", math.inf)), band_hysteresis=2.0, dwell_s=1.5)


@pytest.mark.parametrize(
    ("drive", "bands"),
    [
        # Starting high and slowing at once: the dwell starts at the first slower sample.
        ([(0.0, 100.0), (2.0, 50.0), (3.5, 50.0)], ["high", "high", "mid"]),
        # Right after one dwell ends, slowing further starts the next one.
        ([(0.0, 100.0), (2.0, 50.0), (3.5, 50.0), (5.0, 20.0), (6.5, 20.0)], ["high", "high", "mid", "mid", "low"]),
        # Up a band at once, then slowing at once: a dwell from that sample.
        ([(0.0, 20.0), (1.0, 40.0), (1.5, 25.0), (3.0, 25.0)], ["low", "mid", "mid", "low"]),
        # Holding the band between dwells: each dwell starts afresh.
        ([(0.0, 40.0), (1.0, 25.0), (2.0, 40.0), (3.0, 25.0), (4.4, 25.0), (4.5, 25.0)], ["mid", "mid", "mid", "mid", "mid", "low"]),
    ],
)
def test_a_lower_speed_band_waits_the_dwell_from_every_side(drive: list[tuple[float, float]], bands: list[str]) -> None:
    state = VehicleState({"speed": 10.0}, BANDS)
    seen = []
    for t, speed in drive:
        state.update("speed", speed, t)
        seen.append(state.snapshot(t).values["speed_band"])
    assert seen == bands


def test_the_engine_warns_of_each_workload_trigger_the_car_cannot_feed(tmp_path: Path) -> None:
    from safety import Engine

    profile = tmp_path / "car.yaml"
    profile.write_text(
        f"dbc: {ROOT / 'dbc' / 'demo_sedan.dbc'}\n"
        "signals:\n"
        "  speed: {message: VEHICLE_SPEED, signal: VehicleSpeed, max_age_ms: 300}\n"
        "  gear: {message: TRANSMISSION, signal: GearPosition, map: {PARK: P, REVERSE: R, NEUTRAL: N, DRIVE: D, SPORT: D}}\n"
    )
    engine = Engine.load(profile, DEFAULT_POLICY)
    # The default policy's triggers read steering_angle, steering_rate, gear and turn_signal.
    assert [w for w in engine.warnings if w.startswith("policy workload trigger")] == [
        f"policy workload trigger on '{name}' is ignored: the vehicle profile does not provide it"
        for name in ("steering_angle", "steering_rate", "turn_signal")
    ]


def test_a_sample_without_a_value_says_whether_the_dbc_marked_it() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0})
    state.update("speed", None, 1.0, invalid=True)  # the DBC's not-available value
    state.update("gear", None, 1.0)  # no value, no reason given
    unknown = state.snapshot(1.0).unknown
    assert (unknown["speed"], unknown["gear"]) == ("invalid value (DBC marks it not available)", "invalid value")
    assert state.counters.invalid == {"speed": 1}


def test_rejected_samples_confirm_a_new_level_only_if_they_agree_at_the_rate_limit() -> None:
    # Speed may change 40 km/h per second (+ a small tolerance).  At 50 km/h, samples of 100, 110
    # and 120 a hundredth of a second apart are each 10 km/h from the one before: they do not
    # agree with each other (0.4 km/h allowed in 0.01 s), so none confirms a new level.
    state = VehicleState({"speed": 1.0})
    state.update("speed", 50.0, 0.0)
    for k, value in enumerate((100.0, 110.0, 120.0, 130.0), start=1):
        state.update("speed", value, k * 0.01)
    assert state.snapshot(0.04).values["speed"] == 50.0
    assert state.counters.implausible == {"speed": 4}
    # Three that agree (the same level) do confirm it: a re-initialised sensor, not a glitch.
    for k in range(3):
        state.update("speed", 100.0, 0.05 + k * 0.01)
    assert state.snapshot(0.07).values["speed"] == 100.0


def test_after_an_invalid_speed_a_clear_standstill_counts_at_once() -> None:
    # An invalid speed restarts the standstill hysteresis: the next speed is judged as at start-up,
    # where only a clear standstill (at or below standstill_on) counts, and at once (no dwell).
    state = VehicleState({"speed": 1.0, "gear": 1.0}, StateConfig(dwell_s=1.5))
    state.update("gear", "D", 0.0)
    state.update("speed", 30.0, 0.0)
    assert state.snapshot(0.0).driving_state.value == "moving"
    state.update("speed", None, 0.1, invalid=True)
    assert state.snapshot(0.1).driving_state.value == "unknown"
    state.update("speed", 0.0, 0.9)  # 30 km/h less in 0.9 s: within the jump limit
    assert state.snapshot(0.9).driving_state.value == "stationary"


def test_workload_reads_every_trigger_the_car_feeds_and_gives_no_reason_when_known() -> None:
    # The first trigger reads a signal this car does not have: the others still count.
    triggers = (Trigger("steering_angle", on=90.0, off=45.0, use_abs=True), Trigger("turn_signal", values=frozenset({"left"})))
    state = VehicleState({"speed": 1.0, "gear": 1.0, "turn_signal": 1.0}, StateConfig(triggers=triggers, hold_s=2.0))
    state.update("gear", "D", 0.0)
    state.update("speed", 50.0, 0.0)
    state.update("turn_signal", "none", 0.0)
    low = state.snapshot(0.0)
    assert low.workload.value == "low" and "workload" not in low.unknown
    state.update("turn_signal", "left", 0.5)
    high = state.snapshot(0.5)
    assert high.workload.value == "high" and "workload" not in high.unknown
    state.update("turn_signal", "none", 0.9)
    held = state.snapshot(1.0)  # the hold (2 s after the last trigger) keeps it high
    assert held.workload.value == "high" and "workload" not in held.unknown


def test_a_value_that_is_not_a_number_says_so() -> None:
    state = VehicleState({"speed": 1.0})
    state.update("speed", math.nan, 1.0)
    assert state.snapshot(1.0).unknown["speed"] == "implausible value nan"
    assert state.counters.implausible == {"speed": 1}


@pytest.mark.parametrize("gap", [0.0, 0.25])
def test_the_jump_limit_holds_from_the_accepted_samples_time_to_its_staleness_limit(gap: float) -> None:
    # Both ends of the window count: the same instant, and exactly max_age later (0.25 s, exact in binary).
    state = VehicleState({"speed": 0.25})
    state.update("speed", 50.0, 1.0)
    state.update("speed", 100.0, 1.0 + gap)  # 50 km/h more: far over 40 km/h per second
    assert state.snapshot(1.0 + gap).values["speed"] == 50.0
    assert state.counters.implausible == {"speed": 1}


def test_samples_with_no_valid_time_are_each_counted_and_a_plain_reason_counts_nothing() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0})
    state.update("speed", 10.0, math.nan)
    state.update("speed", 10.0, math.inf)
    assert state.counters.bad_time == {"speed": 2}
    state.update("gear", None, 1.0, reason="a reason given, no counter named")
    assert state.snapshot(1.0).unknown["gear"] == "a reason given, no counter named"
    assert (state.counters.truncated, state.counters.integrity) == ({}, {})


def test_a_confirmed_new_level_is_the_anchor_for_the_next_samples() -> None:
    # Late in a drive (t ~ 100 s), three samples at 100 km/h a hundredth of a second apart agree
    # with each other (0.4 km/h allowed between them) and confirm the level; a sample then far
    # off it is judged against 100, not taken as a new start.
    state = VehicleState({"speed": 1.0})
    state.update("speed", 50.0, 100.0)
    for k, value in enumerate((100.0, 110.0, 120.0), start=1):
        state.update("speed", value, 100.0 + k * 0.01)  # 10 km/h apart: they never agree
    assert state.snapshot(100.03).values["speed"] == 50.0
    for k in range(3):
        state.update("speed", 100.0, 100.04 + k * 0.01)
    assert state.snapshot(100.06).values["speed"] == 100.0
    state.update("speed", 160.0, 100.07)
    assert state.snapshot(100.07).values["speed"] == 100.0
    assert "speed" not in state.snapshot(100.07).unknown
