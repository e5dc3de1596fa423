"""Hostile BLF files: declared sizes that would send python-can's BLFReader astray.

Reproduced first (python-can 4.6.1): a BLF object that declares a size of 0 bytes makes
``can.BLFReader`` parse the same place for ever: a CAN message of size 0 is yielded again and
again (over 100,000 frames from a one-frame file, without end), and an object of another type
or header version loops without yielding at all.  ``drivegate replay`` and ``log-stats`` hung
on such a file.  Each case runs the real command in a subprocess with a timeout, as a user
would, and reads the files through ``read_log`` in-process.  Further down: containers and
objects whose sizes cost memory without bound, a property test that the guarded reader reads
honest files exactly as python-can does, and a fuzzer of damaged files.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import can
import pytest
from blf_objects import blf, blf_file, can_object, container, damaged, python_can_alone, write_messages
from can.io.blf import (
    CAN_MESSAGE,
    FILE_HEADER_SIZE,
    LOG_CONTAINER,
    LOG_CONTAINER_STRUCT,
    OBJ_HEADER_BASE_STRUCT,
)
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, with_peak_memory
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.errors import LogFormatError
from safety.io.blf import _BASE_SIZE, MAX_OBJECT_SIZE, GuardedBLFReader, first_object_not_passed, frames_in_header
from safety.io.frame import Frame
from safety.io.logs import read_log

HUNG = 30  # seconds: these files are a few hundred bytes and read in well under 5 s; 30 s is a hang


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


# --- containers and objects whose sizes would cost a reader memory without bound ---
#
# Reproduced first (python-can 4.6.1): ``BLFReader`` inflates a container's data without a limit
# (a 512 KiB container of zeros becomes 512 MiB in memory at once; a few MiB of file would take
# every byte of a head unit's or a worker's memory); an object that declares a size larger than
# the data (up to 4 GiB) is carried into the next container, and the next, so the whole rest of
# the log is joined into memory again and again and then dropped without a word; a top-level
# object that declares a size below its own header makes it read the whole rest of the file as
# that object, and the frames in it are lost without a word.


BOMB = 512 * 1024 * 1024  # bytes of zeros in the bomb container


@pytest.fixture(scope="module")
def bomb_blf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GOOD in one container, then a container declaring 128 KiB that inflates to 512 MiB."""
    deflate = zlib.compressobj(9)
    zeros = bytes(8 * 1024 * 1024)
    body = b"".join(deflate.compress(zeros) for _ in range(BOMB // len(zeros))) + deflate.flush()
    data = LOG_CONTAINER_STRUCT.pack(2, 128 * 1024) + body
    bomb = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, 16 + len(data), LOG_CONTAINER) + data
    bomb += b"\0" * (len(bomb) % 4)
    path = tmp_path_factory.mktemp("bomb") / "bomb.blf"
    path.write_bytes(blf_file(container(GOOD), bomb, container(GOOD)))
    return path


BOMB_ERROR = (
    "log-format: BLF container at byte {offset} of the file inflates to more than the 131072 bytes it "
    "declares; frames after frame 1 are lost"
)


def test_read_log_of_a_zlib_bomb_stops_at_its_container_without_inflating_it(bomb_blf: Path) -> None:
    errors: list[LogFormatError] = []
    frames, peak = with_peak_memory(lambda: list(read_log(bomb_blf, on_error=errors.append)))
    assert peak < 64 * 1024 * 1024, f"reading it took {peak / 2**20:.0f} MiB"
    assert [(f.arbitration_id, f.timestamp) for f in frames] == [(0x0B4, 0.001)]
    offset = FILE_HEADER_SIZE + len(container(GOOD))
    assert [str(e) for e in errors] == [f"{bomb_blf}: {BOMB_ERROR.format(offset=offset)}"]


def test_replay_of_a_zlib_bomb_reports_it_and_keeps_the_decisions_before(bomb_blf: Path) -> None:
    result = run("replay", "--vehicle", str(DEMO_VEHICLE), "--policy", str(DEFAULT_POLICY), "--quiet", str(bomb_blf))
    offset = FILE_HEADER_SIZE + len(container(GOOD))
    assert f"{bomb_blf}: {BOMB_ERROR.format(offset=offset)}" in result.stderr
    assert result.stdout.strip()


def test_a_container_that_declares_more_than_a_reader_holds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.blf"
    path.write_bytes(blf_file(container(GOOD), container(GOOD, declared=2**32 - 1)))
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x0B4]
    assert errors == [
        f"{path}: log-format: BLF container at byte {FILE_HEADER_SIZE + len(container(GOOD))} of the file "
        "declares 4294967295 uncompressed bytes, more than the 67108864 a container may hold; "
        "frames after frame 1 are lost"
    ]


