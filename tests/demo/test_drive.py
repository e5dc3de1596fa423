"""The demo sedan's DBC, profile and scripted drive, checked by decoding real frames with cantools."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import can
import cantools
import pytest
import yaml
from conftest import ROOT

from safety.demo.drive import (
    DEMO_DBC,
    DEMO_PHASES,
    DriveModel,
    Phase,
    RawFrame,
    crc8_j1850,
    drive_duration,
    drive_frames,
    frame_checksum,
    phase_at,
    render_drive,
    scripted_drive,
)

PROFILE = ROOT / "dbc" / "demo_sedan.yaml"
GEN_DRIVE = ROOT / "tools" / "gen_drive.py"
START = 1_700_000_000.0

PROTECTED = {
    "STEERING": ("SteeringCounter", "SteeringChecksum"),
    "BRAKE": ("BrakeCounter", "BrakeChecksum"),
    "VEHICLE_SPEED": ("SpeedCounter", "SpeedChecksum"),
    "TRANSMISSION": ("TransCounter", "TransChecksum"),
    "BODY_STATUS": ("BodyCounter", "BodyChecksum"),
}
#: Message name -> [(drive time, decoded signals)], in bus order.
Decoded = dict[str, list[tuple[float, dict[str, Any]]]]

CYCLE_MS = {
    "STEERING": 10,
    "ENGINE_RPM": 10,
    "VEHICLE_SPEED": 20,
    "WHEEL_SPEEDS": 20,
    "BRAKE": 20,
    "TRANSMISSION": 100,
    "BODY_STATUS": 100,
    "CLIMATE": 500,
}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db() -> Any:
    return cantools.database.load_file(str(DEMO_DBC), strict=True)


@pytest.fixture(scope="module")
def frames(db: Any) -> list[can.Message]:
    return list(scripted_drive(db, start_time=START))


@pytest.fixture(scope="module")
def decoded(db: Any, frames: list[can.Message]) -> Decoded:
    by_name: Decoded = defaultdict(list)
    for msg in frames:
        message = db.get_message_by_frame_id(msg.arbitration_id)
        by_name[message.name].append((msg.timestamp - START, message.decode(msg.data)))
    return by_name


def angle(signals: dict[str, Any]) -> float:
    return float(signals["SteeringAngle"] + signals["SteeringAngleFine"])


def in_phase(series: list[tuple[float, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [signals for t, signals in series if phase_at(t) == name]


def load_gen_drive() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_drive", GEN_DRIVE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- DBC and profile --------------------------------------------------------------------------


def test_dbc_loads_strictly_with_ids_and_cycle_times(db: Any) -> None:
    assert {m.name: m.cycle_time for m in db.messages} == CYCLE_MS
    ids = {m.name: m.frame_id for m in db.messages}
    assert all(0 <= i <= 0x7FF for i in ids.values())
    assert not any(m.is_extended_frame for m in db.messages)
    assert ids["STEERING"] < ids["VEHICLE_SPEED"] < ids["TRANSMISSION"] < ids["BODY_STATUS"]


def test_dbc_signal_encodings(db: Any) -> None:
    speed = db.get_message_by_name("VEHICLE_SPEED").get_signal_by_name("VehicleSpeed")
    assert (speed.byte_order, speed.is_signed, speed.length) == ("little_endian", False, 16)
    assert speed.scale == 0.01
    assert speed.maximum == 655.34 and speed.choices[65535] == "SNA"
    gear = db.get_message_by_name("TRANSMISSION").get_signal_by_name("GearPosition")
    assert gear.byte_order == "big_endian" and gear.length == 4
    assert {k: str(v) for k, v in gear.choices.items()} == {
        0: "PARK",
        1: "REVERSE",
        2: "NEUTRAL",
        3: "DRIVE",
        4: "SPORT",
        15: "SNA",
    }
    steering = db.get_message_by_name("STEERING")
    coarse = steering.get_signal_by_name("SteeringAngle")
    assert (coarse.byte_order, coarse.is_signed, coarse.scale) == ("big_endian", True, 1.5)
    assert coarse.minimum <= -3000 and coarse.maximum >= 3000
    body = db.get_message_by_name("BODY_STATUS")
    assert body.is_multiplexed()
    assert body.get_signal_by_name("BodyMux").is_multiplexer
    assert body.get_signal_by_name("ParkingBrake").multiplexer_ids == [0]
    assert body.get_signal_by_name("WiperSpeed").multiplexer_ids == [1]
    assert "CRC-8 SAE J1850" in steering.get_signal_by_name("SteeringChecksum").comment


def test_motorola_steering_layout_round_trips(db: Any) -> None:
    steering = db.get_message_by_name("STEERING")
    data = steering.encode(
        {
            "SteeringSensorStatus": 0,
            "SteeringAngle": -1.5,
            "SteeringAngleFine": -0.3,
            "SteeringRate": -200,
            "SteeringCounter": 5,
            "SteeringChecksum": 0xAB,
        }
    )
    # Coarse -1 in 12 bits, big-endian from bit 3 of byte 0; counter byte 6 low nibble, CRC byte 7.
    assert data.hex() == "0fff0000df3805ab"


def _scalar_text(node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(node.value)


def test_profile_matches_the_dbc(db: Any) -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    assert (PROFILE.parent / profile["dbc"]).resolve() == DEMO_DBC
    # Map keys as written: YAML 1.1 would read the key OFF as the boolean false.
    root = yaml.compose(PROFILE.read_text())
    assert isinstance(root, yaml.MappingNode)
    signals_node = next(v for k, v in root.value if _scalar_text(k) == "signals")
    for key_node, entry_node in signals_node.value:
        entry = {_scalar_text(k): v for k, v in entry_node.value}
        message = db.get_message_by_name(_scalar_text(entry["message"]))
        if "signal" in entry:
            names = [_scalar_text(entry["signal"])]
        else:
            names = [_scalar_text(n) for n in entry["signals"].value]
        for name in names:
            signal = message.get_signal_by_name(name)
        if "map" in entry:
            assert len(names) == 1
            keys = [_scalar_text(k) for k, _ in entry["map"].value]
            allowed = {str(v) for v in (signal.choices or {}).values()} | {str(i) for i in range(2**signal.length)}
            assert set(keys) <= allowed, _scalar_text(key_node)
    assert set(profile["signals"]) == {
        "speed",
        "gear",
        "steering_angle",
        "steering_rate",
        "parking_brake",
        "turn_signal",
        "brake_pressed",
    }


# -- frames -----------------------------------------------------------------------------------


def test_crc8_j1850_check_value() -> None:
    assert crc8_j1850(b"123456789") == 0x4B
    assert crc8_j1850(b"") == 0x00


def test_every_frame_decodes_in_order(db: Any, frames: list[can.Message]) -> None:
    assert len(frames) > 40_000
    last = -math.inf
    for msg in frames:
        message = db.get_message_by_frame_id(msg.arbitration_id)
        assert message.decode(msg.data, decode_choices=True) is not None
        assert msg.dlc == message.length == len(msg.data)
        assert not msg.is_extended_id and msg.channel == "can0"
        assert msg.timestamp >= last
        last = msg.timestamp
    assert START < frames[0].timestamp < START + 0.01
    assert frames[-1].timestamp < START + drive_duration()


def test_counters_roll_and_checksums_verify(db: Any, frames: list[can.Message]) -> None:
    expected: dict[int, int] = {}
    seen = 0
    for msg in frames:
        message = db.get_message_by_frame_id(msg.arbitration_id)
        if message.name not in PROTECTED:
            continue
        counter_name, checksum_name = PROTECTED[message.name]
        signals = message.decode(msg.data)
        counter = signals[counter_name]
        if msg.arbitration_id in expected:
            assert counter == expected[msg.arbitration_id], (message.name, msg.timestamp)
        expected[msg.arbitration_id] = (counter + 1) % 16
        assert signals[checksum_name] == frame_checksum(msg.data) == crc8_j1850(bytes(msg.data[:7]))
        seen += 1
    assert len(expected) == len(PROTECTED) and seen > 25_000


def test_messages_keep_their_cycle_times(db: Any, frames: list[can.Message]) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    for msg in frames:
        message = db.get_message_by_frame_id(msg.arbitration_id)
        if message.name == "BODY_STATUS" and msg.data[0] == 1:
            continue  # page 1 follows page 0 within the same cycle
        times[message.name].append(msg.timestamp)
    for name, stamps in times.items():
        cycle = CYCLE_MS[name] / 1000.0
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert abs(sum(gaps) / len(gaps) - cycle) < 1e-5, name
        assert all(abs(g - cycle) < 0.001 for g in gaps), name  # jitter, never a lost slot
        assert len(set(gaps)) > 1 or len(gaps) < 3, name  # there is jitter


def test_body_status_sends_both_pages_each_cycle(decoded: Decoded) -> None:
    pages = [signals["BodyMux"] for _, signals in decoded["BODY_STATUS"]]
    assert pages == [0, 1] * (len(pages) // 2)


# -- the drive follows its phases -------------------------------------------------------------


def test_drive_duration_and_phase_at() -> None:
    total = drive_duration()
    assert 120.0 <= total <= 150.0
    assert phase_at(0.0) == "parked"
    assert phase_at(-1.0) == "parked"
    assert phase_at(total - 0.001) == phase_at(total + 5) == DEMO_PHASES[-1].name
    start = 0.0
    for phase in DEMO_PHASES:
        assert phase_at(start) == phase.name
        assert phase_at(start + phase.duration_s / 2) == phase.name
        start += phase.duration_s


def test_gear_sequence_is_p_d_r_p(decoded: Decoded) -> None:
    gears = [str(signals["GearPosition"]) for _, signals in decoded["TRANSMISSION"]]
    sequence = [g for i, g in enumerate(gears) if i == 0 or g != gears[i - 1]]
    assert sequence == ["PARK", "DRIVE", "REVERSE", "PARK"]


def test_gear_changes_only_at_standstill_with_brake(
    decoded: Decoded,
) -> None:
    transmission = decoded["TRANSMISSION"]
    shifts = 0
    for (_, before), (t, after) in itertools.pairwise(transmission):
        if before["GearPosition"] == after["GearPosition"]:
            continue
        shifts += 1
        speed = min(decoded["VEHICLE_SPEED"], key=lambda item: abs(item[0] - t))[1]
        assert speed["VehicleSpeed"] == 0.0, t
        if str(after["GearPosition"]) in ("DRIVE", "REVERSE"):
            brake = min(decoded["BRAKE"], key=lambda item: abs(item[0] - t))[1]
            assert brake["BrakePressed"] == 1, t
    assert shifts == 3


def test_speeds_follow_the_phases(decoded: Decoded) -> None:
    speed = decoded["VEHICLE_SPEED"]
    assert all(s["VehicleSpeed"] >= 0.0 for _, s in speed)
    highway = [s["VehicleSpeed"] for s in in_phase(speed, "highway cruise")]
    assert 105.0 <= max(highway) <= 125.0 and min(highway) >= 105.0
    assert 40.0 <= min(s["VehicleSpeed"] for s in in_phase(speed, "city driving")) <= 50.0
    assert max(s["VehicleSpeed"] for _, s in speed) == max(highway)
    for still in ("parked", "waiting at red light", "parked again"):
        assert {s["VehicleSpeed"] for s in in_phase(speed, still)} == {0.0}, still
    reversing = [s["VehicleSpeed"] for s in in_phase(speed, "reversing into spot")]
    assert 3.0 < max(reversing) <= 8.0
    turn = [s["VehicleSpeed"] for s in in_phase(speed, "sharp left turn")]
    assert all(12.0 <= v <= 18.0 for v in turn)


def test_acceleration_is_bounded(decoded: Decoded) -> None:
    speed = decoded["VEHICLE_SPEED"]
    # Over half-second windows, so that the 0.01 km/h quantisation and jitter do not count.
    step = 25
    for (t0, a), (t1, b) in zip(speed, speed[step:], strict=False):
        accel = (b["VehicleSpeed"] - a["VehicleSpeed"]) / 3.6 / (t1 - t0)
        assert abs(accel) <= 3.0, t0
    assert max(abs(s["LongAccel"]) for _, s in speed) <= 3.0


def test_steering_follows_the_phases(decoded: Decoded) -> None:
    steering = decoded["STEERING"]
    city = [abs(angle(s)) for s in in_phase(steering, "city driving")]
    assert 5.0 < max(city) < 30.0
    turn = in_phase(steering, "sharp left turn")
    assert 180.0 < max(angle(s) for s in turn) <= 270.0  # positive = left
    assert 150.0 <= max(abs(s["SteeringRate"]) for s in turn) <= 300.0
    reverse = [abs(angle(s)) for s in in_phase(steering, "reversing into spot")]
    assert max(reverse) >= 280.0
    highway = [abs(angle(s)) for s in in_phase(steering, "highway cruise")]
    assert max(highway) < 10.0
    assert angle(steering[0][1]) == 0.0 and angle(steering[-1][1]) == 0.0


def test_steering_angle_and_rate_are_continuous(
    decoded: Decoded,
) -> None:
    steering = decoded["STEERING"]
    for (t0, a), (t1, b) in itertools.pairwise(steering):
        dt = t1 - t0
        assert abs(angle(b) - angle(a)) <= 350.0 * dt + 0.2, t0
        assert abs(b["SteeringRate"] - a["SteeringRate"]) <= 3000.0 * dt + 1.0, t0  # no rate steps
        # The reported rate is the angle's derivative.
        mean_rate = (a["SteeringRate"] + b["SteeringRate"]) / 2
        assert abs((angle(b) - angle(a)) / dt - mean_rate) <= 20.0, t0


def test_brakes_and_signals_follow_the_phases(
    decoded: Decoded,
) -> None:
    brake = decoded["BRAKE"]
    assert all(s["BrakePressed"] == 1 for s in in_phase(brake, "waiting at red light"))
    assert all(s["BrakePressure"] > 5.0 for s in in_phase(brake, "waiting at red light"))
    assert all(s["BrakePressed"] == 0 for s in in_phase(brake, "highway cruise"))
    braking = [s["BrakePressed"] for s in in_phase(brake, "braking for red light")]
    assert sum(braking) > 0.8 * len(braking)
    body = [(t, s) for t, s in decoded["BODY_STATUS"] if s["BodyMux"] == 0]
    parking: dict[str, set[str]] = {phase_at(t): set() for t, _ in body}
    turn: dict[str, set[str]] = {phase_at(t): set() for t, _ in body}
    for t, s in body:
        parking[phase_at(t)].add(str(s["ParkingBrake"]))
        turn[phase_at(t)].add(str(s["TurnSignal"]))
    assert parking["parked"] == parking["parked again"] == {"ENGAGED"}
    assert all(v == {"RELEASED"} for k, v in parking.items() if not k.startswith("parked"))
    assert turn["sharp left turn"] == {"LEFT"}
    assert turn["highway cruise"] == {"OFF"}


# -- the model --------------------------------------------------------------------------------


def test_model_is_continuous_at_phase_boundaries() -> None:
    model = DriveModel()
    boundary = 0.0
    for phase in DEMO_PHASES[:-1]:
        boundary += phase.duration_s
        before, after = model.state_at(boundary - 1e-6), model.state_at(boundary + 1e-6)
        assert abs(before.speed_kmh - after.speed_kmh) < 1e-3
        assert abs(before.accel_mps2 - after.accel_mps2) < 1e-2
        assert abs(before.steering_deg - after.steering_deg) < 1e-2
        assert abs(before.steering_rate_dps - after.steering_rate_dps) < 1e-1


def test_model_rate_is_the_derivative_of_the_angle() -> None:
    model = DriveModel()
    h = 1e-4
    t = 0.05
    while t < model.duration:
        numeric = (model.steering(t + h)[0] - model.steering(t - h)[0]) / (2 * h)
        assert abs(numeric - model.steering(t)[1]) < 0.5, t
        numeric_accel = (model.speed(t + h)[0] - model.speed(t - h)[0]) / 3.6 / (2 * h)
        assert abs(numeric_accel - model.speed(t)[1]) < 0.01, t
        t += 0.1


def test_impossible_drives_are_refused() -> None:
    with pytest.raises(ValueError, match="takes"):
        DriveModel((Phase("rocket", 3.0, speed_kmh=100.0), Phase("stop", 30.0)))
    with pytest.raises(ValueError, match="while moving"):
        DriveModel((Phase("go", 20.0, speed_kmh=20.0), Phase("back", 20.0, gear="R")))
    with pytest.raises(ValueError, match="standstill"):
        DriveModel((Phase("go", 20.0, speed_kmh=20.0),))
    with pytest.raises(ValueError):
        Phase("park and drive", 5.0, gear="P", speed_kmh=10.0)
    with pytest.raises(ValueError):
        Phase("jump", 5.0, steering=((0.0, 90.0),))


# -- determinism and repetition ---------------------------------------------------------------


def _raw(messages: Sequence[can.Message]) -> list[tuple[float, int, bytes]]:
    return [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in messages]


def test_drive_is_deterministic(db: Any, frames: list[can.Message]) -> None:
    again = list(scripted_drive(db, start_time=START))
    assert _raw(again) == _raw(frames)
    other_seed = render_drive(db, seed=1)
    assert [f.timestamp for f in other_seed] != [m.timestamp - START for m in frames]


def test_start_time_and_channel(db: Any) -> None:
    short = (Phase("parked", 2.0, gear="P", parking_brake=True),)
    msgs = list(scripted_drive(db, start_time=50.0, phases=short, channel="vcan1"))
    assert all(m.channel == "vcan1" and 50.0 < m.timestamp < 52.0 for m in msgs)


def _check_stream(frames: Sequence[RawFrame], protected_ids: set[int]) -> None:
    expected: dict[int, int] = {}
    for a, b in itertools.pairwise(frames):
        assert b.timestamp >= a.timestamp
    for frame in frames:
        if frame.arbitration_id not in protected_ids:
            continue
        counter = frame.data[6] & 0x0F
        if frame.arbitration_id in expected:
            assert counter == expected[frame.arbitration_id]
        expected[frame.arbitration_id] = (counter + 1) % 16
        assert frame.data[7] == frame_checksum(frame.data)


def test_repeated_drive_continues_timestamps_and_counters(db: Any) -> None:
    protected_ids = {db.get_message_by_name(n).frame_id for n in PROTECTED}
    one = render_drive(db)
    two = list(drive_frames(db, start_time=10.0, repeat=2))
    assert len(two) == 2 * len(one)
    assert two[len(one)].timestamp > two[len(one) - 1].timestamp
    assert abs(two[len(one)].timestamp - (10.0 + drive_duration() + one[0].timestamp)) < 1e-6
    _check_stream(two, protected_ids)
    # The demo turns every counter a whole number of times per pass: payloads simply repeat.
    assert [f.data for f in two[len(one) :]] == [f.data for f in one]


def test_repetition_reseals_counters_of_an_odd_length_drive(db: Any) -> None:
    # 1.05 s: 105 steering frames, not a multiple of 16, so pass 2 must shift the counters.
    odd = (Phase("parked", 1.05, gear="P", parking_brake=True),)
    protected_ids = {db.get_message_by_name(n).frame_id for n in PROTECTED}
    stream = list(drive_frames(db, phases=odd, repeat=3))
    _check_stream(stream, protected_ids)


# -- tools/gen_drive.py -----------------------------------------------------------------------


def test_gen_drive_log_reads_back_with_python_can(tmp_path: Path, frames: list[can.Message]) -> None:
    out = tmp_path / "demo.log"
    result = subprocess.run(
        [sys.executable, str(GEN_DRIVE), "--out", str(out), "--start-time", str(START)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in result.stderr
    first = out.read_text().splitlines()[0]
    assert first.startswith(f"({frames[0].timestamp:.6f}) can0 ") and "#" in first
    back = list(can.LogReader(str(out)))
    assert len(back) == len(frames)
    for read, original in zip(back, frames, strict=True):
        assert read.arbitration_id == original.arbitration_id
        assert bytes(read.data) == bytes(original.data)
        assert read.channel == "can0" and not read.is_extended_id
        assert abs(read.timestamp - original.timestamp) < 1e-6


def test_gen_drive_writes_exactly_n_frames(tmp_path: Path) -> None:
    out = tmp_path / "short.log"
    assert load_gen_drive().main(["--out", str(out), "--frames", "5000", "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 5000
    stamps = [float(line.split()[0][1:-1]) for line in lines]
    assert stamps == sorted(stamps) and stamps[0] >= START


def test_gen_drive_repeats_the_drive_gzipped(db: Any, tmp_path: Path) -> None:
    per_pass = len(render_drive(db))
    wanted = per_pass + 5000
    out = tmp_path / "long.log.gz"
    assert load_gen_drive().main(["--out", str(out), "--frames", str(wanted), "--quiet"]) == 0
    with gzip.open(out, "rt") as handle:
        assert sum(1 for _ in handle) == wanted
    back = [RawFrame(m.timestamp, m.arbitration_id, bytes(m.data)) for m in can.LogReader(str(out))]
    assert len(back) == wanted
    assert all(b.timestamp >= a.timestamp for a, b in itertools.pairwise(back))
    assert back[per_pass].timestamp > START + drive_duration()
    _check_stream(back, {db.get_message_by_name(n).frame_id for n in PROTECTED})


def test_gen_drive_help() -> None:
    result = subprocess.run([sys.executable, str(GEN_DRIVE), "--help"], capture_output=True, text=True, check=True)
    assert "--frames" in result.stdout and "--start-time" in result.stdout
