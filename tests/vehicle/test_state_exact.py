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


# ------------------------------------------------------------------ survivors of the full run (#13)
MID_HIGH = StateConfig(bands=(("low", 32.0), ("mid", 80.0), ("high", math.inf)), dwell_s=1.5)


def test_a_sample_cut_short_counts_as_truncated_not_as_an_integrity_failure() -> None:
    state = VehicleState({"speed": 1.0})
    state.update("speed", None, 1.0, reason="truncated frame: 2 bytes received, 8 needed", cause="truncated")
    assert state.counters.truncated == {"speed": 1} and state.counters.integrity == {}
    state.update("speed", None, 1.1, reason="integrity failure: checksum 0x01, expected 0x02 (sum)", cause="integrity")
    assert state.counters.truncated == {"speed": 1} and state.counters.integrity == {"speed": 1}
    assert state.snapshot(1.1).unknown["speed"] == "integrity failure: checksum 0x01, expected 0x02 (sum)"


def test_a_repeated_value_of_another_type_is_a_new_value() -> None:
    # True == 1 and 1.0 == 1 in Python: the repeat shortcut must not keep the old value's type.
    state = VehicleState({"gear": 1.0})
    state.update("gear", 1, 0.0)
    state.update("gear", True, 0.1)
    assert state.snapshot(0.1).values["gear"] is True


def test_a_speed_repeated_for_long_keeps_its_dwell_and_no_gap_restarts_it() -> None:
    # 85 km/h repeated every half second (each sample within the speed's 1 s staleness limit),
    # then 60: the band goes down only after the dwell; a repeat that did not note the speed's
    # time would make 60 look like a restart after a gap (the band at once).
    state = VehicleState({"speed": 1.0}, MID_HIGH)
    for k in range(8):
        state.update("speed", 85.0, k * 0.5)
    state.update("speed", 60.0, 4.0)
    assert state.snapshot(4.0).values["speed_band"] == "high"
    state.update("speed", 60.0, 5.5)
    assert state.snapshot(5.5).values["speed_band"] == "mid"


def test_other_signals_repeated_do_not_hide_a_gap_in_the_speed() -> None:
    # Only the gear comes for 3 s (repeated): the speed's next sample follows a gap and restarts.
    state = VehicleState({"speed": 1.0, "gear": 1.0}, MID_HIGH)
    state.update("speed", 85.0, 0.0)
    for k in range(7):
        state.update("gear", "D", k * 0.5)
    state.update("speed", 60.0, 3.5)
    assert state.snapshot(3.5).values["speed_band"] == "mid"


@pytest.mark.parametrize(("gap", "band"), [(1.0, "high"), (2.0, "mid")])
def test_a_speed_gap_longer_than_its_staleness_limit_restarts_the_band(gap: float, band: str) -> None:
    # A gap of exactly max_age (1 s) is no restart: the dwell holds the more demanding band; a
    # longer gap starts afresh: the band of the speed at once.
    state = VehicleState({"speed": 1.0}, MID_HIGH)
    state.update("speed", 85.0, 0.0)
    state.update("speed", 60.0, gap)
    assert state.snapshot(gap).values["speed_band"] == band


def test_a_speed_at_exactly_standstill_on_starts_the_standstill_dwell() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0}, StateConfig(dwell_s=1.5))
    state.update("gear", "D", 0.0)
    state.update("speed", 3.0, 0.0)
    assert state.snapshot(0.0).driving_state.value == "moving"
    seen = []
    for k in range(1, 20):
        state.update("speed", 0.5, k * 0.1)  # = standstill_on
        state.update("gear", "D", k * 0.1)
        seen.append(state.snapshot(k * 0.1).driving_state.value)
    assert seen == ["moving"] * 15 + ["stationary"] * 4  # from 0.1 s, the dwell (1.5 s) ends at 1.6 s


def driving(state: VehicleState, t: float) -> None:
    state.update("speed", 50.0, t)
    state.update("gear", "D", t)


def test_a_trigger_without_abs_reads_the_signed_value() -> None:
    triggers = (Trigger("steering_rate", on=100.0, off=50.0),)
    state = VehicleState({"speed": 1.0, "gear": 1.0, "steering_rate": 1.0}, StateConfig(triggers=triggers))
    driving(state, 0.0)
    state.update("steering_rate", -150.0, 0.0)
    assert state.snapshot(0.0).workload.value == "low"
    driving(state, 0.1)
    state.update("steering_rate", 150.0, 0.1)
    assert state.snapshot(0.1).workload.value == "high"