def test_an_object_larger_than_any_blf_object_is_reported_not_carried_through_the_log(tmp_path: Path) -> None:
    huge = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, 2**32 - 16, CAN_MESSAGE) + bytes(48)
    path = tmp_path / "huge.blf"
    path.write_bytes(blf_file(container(GOOD + huge), *[container(GOOD * 100)] * 20))
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x0B4]
    assert errors == [
        f"{path}: log-format: BLF object at byte {len(GOOD)} of the object stream declares a size of "
        "4294967280 bytes, more than the 16777216 a BLF object may hold; frames after frame 1 are lost"
    ]


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        (0, "declares a size of 0 bytes, expected at least 16"),
        (8, "declares a size of 8 bytes, expected at least 16"),
        (15, "declares a size of 15 bytes, expected at least 16"),
        (2**31, "declares a size of 2147483648 bytes, more than the 134217728 a top-level object may hold"),
    ],
)
def test_a_top_level_object_of_an_untrustworthy_size_is_reported(tmp_path: Path, size: int, problem: str) -> None:
    bad = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, size, LOG_CONTAINER)
    path = tmp_path / "bad-top.blf"
    path.write_bytes(blf_file(container(GOOD), bad, container(GOOD)))
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x0B4]
    assert errors == [
        f"{path}: log-format: BLF object at byte {FILE_HEADER_SIZE + len(container(GOOD))} of the file "
        f"{problem}; frames after frame 1 are lost"
    ]


@pytest.mark.parametrize("size", [1, 8, 15])
def test_an_object_smaller_than_its_header_in_a_container_is_reported(tmp_path: Path, size: int) -> None:
    path = tmp_path / "small.blf"
    path.write_bytes(blf(GOOD, can_object(0x101, b"\x11" * 8, ticks=200, size=size), GOOD))
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x0B4]
    assert errors == [
        f"{path}: log-format: BLF object at byte {len(GOOD)} of the object stream declares a size of "
        f"{size} bytes, expected at least 16; frames after frame 1 are lost"
    ]


def read_all(path: Path) -> tuple[list[Frame], list[str]]:
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    return frames, [str(e) for e in errors]


# --- the guard changes nothing on honest files, and no damage makes a reader hang or crash ---

messages = st.lists(
    st.builds(
        can.Message,
        arbitration_id=st.integers(0, 0x7FF),
        data=st.binary(min_size=0, max_size=8),
        timestamp=st.floats(0, 1e5, allow_nan=False).map(lambda t: round(t, 5)),
        is_extended_id=st.just(False),
        channel=st.sampled_from([0, 1, 2]),
    ),
    max_size=60,
)


def seen(message: can.Message) -> tuple[object, ...]:
    return (message.arbitration_id, bytes(message.data), message.timestamp, message.channel, message.dlc)


