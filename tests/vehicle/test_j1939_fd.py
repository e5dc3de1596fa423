"""CAN FD and J1939 (#10, item 2): FD flags on frames, profiles that require FD, PGN matching.

The J1939 part runs on the real CSS Electronics truck logs in ../shared/data: their DBC declares
CCVS1 as 0x18FEF1FE (source address 0xFE) while the trucks send it from other addresses.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import can
import pytest
from conftest import DEFAULT_POLICY, ROOT, shared

from safety import Engine
from safety.errors import LoadError
from safety.replay.timeline import BUILTIN_PROBES, replay_file
from safety.vehicle.profile import load_profile


def truck_profile(tmp_path: Path, source: str) -> Path:
    dbc = shared("css_electronics_mf4", "CSS-Electronics-SAE-J1939-DEMO.dbc")
    path = tmp_path / "truck.yaml"
    path.write_text(
        f"dbc: {dbc}\nsignals:\n  speed: {{message: CCVS1, signal: WheelBasedVehicleSpeed, max_age_ms: 500{source}}}\n"
    )
    return path


def test_the_css_truck_log_decodes_its_wheel_speed_by_pgn(tmp_path: Path) -> None:
    log = shared("css_electronics_mf4", "j1939_11111111_00000012_00000001.MF4")
    engine = Engine.load(truck_profile(tmp_path, ", source: any"), DEFAULT_POLICY)
    assert engine.profile.sources["speed"].frame == "PGN 0xFEF1 (65265) from any source"
    out = io.StringIO()
    summary = replay_file(engine, log, BUILTIN_PROBES, out, sample_every=10.0)
    assert summary.frames_decoded > 100
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {line["speed"] for line in lines[1:]} == {0.0}  # the truck stands (the log's own finding)
    cantools_speeds = set()
    db = engine.profile.database
    message = db.get_message_by_name("CCVS1")
    for msg in can.LogReader(str(log)):
        if msg.is_extended_id and (msg.arbitration_id >> 8) & 0x3FFFF == 0xFEF1:
            cantools_speeds.add(message.decode(msg.data)["WheelBasedVehicleSpeed"])
    assert cantools_speeds == {0.0}


def test_a_source_list_takes_only_those_senders(tmp_path: Path) -> None:
    engine = Engine.load(truck_profile(tmp_path, ", source: [0x47]"), DEFAULT_POLICY)
    message = engine.profile.database.get_message_by_name("CCVS1")
    data = message.encode({s.name: 0 for s in message.signals} | {"WheelBasedVehicleSpeed": 42.0})
    for t, sender in ((1.0, 0x00), (1.1, 0x47)):
        engine.on_frame(can.Message(timestamp=t, arbitration_id=0x18FEF100 | sender, is_extended_id=True, data=data))
        if sender == 0x00:
            assert engine.state().values["speed"] is None  # not a sender the profile accepts
    assert engine.state().values["speed"] == pytest.approx(42.0)
    # Priority bits are not part of the PGN: priority 3 instead of 6 matches the same entry.
    engine.on_frame(can.Message(timestamp=1.2, arbitration_id=0x0CFEF147, is_extended_id=True, data=data))
    assert engine.frames_decoded == 2


def test_a_pgn_entry_finds_its_dbc_message(tmp_path: Path) -> None:
    dbc = shared("css_electronics_mf4", "CSS-Electronics-SAE-J1939-DEMO.dbc")
    path = tmp_path / "truck.yaml"
    path.write_text(
        f"dbc: {dbc}\nsignals:\n  speed: {{pgn: 65265, signal: WheelBasedVehicleSpeed, max_age_ms: 500}}\n"
        "  steering_angle: {pgn: 1, signal: X, max_age_ms: 500}\n"
    )
    with pytest.raises(LoadError) as info:
        load_profile(path)
    assert [str(e).replace(str(path), "truck.yaml") for e in info.value.errors] == [
        f"truck.yaml:4:25: unknown-message: signals.steering_angle.pgn: no 29-bit message with PGN 0x0001 (1) in {dbc.name}"
    ]
    path.write_text(f"dbc: {dbc}\nsignals:\n  speed: {{pgn: 65265, signal: WheelBasedVehicleSpeed, max_age_ms: 500}}\n")
    assert load_profile(path).sources["speed"].message == "CCVS1"


FD_PROFILE = """dbc: {dbc}
signals:
  speed: {{message: VEHICLE_SPEED, signal: VehicleSpeed, fd: true}}
"""


def test_a_profile_can_require_can_fd(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text(FD_PROFILE.format(dbc=ROOT / "dbc" / "demo_sedan.dbc"))
    engine = Engine.load(path, DEFAULT_POLICY)
    data = bytes.fromhex("B80B000000000000")  # 30.00 km/h
    engine.on_frame(can.Message(timestamp=1.0, arbitration_id=0xB4, is_extended_id=False, data=data, is_fd=False))
    assert engine.state().unknown["speed"] == "not a CAN FD frame (the profile requires FD)"
    engine.on_frame(
        can.Message(
            timestamp=1.1, arbitration_id=0xB4, is_extended_id=False, data=data, is_fd=True, bitrate_switch=True
        )
    )
    assert engine.state().values["speed"] == 30.0


def test_fd_flags_come_through_a_candump_replay(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text(FD_PROFILE.format(dbc=ROOT / "dbc" / "demo_sedan.dbc"))
    log = tmp_path / "fd.log"
    log.write_text("(1.000000) can0 0B4#B80B000000000000\n(1.100000) can0 0B4##1B80B000000000000\n")
    engine = Engine.load(path, DEFAULT_POLICY)
    out = io.StringIO()
    replay_file(engine, log, BUILTIN_PROBES, out, reasons=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["unknown"]["speed"] == "not a CAN FD frame (the profile requires FD)"
    assert engine.state().values["speed"] == 30.0


def test_the_service_kernel_filters_pass_a_pgn_from_every_sender(tmp_path: Path) -> None:
    """Found in review: ``serve``'s kernel filters passed only the DBC's exact id (source 0xFE,
    priority 6), so a truck's CCVS1 from any other sender never reached the PGN matching.
    Real python-can virtual buses: the receiving one applies the service's filters."""
    from safety.service.inputs import kernel_filters

    engine = Engine.load(truck_profile(tmp_path, ", source: any"), DEFAULT_POLICY)
    filters = kernel_filters(engine)
    channel = f"j1939-{tmp_path.name}"
    with (
        can.Bus(interface="virtual", channel=channel, can_filters=filters) as receiver,
        can.Bus(interface="virtual", channel=channel) as sender,
    ):
        for ident in (0x18FEF100, 0x0CFEF147, 0x18FEF1FE, 0x18FEF200, 0x18EAFF00):
            sender.send(can.Message(arbitration_id=ident, is_extended_id=True, data=bytes(8)))
        received = []
        while (msg := receiver.recv(timeout=0.2)) is not None:
            received.append(msg.arbitration_id)
    assert received == [0x18FEF100, 0x0CFEF147, 0x18FEF1FE]