def test_after_an_invalid_trigger_signal_a_value_inside_the_hysteresis_counts_as_active() -> None:
    # Starting up again inside the band (between off and on): the demanding side, as at start-up.
    triggers = (Trigger("steering_angle", on=90.0, off=45.0, use_abs=True),)
    state = VehicleState({"speed": 1.0, "gear": 1.0, "steering_angle": 1.0}, StateConfig(triggers=triggers))
    driving(state, 0.0)
    state.update("steering_angle", 10.0, 0.0)
    assert state.snapshot(0.0).workload.value == "low"
    driving(state, 0.1)
    state.update("steering_angle", None, 0.1, invalid=True)
    assert state.snapshot(0.1).workload.value == "unknown"
    driving(state, 0.2)
    state.update("steering_angle", 60.0, 0.2)
    assert state.snapshot(0.2).workload.value == "high"


def test_a_good_sample_between_rejected_ones_restarts_their_confirmation() -> None:
    # 50 accepted; 100 rejected (pending, 1 of 3); 50 again; then 100 twice: 1 and 2 of 3, not yet.
    state = VehicleState({"speed": 1.0})
    state.update("speed", 50.0, 0.0)
    state.update("speed", 100.0, 0.01)
    state.update("speed", 50.0, 0.02)
    state.update("speed", 100.0, 0.03)
    state.update("speed", 100.0, 0.04)
    assert state.snapshot(0.04).values["speed"] == 50.0
    state.update("speed", 100.0, 0.05)
    assert state.snapshot(0.05).values["speed"] == 100.0


def test_rejected_samples_agree_at_exactly_the_rate_limit() -> None:
    # 40 km/h per s + 1 km/h: 11 km/h in 0.25 s agrees, exactly at the limit.
    state = VehicleState({"speed": 1.0})
    state.update("speed", 50.0, 1.0)
    state.update("speed", 150.0, 1.25)  # rejected: 1 of 3
    state.update("speed", 161.0, 1.5)  # rejected, agrees with 150: 2 of 3
    assert state.snapshot(1.5).values["speed"] == 50.0
    state.update("speed", 172.0, 1.75)  # agrees with 161: 3 of 3, the new level
    assert state.snapshot(1.75).values["speed"] == 172.0


def test_a_rejected_jump_says_how_long_it_took() -> None:
    state = VehicleState({"speed": 1.0})
    state.update("speed", 50.0, 1.0)
    state.update("speed", 150.0, 1.25)
    assert state.snapshot(2.5).unknown["speed"] == (
        "implausible jump 50 -> 150 km/h in 0.250 s (no plausible sample for 1.500 s, max 1.000 s)"
    )


def test_a_signal_never_received_does_not_hide_the_ones_after_it() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0, "steering_angle": 1.0})
    state.update("steering_angle", 12.0, 0.0)  # speed and gear (before it) never received
    snap = state.snapshot(0.5)
    assert snap.values["steering_angle"] == 12.0 and snap.ages["steering_angle"] == 0.5
    assert (snap.unknown["speed"], snap.unknown["gear"]) == ("never received", "never received")


def test_a_cross_check_needs_both_sources() -> None:
    # A cross-check whose signal or reference the car does not provide is dropped: nothing to compare.
    from safety.vehicle.state import CrossCheck

    checks = {
        "speed": CrossCheck("speed", "speed_reference", 2.0, 5.0, "WHEEL_SPEEDS"),
        "steering_angle": CrossCheck("steering_angle", "speed", 2.0, 5.0, "SPEED"),
    }
    state = VehicleState({"speed": 1.0}, cross_checks=checks)
    state.update("speed", 50.0, 0.0)
    snap = state.snapshot(0.0)
    assert snap.values["speed"] == 50.0 and "speed" not in snap.unknown


def test_every_trigger_on_a_repeated_signal_keeps_its_hold() -> None:
    # Two triggers on the steering rate; the first one is active.  Repeats (every 0.5 s) keep its
    # hold going: after the rate falls at 5.5 s, the workload stays high 2 s from the last repeat.
    triggers = (Trigger("steering_rate", on=100.0, off=50.0, use_abs=True), Trigger("steering_rate", on=500.0, off=400.0))
    state = VehicleState({"speed": 1.0, "gear": 1.0, "steering_rate": 1.0}, StateConfig(triggers=triggers, hold_s=2.0))
    for k in range(12):
        driving(state, k * 0.5)
        state.update("steering_rate", 120.0, k * 0.5)
    driving(state, 6.0)
    state.update("steering_rate", 10.0, 6.0)
    assert state.snapshot(6.0).workload.value == "high"  # held until 5.5 + 2
    for t, workload in ((7.0, "high"), (7.6, "low")):
        driving(state, t)
        state.update("steering_rate", 10.0, t)
        state.expire(t)
        assert state.snapshot(t).workload.value == workload


