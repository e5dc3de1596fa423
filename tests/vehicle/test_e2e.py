"""End-to-end protection (#10): counters and checksums checked on real frames of the demo DBC
and on the real comma2k19 RAV4 log (Toyota's byte-sum checksum), with the AUTOSAR-style state machine.
"""

from __future__ import annotations

from pathlib import Path

import can
import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, DemoCar, shared

from safety import Engine
from safety.errors import LoadError
from safety.vehicle.e2e import Protection
from safety.vehicle.profile import load_profile

CHECK_INPUT = b"123456789"


def protection(algorithm: str, **kw: object) -> Protection:
    kw.setdefault("spans", ((0, 9),))
    return Protection(
        message="M",
        frame_id=1,
        is_extended=False,
        counter=None,
        counter_modulus=16,
        checksum="C",
        algorithm=algorithm,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("algorithm", "kw", "expected"),
    [
        ("crc8-sae-j1850", {}, 0x4B),  # the catalogue check value of CRC-8/SAE-J1850
        ("crc8-h2f", {}, 0xDF),  # CRC-8/AUTOSAR (0x2F)
        ("xor", {}, 0x31),
        ("sum", {"offset": 0}, sum(CHECK_INPUT) & 0xFF),
        ("sum", {"offset": 0xB4 + 8}, (sum(CHECK_INPUT) + 0xB4 + 8) & 0xFF),
    ],
)
def test_checksum_algorithms(algorithm: str, kw: dict[str, object], expected: int) -> None:
    assert protection(algorithm, **kw).checksum_of(CHECK_INPUT, None) == expected


def test_a_data_id_goes_into_the_crc_low_byte_first() -> None:
    with_id = protection("crc8-sae-j1850", data_ids=(0x1234,))
    plain = protection("crc8-sae-j1850", spans=((0, 11),))
    assert with_id.checksum_of(CHECK_INPUT, 0) == plain.checksum_of(b"\x34\x12" + CHECK_INPUT, 0)
    per_counter = protection("crc8-h2f", data_ids=tuple(range(16)))
    assert per_counter.checksum_of(CHECK_INPUT, 3) == protection("crc8-h2f", data_ids=(3,)).checksum_of(CHECK_INPUT, 0)


@pytest.fixture
def engine() -> Engine:
    return Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)


def test_the_demo_profile_verifies_every_protected_message(engine: Engine) -> None:
    assert sorted(p.message for p in engine.profile.e2e.values()) == [
        "BODY_STATUS",
        "BRAKE",
        "STEERING",
        "TRANSMISSION",
        "VEHICLE_SPEED",
    ]
    car = DemoCar(engine)
    car.hold(0.0, 1.0, speed=30.0, gear="D")
    counts = engine.counters["e2e"]
    assert counts["VEHICLE_SPEED"] == {"ok": 101}
    assert engine.state().values["speed"] == 30.0


def _speed(car: DemoCar, t: float, *, seal: bool = True, counter: int | None = None, **values: object) -> can.Message:
    if counter is not None:
        car.counters["VEHICLE_SPEED"] = counter
    return car.frame("VEHICLE_SPEED", t, seal=seal, VehicleSpeed=values.get("speed", 30.0))


def test_a_bad_checksum_makes_the_signals_unknown_until_two_good_frames(engine: Engine) -> None:
    car = DemoCar(engine)
    car.hold(0.0, 0.5, speed=30.0, gear="D")
    bad = _speed(car, 0.52)
    bad.data[7] ^= 0x5A
    engine.on_frame(bad)
    state = engine.state()
    assert state.values["speed"] is None
    assert state.unknown["speed"].startswith("integrity failure: checksum 0x")
    assert state.driving_state == "unknown"
    engine.on_frame(_speed(car, 0.54))
    assert engine.state().unknown["speed"] == "integrity: 1 of 2 good frames since the last failure"
    engine.on_frame(_speed(car, 0.56))
    assert engine.state().values["speed"] == 30.0
    assert engine.counters["e2e"]["VEHICLE_SPEED"] == {"ok": 52, "error": 1, "not-trusted": 1}
    assert engine.counters["integrity"] == {"speed": 2}  # the failed frame and the one not yet trusted


def test_a_repeated_counter_is_dropped_and_a_frozen_one_fails(engine: Engine) -> None:
    car = DemoCar(engine)
    car.hold(0.0, 0.2, speed=30.0, gear="D")
    n = car.counters["VEHICLE_SPEED"]
    engine.on_frame(_speed(car, 0.22, counter=n, speed=31.0))
    engine.on_frame(_speed(car, 0.24, counter=n, speed=32.0))  # the same counter: no new data
    assert engine.state().values["speed"] == 31.0
    engine.on_frame(_speed(car, 0.26, counter=n, speed=33.0))  # the third frame with it: frozen
    assert engine.state().unknown["speed"] == f"integrity failure: counter frozen at {n % 16} (3 frames)"


