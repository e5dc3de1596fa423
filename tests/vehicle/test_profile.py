"""Vehicle profiles: loading the demo profile, and every kind of bad profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEMO_VEHICLE, ROOT, shared

from safety import LoadError, load_profile


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "car.yaml"
    path.write_text(text.replace("DBC", str(ROOT / "dbc" / "demo_sedan.dbc")))
    with pytest.raises(LoadError) as info:
        load_profile(path)
    return [str(e).replace(str(path), "car.yaml") for e in info.value.errors]


def test_demo_profile_loads() -> None:
    profile = load_profile(DEMO_VEHICLE)
    assert set(profile.sources) == {
        "speed",
        "gear",
        "steering_angle",
        "steering_rate",
        "parking_brake",
        "turn_signal",
        "brake_pressed",
    }
    gear = profile.sources["gear"]
    assert (gear.frame, gear.value_map) == ("0x1F5", {0: "P", 1: "R", 2: "N", 3: "D", 4: "D"})
    assert profile.sources["speed"].max_age == 0.3
    assert profile.sources["steering_angle"].signals == ("SteeringAngle", "SteeringAngleFine")


def test_every_problem_named(tmp_path: Path) -> None:
    text = """dbc: DBC
colour: red
signals:
  speed:
    message: VEHICLE_SPED
    signal: VehicleSpeed
  gear:
    message: TRANSMISSION
    signal: GearPosition
    map: {PRK: P, DRIVE: X}
  steering_angle:
    message: STEERING
    signal: SteeringAngel
  warp_drive:
    message: 0x25
    signal: SteeringRate
"""
    assert errors_of(tmp_path, text) == [
        "car.yaml:2:1: unknown-key: unknown key 'colour' in the profile; expected one of: cross_check, dbc, description, e2e, "
        "name, signals",
        "car.yaml:5:14: unknown-message: signals.speed.message: no message 'VEHICLE_SPED' in demo_sedan.dbc; did you "
        "mean VEHICLE_SPEED?",
        "car.yaml:10:11: bad-map: signals.gear.map: 'PRK' is not a value of DBC signal 'GearPosition'; its named "
        "values: PARK, REVERSE, NEUTRAL, DRIVE, SPORT, SNA",
        "car.yaml:10:26: bad-map: signals.gear.map: DRIVE -> 'X' is not a canonical value; expected one of: P, R, N, D",
        "car.yaml:13:13: unknown-signal: signals.steering_angle: message 'STEERING' has no signal 'SteeringAngel'; "
        "did you mean SteeringAngle, SteeringAngleFine, SteeringRate?",
        "car.yaml:14:3: unknown-key: unknown key 'warp_drive' in signals; expected one of: accelerator_pedal, "
        "brake_pressed, eyes_on_road, gear, parking_brake, speed, steering_angle, steering_rate, turn_signal",
    ]


def test_missing_map(tmp_path: Path) -> None:
    text = """dbc: DBC
signals:
  speed: {message: VEHICLE_SPEED, signal: VehicleSpeed}
  gear: {message: TRANSMISSION, signal: GearPosition}
"""
    assert errors_of(tmp_path, text) == [
        "car.yaml:4:9: missing-key: signals.gear: 'gear' takes the values P, R, N, D; give a 'map' from DBC values",
    ]


def test_a_partial_profile_loads_with_a_warning_per_unmapped_required_signal(tmp_path: Path) -> None:
    """#10 item 11: a GNSS or OBD logger records only speed; its profile maps only speed."""
    path = tmp_path / "car.yaml"
    dbc = ROOT / "dbc" / "demo_sedan.dbc"
    path.write_text(f"dbc: {dbc}\nsignals:\n  speed: {{message: VEHICLE_SPEED, signal: VehicleSpeed}}\n")
    profile = load_profile(path)
    assert list(profile.sources) == ["speed"]
    assert profile.warnings == (
        f"{path}:2:1: the profile does not map the required signal 'gear' (selected gear: P, R, N or D): "
        "it is always unknown, and so is the driving state (fail closed)",
        f"{path}:2:1: the profile does not map the required signal 'steering_angle' (steering wheel angle, "
        "positive = left): it is always unknown (fail closed), and workload triggers on it are ignored",
    )


def test_dbc_that_cantools_rejects(tmp_path: Path) -> None:
    bad = shared("verifiedcan_rav4_tss2", "strym_toyota_rav4_2019.dbc")
    path = tmp_path / "car.yaml"
    path.write_text(f"dbc: {bad}\nsignals: {{}}\n")
    with pytest.raises(LoadError) as info:
        load_profile(path)
    (error,) = info.value.errors
    assert error.code == "dbc-invalid"
    assert str(error).startswith(f"{path}:1:6: dbc-invalid: cantools cannot load this DBC: ")
    assert "GEAR" in str(error) and str(bad) in str(error)


def test_missing_dbc(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text("dbc: nowhere.dbc\nsignals: {}\n")
    with pytest.raises(LoadError) as info:
        load_profile(path)
    assert [e.code for e in info.value.errors] == ["dbc-missing"]
    assert "DBC file 'nowhere.dbc' not found" in str(info.value)


def test_a_dbc_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    """#11 item 8: it was reported as "not found"."""
    (tmp_path / "x.dbc").mkdir()
    path = tmp_path / "car.yaml"
    path.write_text("dbc: x.dbc\nsignals: {}\n")
    with pytest.raises(LoadError) as caught:
        load_profile(path)
    assert str(caught.value) == (
        f"{path}:1:6: dbc-missing: DBC file 'x.dbc' is a directory, expected a DBC file (looked at {tmp_path / 'x.dbc'})"
    )
