"""Hostile BLF files: objects whose size would send python-can's BLFReader round in circles.

Reproduced first (python-can 4.6.1): a BLF object that declares a size of 0 bytes makes
``can.BLFReader`` parse the same place for ever: a CAN message of size 0 is yielded again and
again (over 100,000 frames from a one-frame file, without end), and an object of another type
or header version loops without yielding at all.  ``drivegate replay`` and ``log-stats`` hung
on such a file.  Each case runs the real command in a subprocess with a timeout, as a user
would, and reads the files through ``read_log`` in-process once the hang is fixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from can.io.blf import (
    CAN_MESSAGE,
    CAN_MSG_STRUCT,
    FILE_HEADER_SIZE,
    FILE_HEADER_STRUCT,
    LOG_CONTAINER,
    LOG_CONTAINER_STRUCT,
    OBJ_HEADER_BASE_STRUCT,
    OBJ_HEADER_V1_STRUCT,
)
from conftest import DEFAULT_POLICY, DEMO_VEHICLE

from safety.errors import LogFormatError
from safety.io.logs import read_log

HUNG = 30  # seconds: these files are a few hundred bytes and read in well under 5 s; 30 s is a hang


def can_object(
    can_id: int, data: bytes, *, ticks: int, size: int | None = None, version: int = 1, obj_type: int = CAN_MESSAGE
) -> bytes:
    """One BLF CAN message object (header v1, 10 us ticks); ``size`` overrides the declared size."""
    body = OBJ_HEADER_V1_STRUCT.pack(1, 0, 0, ticks) + CAN_MSG_STRUCT.pack(
        1, 0, len(data), can_id, data.ljust(8, b"\0")
    )
    real = OBJ_HEADER_BASE_STRUCT.size + len(body)
    return OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, version, real if size is None else size, obj_type) + body


def blf(*objects: bytes) -> bytes:
    """A BLF file holding ``objects`` in one zlib container, as CANoe and python-can write them."""
    stream = b"".join(objects)
    container = LOG_CONTAINER_STRUCT.pack(2, len(stream)) + zlib.compress(stream)
    top = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, 16 + len(container), LOG_CONTAINER) + container
    top += b"\0" * (len(top) % 4)
    header = FILE_HEADER_STRUCT.pack(
        b"LOGG",
        FILE_HEADER_SIZE,
        5,
        0,
        0,
        0,
        2,
        6,
        8,
        1,
        FILE_HEADER_SIZE + len(top),
        len(stream),
        len(objects),
        0,
        *([0] * 8),
        *([0] * 8),
    )
    return header.ljust(FILE_HEADER_SIZE, b"\0") + top


GOOD = can_object(
    0x0B4,  # VEHICLE_SPEED of the demo sedan
    b"\x01\x02\x03\x04\x05\x06\x07\x08",
    ticks=100,
)
ZERO_CASES = {
    # name: (second object, its byte offset in the object stream)
    "can-message": can_object(0x101, b"\x11" * 8, ticks=200, size=0),
    "unknown-type": can_object(0x101, b"\x11" * 8, ticks=200, size=0, obj_type=999),
    "unknown-version": can_object(0x101, b"\x11" * 8, ticks=200, size=0, version=7),
}
ERROR = (
    "log-format: BLF object at byte {offset} of the object stream declares a size of 0 bytes, "
    "expected at least 16; frames after frame 1 are lost"
)


@pytest.fixture(params=sorted(ZERO_CASES))
def zero_size_blf(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"zero-{request.param}.blf"
    path.write_bytes(blf(GOOD, ZERO_CASES[request.param], GOOD))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", "safety.cli", *args], capture_output=True, text=True, timeout=HUNG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"drivegate {' '.join(args)} still running after {HUNG} s: it hangs on the file")


@pytest.mark.parametrize("engine", ["streaming", "columnar"])
def test_replay_of_a_blf_with_a_zero_size_object_ends_with_the_error(zero_size_blf: Path, engine: str) -> None:
    result = run(
        "replay",
        "--vehicle",
        str(DEMO_VEHICLE),
        "--policy",
        str(DEFAULT_POLICY),
        "--engine",
        engine,
        "--quiet",
        str(zero_size_blf),
    )
    assert f"{zero_size_blf}: {ERROR.format(offset=len(GOOD))}" in result.stderr
    assert result.stdout.strip(), "the decisions before the bad object are kept"


def test_log_stats_of_a_blf_with_a_zero_size_object_counts_the_frames_before(zero_size_blf: Path) -> None:
    result = run("log-stats", "--vehicle", str(DEMO_VEHICLE), "--format", "json", str(zero_size_blf))
    frames = {m["message"]: m["frames"] for m in json.loads(result.stdout)["messages"]}
    assert frames["VEHICLE_SPEED"] == 1, frames  # the file holds it twice, the second after the bad object
    assert f"log error: {zero_size_blf}: {ERROR.format(offset=len(GOOD))}" in result.stderr


def test_read_log_keeps_the_frame_before_a_zero_size_object_and_names_its_offset(zero_size_blf: Path) -> None:
    errors: list[LogFormatError] = []
    frames = list(read_log(zero_size_blf, on_error=errors.append))
    assert [(f.arbitration_id, f.data, f.timestamp) for f in frames] == [(0x0B4, bytes(range(1, 9)), 0.001)]
    assert [str(e) for e in errors] == [f"{zero_size_blf}: {ERROR.format(offset=len(GOOD))}"]
