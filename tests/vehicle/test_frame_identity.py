"""Frame identity (#10, item 1): frames are matched by (id, extended), never by the bare number.

A DBC may hold an 11-bit and a 29-bit message with the same number; cantools finds a 29-bit message
whose id is <= 0x7FF only with ``force_extended_id=True``.
"""

from __future__ import annotations

import io
from pathlib import Path

import can
import pytest

from safety import Engine, LoadError, load_profile
from safety.replay.timeline import replay_file

# Two messages numbered 0x123: STD_SPEED (11-bit) carries speed in byte 0, EXT_SPEED (29-bit,
# DBC id 0x80000123) carries it in byte 1.  Gear and steering come from 11-bit messages.
DBC = """VERSION ""
BS_:
BU_: ECU
BO_ 291 STD_SPEED: 8 ECU
 SG_ StdSpeed : 0|8@1+ (1,0) [0|250] "km/h" ECU
BO_ 2147483939 EXT_SPEED: 8 ECU
 SG_ ExtSpeed : 8|8@1+ (1,0) [0|250] "km/h" ECU
BO_ 500 GEAR: 8 ECU
 SG_ Gear : 0|8@1+ (1,0) [0|3] "" ECU
BO_ 501 STEER: 8 ECU
 SG_ Angle : 0|16@1- (0.1,0) [-800|800] "deg" ECU
VAL_ 500 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""

PROFILE = """dbc: twins.dbc
signals:
  speed: {{message: {speed}, signal: {signal}, max_age_ms: 500}}
  gear: {{message: GEAR, signal: Gear, max_age_ms: 500, map: {{P: P, R: R, N: N, D: D}}}}
  steering_angle: {{message: STEER, signal: Angle, max_age_ms: 500}}
"""


def _vehicle(tmp_path: Path, speed: str = "EXT_SPEED", signal: str = "ExtSpeed") -> Path:
    (tmp_path / "twins.dbc").write_text(DBC)
    path = tmp_path / "twins.yaml"
    path.write_text(PROFILE.format(speed=speed, signal=signal))
    return path


def _frames(t: float) -> list[can.Message]:
    """At ``t``: the 29-bit speed says 40 km/h, the 11-bit twin (same number) says 0; gear D."""
    return [
        can.Message(timestamp=t, arbitration_id=0x123, is_extended_id=True, data=bytes([0, 40, 0, 0, 0, 0, 0, 0])),
        can.Message(timestamp=t, arbitration_id=0x123, is_extended_id=False, data=bytes([0, 99, 0, 0, 0, 0, 0, 0])),
        can.Message(timestamp=t, arbitration_id=500, is_extended_id=False, data=bytes([3, 0, 0, 0, 0, 0, 0, 0])),
        can.Message(timestamp=t, arbitration_id=501, is_extended_id=False, data=bytes(8)),
    ]


def test_profile_loads_a_29_bit_message_with_a_small_id(tmp_path: Path) -> None:
    profile = load_profile(_vehicle(tmp_path))
    speed = profile.sources["speed"]
    assert (speed.frame_id, speed.is_extended, speed.frame) == (0x123, True, "0x00000123")
    Engine.load(_vehicle(tmp_path), "default")  # used to raise KeyError from cantools


@pytest.mark.parametrize(
    ("speed", "signal", "expected"), [("EXT_SPEED", "ExtSpeed", 40.0), ("STD_SPEED", "StdSpeed", 0.0)]
)
def test_frames_feed_only_the_message_of_their_id_type(
    tmp_path: Path, speed: str, signal: str, expected: float
) -> None:
    engine = Engine.load(_vehicle(tmp_path, speed, signal), "default")
    for i in range(10):
        for msg in _frames(i * 0.05):
            engine.on_frame(msg)
    assert engine.state().values["speed"] == expected
    # The twin of the other id type alone never feeds the signal.
    lonely = Engine.load(_vehicle(tmp_path, speed, signal), "default")
    for i in range(10):
        for msg in _frames(i * 0.05):
            if msg.arbitration_id != 0x123 or msg.is_extended_id != (speed == "EXT_SPEED"):
                lonely.on_frame(msg)
    assert lonely.state().values["speed"] is None
    assert lonely.state().unknown["speed"] == "never received"


def test_replay_matches_by_id_type(tmp_path: Path) -> None:
    lines = []
    for i in range(40):
        for msg in _frames(i * 0.05):
            width = 8 if msg.is_extended_id else 3
            lines.append(f"({msg.timestamp:.6f}) can0 {msg.arbitration_id:0{width}X}#{msg.data.hex().upper()}\n")
    log = tmp_path / "twins.log"
    log.write_text("".join(lines))
    out = io.StringIO()
    replay_file(Engine.load(_vehicle(tmp_path), "default"), log, [], out)
    speeds = {line.split('"speed": ')[1].split(",")[0] for line in out.getvalue().splitlines()}
    assert speeds == {"40"} or speeds == {"40.0"}, out.getvalue()[:500]
    assert '"driving_state": "moving"' in out.getvalue()


def test_an_integer_message_id_names_its_id_type_when_both_exist(tmp_path: Path) -> None:
    (tmp_path / "twins.dbc").write_text(DBC)
    path = tmp_path / "twins.yaml"
    path.write_text(PROFILE.format(speed="0x123", signal="ExtSpeed"))
    with pytest.raises(LoadError) as info:
        load_profile(path)
    assert [str(e).replace(str(path), "twins.yaml") for e in info.value.errors] == [
        "twins.yaml:3:20: ambiguous-message: signals.speed.message: frame id 0x123 names both an 11-bit and a "
        "29-bit message in twins.dbc (STD_SPEED, EXT_SPEED); give the message name"
    ]