@settings(max_examples=150, deadline=None)
@given(sent=messages, level=st.sampled_from([0, 1, 6]), container_size=st.integers(20, 400))
def test_guarded_reader_reads_exactly_what_python_can_reads_from_honest_files(
    sent: list[can.Message], level: int, container_size: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("honest") / "honest.blf"
    write_messages(path, sent, level=level, container_size=container_size)
    with can.BLFReader(path) as plain:
        expected = [seen(m) for m in plain]
    with path.open("rb") as file:
        guarded = GuardedBLFReader(file, str(path))
        assert [seen(m) for m in guarded] == expected
        assert guarded.consumed == path.stat().st_size


class Hung(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hung


@settings(max_examples=300, deadline=None)
@given(
    sent=messages,
    level=st.sampled_from([0, 1]),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)), max_size=6),
    sizes=st.lists(
        st.tuples(st.integers(0, 10**6), st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1))), max_size=3
    ),
)
def test_no_damage_to_a_blf_makes_read_log_hang_crash_or_invent_frames(
    sent: list[can.Message],
    level: int,
    damage: list[tuple[int, bytes]],
    sizes: list[tuple[int, int]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("damaged") / "damaged.blf"
    write_messages(path, sent, level=level, container_size=128)
    raw = damaged(path.read_bytes(), damage, sizes)
    path.write_bytes(raw)
    errors: list[LogFormatError] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        frames = list(read_log(path, on_error=errors.append))
        alone, _ = python_can_alone(path)  # python-can's reader without the numpy runs
    except Hung:
        pytest.fail(f"read_log still reading {path} after 10 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    # Every frame a BLF holds takes at least a 16-byte object header: more frames than that are invented.
    assert len(frames) <= len(raw) // _BASE_SIZE
    assert frames == alone


def walk_object_by_object(data: bytes) -> tuple[int, int] | None:
    """python-can's walk, one object at a time: the first object of a size it must not parse."""
    pos = 0
    while True:
        found = data.find(b"LOBJ", pos, pos + 8)
        if found < 0 or found + 16 > len(data):
            return None
        size = int.from_bytes(data[found + 8 : found + 12], "little")
        if size < 16 or size > MAX_OBJECT_SIZE:
            return found, size
        if found + size > len(data):
            return None
        pos = found + size


object_run = st.tuples(
    st.sampled_from([48, 48, 56, 20, 17, 0, 8, 15, MAX_OBJECT_SIZE + 1, 2**32 - 1]),
    st.integers(1, 40),
    st.binary(max_size=3),  # padding or junk after the run
)


@settings(max_examples=400, deadline=None)
@given(runs=st.lists(object_run, max_size=6), cut=st.integers(0, 4000))
def test_the_walk_in_runs_finds_what_a_walk_object_by_object_finds(
    runs: list[tuple[int, int, bytes]], cut: int
) -> None:
    parts = []
    for size, count, junk in runs:
        body = max(size, 16) - 16 if size <= 4096 else 16
        one = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, size, CAN_MESSAGE) + bytes(body)
        parts.append(one * count + junk)
    data = b"".join(parts)
    data = data[: cut % (len(data) + 1)]
    assert first_object_not_passed(data) == walk_object_by_object(data)


# --- found by review: time that grows with the square of the objects, a header of any size ---


def test_many_objects_that_never_form_a_run_are_read_in_linear_time(tmp_path: Path) -> None:
    """Reproduced first: classic frames each followed by 4 bytes of padding (python-can finds the
    next object within 8 bytes, so the file is honest) in one 64 MiB container: the size guard
    and the numpy reader each looked at every object left in the container at every object, and
    a 195 KB file ran for hours.  Now each object costs the same whatever follows it."""
    record = can_object(0x0B4, bytes(8), ticks=100) + bytes(4)
    count = (64 << 20) // len(record)
    path = tmp_path / "padded.blf"
    path.write_bytes(blf_file(container(record * count)))
    began = time.monotonic()
    frames = sum(1 for _ in read_log(path))
    assert time.monotonic() - began < 120, "not a timing test: the hang took hours"
    assert frames == count


def test_a_file_header_of_an_untrustworthy_size_is_reported(tmp_path: Path) -> None:
    """Reproduced first: python-can reads the rest of the file header by the size it declares;
    a size of 4 GiB read the whole file as header: no frames and no error."""
    raw = bytearray(blf(GOOD, GOOD))
    raw[4:8] = (2**32 - 1).to_bytes(4, "little")
    path = tmp_path / "header.blf"
    path.write_bytes(bytes(raw))
    frames, errors = read_all(path)
    assert frames == []
    assert errors == [
        f"{path}: log-format: the BLF file header declares a size of 4294967295 bytes, expected 72 to 65536"
    ]


def test_a_header_that_overstates_the_frames_does_not_make_the_fleet_plan_huge(tmp_path: Path) -> None:
    """Reproduced first: an uncompressed size of 2**64 - 1 in the header (and no object count)
    planned 10**11 chunks of a small file and never returned."""
    raw = bytearray(blf(*[GOOD] * 1000))
    raw[24:32] = (2**64 - 1).to_bytes(8, "little")  # the uncompressed size
    raw[32:36] = bytes(4)  # the object count
    path = tmp_path / "overstated.blf"
    path.write_bytes(bytes(raw))
    assert frames_in_header(path) <= path.stat().st_size // 4
