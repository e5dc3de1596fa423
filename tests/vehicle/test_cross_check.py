"""Cross-checking a signal against a second source of the same quantity (#10, plausibility).

A speed sensor that lies with a valid seal (the fault matrix's persistent spike: the E2E
check passes and the new level is confirmed by plausibility) is caught only by a second
source: the demo sedan's four wheel speeds.  Real cantools decoding of the demo DBC, real
frames through the engine, the injector's re-sealed faults.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine, Outcome
from safety.cli.gen_drive import DEFAULT_START_TIME, candump_lines, write_log
from safety.errors import LoadError
from safety.faults import Injector, parse_fault
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay.timeline import BUILTIN_PROBES, replay_file
from safety.vehicle.profile import load_profile

WHEELS = "{message: WHEEL_SPEEDS, signals: [WheelSpeedFL, WheelSpeedFR, WheelSpeedRL, WheelSpeedRR], combine: mean"


def checked_profile(
    tmp_path: Path, entry: str = f"{WHEELS}, tolerance: 3, tolerance_percent: 10, max_age_ms: 300}}"
) -> Path:
    text = DEMO_VEHICLE.read_text(encoding="utf-8").replace(
        "dbc: demo_sedan.dbc", f"dbc: {DEMO_VEHICLE.parent / 'demo_sedan.dbc'}"
    )
    path = tmp_path / "checked.yaml"
    path.write_text(text + f"\ncross_check:\n  speed: {entry}\n", encoding="utf-8")
    return path


def wheels(car: DemoCar, t: float, speed: float) -> None:
    car.send("WHEEL_SPEEDS", t, WheelSpeedFL=speed, WheelSpeedFR=speed, WheelSpeedRL=speed, WheelSpeedRR=speed)


def test_the_profile_declares_the_check_and_reads_the_second_source(tmp_path: Path) -> None:
    profile = load_profile(checked_profile(tmp_path))
    cross = profile.cross_checks["speed"]
    assert (cross.reference, cross.tolerance, cross.tolerance_percent) == ("speed_reference", 3.0, 10.0)
    assert cross.label == "WHEEL_SPEEDS mean of 4 signals"
    assert cross.allowed(20.0) == 3.0 and cross.allowed(100.0) == 10.0
    reference = profile.sources["speed_reference"]
    assert (reference.message, reference.combine, reference.frame) == ("WHEEL_SPEEDS", "mean", "0x0AA")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            f"{WHEELS}}}",
            "cross_check.speed: needs a tolerance > 0 (in km/h) or a tolerance_percent > 0, and neither negative",
        ),
        (
            f"{WHEELS}, tolerance: -1}}",
            "cross_check.speed: needs a tolerance > 0 (in km/h) or a tolerance_percent > 0, and neither negative",
        ),
        (
            f"{WHEELS}, tolerence: 3}}",
            "cross_check.speed: needs a tolerance > 0 (in km/h) or a tolerance_percent > 0, and neither negative|"
            "unknown key 'tolerence' in cross_check.speed; expected one of: bus, combine, fd, invert, map, "
            "max_age_ms, message, offset, pgn, scale, signal, signals, source, tolerance, tolerance_percent",
        ),
        (
            "{message: WHEEL_SPEEDS, signal: WheelSpeedXX, tolerance: 3}",
            "cross_check.speed: message 'WHEEL_SPEEDS' has no signal 'WheelSpeedXX'; did you mean WheelSpeedRR, "
            "WheelSpeedRL, WheelSpeedFR?",
        ),
    ],
)
def test_a_wrong_cross_check_is_a_load_error_at_its_place(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(LoadError) as caught:
        load_profile(checked_profile(tmp_path, entry))
    assert [e.message for e in caught.value.errors] == message.split("|")
    assert caught.value.errors[0].location.line == 71


def test_only_mapped_numbers_are_cross_checked(tmp_path: Path) -> None:
    path = checked_profile(tmp_path)
    path.write_text(path.read_text() + "  gear: {message: TRANSMISSION, signal: GearPosition}\n")
    with pytest.raises(LoadError) as caught:
        load_profile(path)
    assert [str(e).split(": ", 2)[2] for e in caught.value.errors] == [
        "cross_check.gear: 'gear' is not a number; only numbers are cross-checked"
    ]


def test_a_speed_that_disagrees_with_the_wheels_is_unknown(tmp_path: Path) -> None:
    engine = Engine.load(checked_profile(tmp_path), DEFAULT_POLICY)
    car = DemoCar(engine)
    voice = request(modality="voice")
    for k in range(5):
        t = k * 0.05
        car.state(t, speed=50.0, gear="D", parking_brake="RELEASED")
        wheels(car, t, 51.0)
    assert engine.state(now=0.2).values["speed"] == pytest.approx(50.0)
    assert engine.decide(voice, now=0.2).outcome is Outcome.ALLOW
    # The wheels say 60 now: 10 km/h apart, more than 10 % of 60 (6 km/h).  Only the reference
    # changed: the engine must not reuse its snapshot.
    wheels(car, 0.25, 60.0)
    snap = engine.state(now=0.25)
    assert snap.values["speed"] is None and snap.driving_state.value == "unknown"
    assert snap.unknown["speed"] == (
        "cross-check failed: 50 km/h against 60 km/h from WHEEL_SPEEDS mean of 4 signals (more than 6 km/h apart)"
    )
    assert engine.decide(voice, now=0.25).outcome is Outcome.DEFER
    wheels(car, 0.3, 52.0)
    assert engine.state(now=0.3).values["speed"] == pytest.approx(50.0)


def test_a_speed_whose_second_source_is_stale_cannot_be_checked(tmp_path: Path) -> None:
    engine = Engine.load(checked_profile(tmp_path), DEFAULT_POLICY)
    car = DemoCar(engine)
    wheels(car, 0.0, 50.0)
    for k in range(12):
        car.state(k * 0.05, speed=50.0, gear="D", parking_brake="RELEASED")
    snap = engine.state(now=0.55)
    assert snap.values["speed"] is None
    assert snap.unknown["speed"] == (
        "cannot be cross-checked: WHEEL_SPEEDS mean of 4 signals is stale: last frame 0.550 s ago (max 0.300 s)"
    )


def test_a_persistent_sealed_lie_is_caught_by_the_wheels(tmp_path: Path) -> None:
    """The fault the matrix cannot catch without a second source: from 24 s on, the speed frame
    says 0 km/h (re-sealed, so E2E passes; steady, so plausibility confirms it) at 45 km/h."""
    drive = tmp_path / "drive.log"
    with drive.open("w", encoding="ascii") as out:
        write_log(out, candump_lines(start_time=DEFAULT_START_TIME, channel="can0", frames=None))
    faulty = tmp_path / "faulty.log"
    spec = "spike:VEHICLE_SPEED@24,signal=VehicleSpeed,value=0"
    write_frames(faulty, Injector([parse_fault(spec)], load_profile(DEMO_VEHICLE)).run(read_log(drive, on_error=None)))

    def speed_at(profile: Path, t: float) -> tuple[object, str]:
        out = io.StringIO()
        replay_file(Engine.load(profile, DEFAULT_POLICY), faulty, BUILTIN_PROBES, out, 0.5, reasons=True)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        line = [entry for entry in lines if entry["t"] <= lines[0]["t"] + t][-1]
        return line["speed"], line["unknown"].get("speed", "")

    assert speed_at(DEMO_VEHICLE, 30.0) == (0.0, "")  # believed: 0 km/h while cruising at 45
    speed, why = speed_at(checked_profile(tmp_path), 30.0)
    assert speed is None and why.startswith("cross-check failed: 0 km/h against 45 km/h from WHEEL_SPEEDS")


def test_engine_state_carries_the_integrity_counts() -> None:
    """#10: E2E counts show in ``engine.state()`` (and so in the service's ``state`` reply)."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    car = DemoCar(engine)
    car.send("VEHICLE_SPEED", 0.0, VehicleSpeed=10.0)
    bad = car.frame("VEHICLE_SPEED", 0.02, VehicleSpeed=10.0)
    bad.data[7] ^= 0xFF
    engine.on_frame(bad)
    snap = engine.state(now=0.02)
    assert snap.integrity["VEHICLE_SPEED"] == {"ok": 1, "error": 1}
    assert snap.to_dict()["integrity"]["VEHICLE_SPEED"] == {"ok": 1, "error": 1}
    assert snap.integrity["TRANSMISSION"] == {}