def test_a_known_driving_state_has_no_unknown_reason() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0})
    for gear, speed, expected in (("P", 0.0, "parked"), ("D", 0.0, "stationary"), ("D", 30.0, "moving")):
        state = VehicleState({"speed": 1.0, "gear": 1.0})
        state.update("gear", gear, 0.0)
        state.update("speed", speed, 0.0)
        snap = state.snapshot(0.0)
        assert snap.driving_state.value == expected and "driving_state" not in snap.unknown


def test_a_cross_check_allows_exactly_its_tolerance() -> None:
    from safety.vehicle.state import CrossCheck

    checks = {"speed": CrossCheck("speed", "speed_reference", 2.0, 5.0, "WHEEL_SPEEDS")}
    for value, known in ((105.0, True), (105.5, False)):  # 5 % of 100 km/h: 5 km/h apart allowed
        state = VehicleState({"speed": 1.0, "speed_reference": 1.0}, cross_checks=checks)
        state.update("speed_reference", 100.0, 0.0)
        state.update("speed", value, 0.0)
        snap = state.snapshot(0.0)
        assert (snap.values["speed"] == value) is known
    assert snap.unknown["speed"] == "cross-check failed: 105.5 km/h against 100 km/h from WHEEL_SPEEDS (more than 5 km/h apart)"


def test_a_time_that_is_no_number_gives_no_time_and_nothing_known() -> None:
    state = VehicleState({"speed": 1.0, "gear": 1.0})
    state.update("speed", 30.0, 0.0)
    snap = state.snapshot(math.nan)
    assert snap.time is None
    assert snap.values["speed"] is None and snap.ages["speed"] is None
    assert snap.values["gear"] is None and snap.ages["gear"] is None
    assert snap.unknown["speed"] == "no valid time: now is nan"


def test_a_signal_the_profile_does_not_map_is_unknown_with_no_age() -> None:
    snap = VehicleState({"speed": 1.0}).snapshot(0.0)
    assert snap.values["steering_angle"] is None and snap.ages["steering_angle"] is None
    assert snap.unknown["steering_angle"] == "not mapped by the vehicle profile"


def test_every_cross_check_is_made_when_an_earlier_signal_has_no_value() -> None:
    from safety.vehicle.state import CrossCheck

    checks = {
        "steering_angle": CrossCheck("steering_angle", "angle_reference", 2.0, 0.0, "EPS"),
        "speed": CrossCheck("speed", "speed_reference", 2.0, 0.0, "WHEEL_SPEEDS"),
    }
    ages = {"steering_angle": 1.0, "angle_reference": 1.0, "speed": 1.0, "speed_reference": 1.0}
    state = VehicleState(ages, cross_checks=checks)
    state.update("steering_angle", None, 0.0, invalid=True)  # the first check has nothing to check
    state.update("speed_reference", 40.0, 0.0)
    state.update("speed", 50.0, 0.0)
    snap = state.snapshot(0.0)
    assert snap.values["speed"] is None
    assert snap.unknown["speed"] == "cross-check failed: 50 km/h against 40 km/h from WHEEL_SPEEDS (more than 2 km/h apart)"


def test_a_trigger_after_one_the_car_cannot_feed_counts_without_a_hold() -> None:
    triggers = (Trigger("steering_angle", on=90.0, off=45.0, use_abs=True), Trigger("turn_signal", values=frozenset({"left"})))
    state = VehicleState({"speed": 1.0, "gear": 1.0, "turn_signal": 1.0}, StateConfig(triggers=triggers))
    driving(state, 0.0)
    state.update("turn_signal", "left", 0.0)
    assert state.snapshot(0.0).workload.value == "high"
    state.update("turn_signal", None, 0.1, invalid=True)
    driving(state, 0.1)
    snap = state.snapshot(0.1)
    assert snap.workload.value == "unknown"
    assert snap.unknown["workload"] == "turn_signal unknown (a workload trigger reads it)"
