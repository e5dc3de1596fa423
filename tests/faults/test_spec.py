"""Fault specifications and the injector's checks against the profile: exact messages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import DEMO_VEHICLE

from safety.errors import FaultSpecError, LoadError
from safety.faults import KINDS, FaultSpec, Injector, parse_fault, parse_faults
from safety.io.frame import Frame
from safety.io.logs import read_log
from safety.io.write import candump_line, write_frames
from safety.vehicle.profile import load_profile


def test_a_full_specification_parses_into_its_parts() -> None:
    spec = parse_fault("spike:VEHICLE_SPEED@24.5+0.1,signal=VehicleSpeed,value=250,count=1")
    assert spec == FaultSpec(
        "spike",
        "VEHICLE_SPEED",
        24.5,
        0.1,
        {"signal": "VehicleSpeed", "value": 250.0, "count": 1.0},
        "spike:VEHICLE_SPEED@24.5+0.1,signal=VehicleSpeed,value=250,count=1",
    )
    assert spec.end == pytest.approx(24.6)


def test_defaults_the_whole_log_and_to_its_end() -> None:
    whole = parse_fault("silence")
    assert (whole.start, whole.duration, dict(whole.params)) == (0.0, math.inf, {})
    tail = parse_fault("skip-counter:0x0B4@10")
    assert (tail.message, tail.start, tail.duration, dict(tail.params)) == (
        "0x0B4",
        10.0,
        math.inf,
        {"by": 5.0, "count": math.inf},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spik:X", "unknown fault kind 'spik'; expected one of " + ", ".join(KINDS)),
        ("drop", "drop needs a message: drop:MESSAGE (a DBC message name or frame id)"),
        ("silence:VEHICLE_SPEED", "silence takes no message (it acts on the whole bus)"),
        ("drop:X@soon", "bad start: found 'soon', expected seconds such as 20 or 12.5"),
        ("drop:X@-1", "bad start: found '-1', expected a finite number of seconds >= 0"),
        ("drop:X@1+nan", "bad duration: found 'nan', expected a finite number of seconds >= 0"),
        ("drop:X@1+0", "bad duration: 0 seconds injects nothing"),
        ("drop:X,count", "bad option 'count': expected key=value"),
        ("drop:X,by=3", "drop has no option 'by'; it takes count"),
        ("silence,by=3", "silence has no option 'by'; it takes no options"),
        ("drop:X,count=0", "bad count: found '0', expected at least 1 frame"),
        ("drop:X,count=1.5", "bad count: found '1.5', expected an integer"),
        ("drop:X,count=1,count=2", "option 'count' given twice"),
        ("spike:X,signal=S", "spike needs value="),
        ("spike:X,value=1e999,signal=S", "bad value: found '1e999', expected a finite number"),
        ("truncate:X,length=64", "bad length: found '64', expected 0 to 63 bytes"),
        ("bad-checksum:X,xor=0", "bad xor: found '0', expected a byte 1 to 255 (0 changes nothing)"),
        ("error-frames,rate=0", "bad rate: found '0', expected 0 < frames per second <= 100000"),
        ("backwards,by=0", "bad by: 0 changes nothing"),
    ],
)
def test_a_malformed_specification_says_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault(text)
    assert str(caught.value) == f"field '--fault': fault-spec: {text!r}: {message}"


def test_every_malformed_fault_is_reported_at_once() -> None:
    with pytest.raises(LoadError) as caught:
        parse_faults(["drop", "silence", "spik"])
    assert [e.message for e in caught.value.errors] == [
        "'drop': drop needs a message: drop:MESSAGE (a DBC message name or frame id)",
        "'spik': unknown fault kind 'spik'; expected one of " + ", ".join(KINDS),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "drop:NOPE",
            "no message 'NOPE' in the DBC of {profile}; it has BODY_STATUS, BRAKE, CLIMATE, ENGINE_RPM, STEERING, TRANSMISSION, VEHICLE_SPEED, WHEEL_SPEEDS",
        ),
        ("freeze-counter:WHEEL_SPEEDS", "WHEEL_SPEEDS has no e2e counter in {profile}; the injector takes its place"),
        (
            "spike:VEHICLE_SPEED,signal=Speed,value=1",
            "VEHICLE_SPEED has no signal 'Speed'; it has VehicleSpeed, StandStill, ",
        ),
        (
            "sna:BRAKE,signal=BrakePressure",
            "the DBC names no not-available value for BrakePressure (a value table entry",
        ),
        (
            "spike:VEHICLE_SPEED,signal=VehicleSpeed,value=900",
            "value 900 is raw 90000, which does not fit VehicleSpeed's 16 bits (0..65535)",
        ),
        ("truncate:VEHICLE_SPEED,length=8", "length 8 does not cut VEHICLE_SPEED's 8 bytes"),
    ],
)
def test_a_fault_the_profile_cannot_place_is_refused(text: str, message: str) -> None:
    profile = load_profile(DEMO_VEHICLE)
    with pytest.raises(LoadError) as caught:
        Injector([parse_fault(text)], profile)
    (error,) = caught.value.errors
    assert error.code == "fault-spec"
    assert error.message.startswith(f"{text!r}: " + message.format(profile=profile.file))


FRAMES = [
    Frame(1.0, 0x0B4, False, bytes(range(8)), "can0"),
    Frame(1.5, 0x18FEF100, True, b"\x01\x02", "can1"),
    Frame(2.0, 0x004, True, bytes(8), "can0", is_error_frame=True),
    Frame(2.25, 0x123, False, bytes(range(12)), "can0", is_fd=True, bitrate_switch=True),
    Frame(2.5, 0x7FF, False, b"", "can0"),
]


def test_candump_lines_are_what_candump_prints() -> None:
    assert [candump_line(f) for f in FRAMES] == [
        "(1.000000) can0 0B4#0001020304050607\n",
        "(1.500000) can1 18FEF100#0102\n",
        "(2.000000) can0 20000004#0000000000000000\n",
        "(2.250000) can0 123##1000102030405060708090A0B\n",
        "(2.500000) can0 7FF#\n",
    ]


@pytest.mark.parametrize("name", ["out.log", "out.log.gz", "out.blf", "out.asc", "out.trc"])
def test_written_logs_read_back_as_the_same_frames(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    frames = FRAMES
    if name.endswith((".asc", ".trc")):
        # What the formats cannot hold, as python-can writes them: an error frame's class (ASC
        # writes a bare ErrorFrame, TRC none at all); TRC's writer has no CAN FD.
        frames = [f for f in FRAMES if not f.is_error_frame and not (f.is_fd and name.endswith(".trc"))]
    assert write_frames(path, frames) == len(frames)
    back = list(read_log(path, on_error=None))
    assert [(f.arbitration_id, f.is_extended_id, f.data, f.is_error_frame, f.is_fd) for f in back] == [
        (f.arbitration_id, f.is_extended_id, f.data, f.is_error_frame, f.is_fd) for f in frames
    ]
    assert [f.timestamp - back[0].timestamp for f in back] == pytest.approx([f.timestamp - 1.0 for f in frames])


def test_an_unknown_output_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot write a log with suffix '\.txt'; expected one of \.log, \.asc"):
        write_frames(tmp_path / "x.txt", FRAMES)