def test_a_counter_that_skips_too_far_is_a_wrong_sequence(engine: Engine) -> None:
    car = DemoCar(engine)
    car.hold(0.0, 0.2, speed=30.0, gear="D")
    n = car.counters["VEHICLE_SPEED"]
    engine.on_frame(_speed(car, 0.22, counter=n + 1))  # one frame lost: tolerated (max_delta 2)
    assert engine.state().values["speed"] == 30.0
    engine.on_frame(_speed(car, 0.24, counter=n + 5))
    assert engine.state().unknown["speed"] == (
        f"integrity failure: counter jumped {(n + 1) % 16} -> {(n + 5) % 16} (at most 2 per frame)"
    )
    assert engine.counters["e2e"]["VEHICLE_SPEED"]["ok-some-lost"] == 1


def test_the_demo_drive_replays_with_no_integrity_failure(tmp_path: Path) -> None:
    from safety.replay.timeline import BUILTIN_PROBES, replay_file

    log = tmp_path / "drive.log"
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "safety.cli", "gen-drive", "--out", str(log), "--quiet"], check=True)
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    summary = replay_file(engine, log, BUILTIN_PROBES, None)
    assert summary.integrity == {}
    counts = engine.counters["e2e"]
    assert set(counts) == {"BODY_STATUS", "BRAKE", "STEERING", "TRANSMISSION", "VEHICLE_SPEED"}
    assert all(set(c) == {"ok"} for c in counts.values()), counts


# ---------------------------------------------------------------------- a real car's checksum
RAV4_E2E = """
e2e:
  SPEED: {checksum: CHECKSUM, algorithm: sum, offset: 188}   # Toyota: id bytes (0xB4 + 0x00) + length 8
"""


def test_the_rav4_speed_checksum_holds_on_the_real_log(tmp_path: Path) -> None:
    log = shared("comma2k19_rav4_2017", "comma2k19_rav4_2018-08-02_seg40.log.gz")
    profile = tmp_path / "rav4.yaml"
    text = (ROOT / "tests" / "profiles" / "rav4_2017.yaml").read_text()
    profile.write_text(text.replace("../../../shared", str(ROOT.parent / "shared")) + RAV4_E2E)
    engine = Engine.load(profile, DEFAULT_POLICY)
    corrupted = 0
    for i, msg in enumerate(can.LogReader(str(log))):
        if msg.arbitration_id == 0xB4 and msg.channel == "can0" and i % 500 == 0:
            msg.data[2] ^= 0x01  # one flipped bit in the speed's bytes
            corrupted += 1
        engine.on_frame(msg)
    counts = engine.counters["e2e"]["SPEED"]
    assert counts["error"] == corrupted > 0
    assert counts["ok"] > 2400
    # Each corrupted frame, and the one after it (recover_after: 2), left the speed unknown.
    assert engine.counters["integrity"]["speed"] == 2 * corrupted


# ---------------------------------------------------------------------- profile errors
def test_e2e_entries_are_checked_against_the_dbc(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text(
        f"""dbc: {ROOT / "dbc" / "demo_sedan.dbc"}
signals:
  speed: {{message: VEHICLE_SPEED, signal: VehicleSpeed}}
e2e:
  VEHICLE_SPEED: {{counter: SpeedCountr, checksum: SpeedChecksum}}
  STEERING: {{checksum: SteeringChecksum, algorithm: crc16}}
  BRAKE: {{counter: BrakeCounter, max_delta: 99}}
  0x999: {{counter: X}}
  TRANSMISSION: {{}}
"""
    )
    with pytest.raises(LoadError) as info:
        load_profile(path)
    assert [str(e).replace(str(path), "car.yaml") for e in info.value.errors] == [
        "car.yaml:5:18: missing-key: e2e.VEHICLE_SPEED: a checksum needs 'algorithm' (crc8-sae-j1850, crc8-h2f, xor, "
        "sum)",
        "car.yaml:5:28: unknown-signal: e2e.VEHICLE_SPEED.counter: message 'VEHICLE_SPEED' has no signal 'SpeedCountr'",
        "car.yaml:6:53: unknown-value: e2e.STEERING.algorithm must be one of: crc8-sae-j1850, crc8-h2f, xor, sum; got "
        "str 'crc16'",
        "car.yaml:7:45: out-of-range: e2e.BRAKE.max_delta must be 1..15, got 99",
        "car.yaml:8:3: unknown-message: e2e.0x999: no message with frame id 0x999 in demo_sedan.dbc",
        "car.yaml:9:17: missing-key: e2e.TRANSMISSION needs a 'counter', a 'checksum', or both",
    ]


def test_protecting_a_message_no_signal_reads_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text(
        f"""dbc: {ROOT / "dbc" / "demo_sedan.dbc"}
signals:
  speed: {{message: VEHICLE_SPEED, signal: VehicleSpeed}}
e2e:
  BRAKE: {{counter: BrakeCounter}}
"""
    )
    profile = load_profile(path)
    assert profile.warnings[-1] == f"{path}:5:10: e2e protects message 'BRAKE', which no mapped signal reads"
