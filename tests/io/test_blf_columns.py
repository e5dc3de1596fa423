"""BLF logs read as columns (``read_columns``): numpy records for runs of classic data frames.

The columns must hold exactly the frames and errors python-can's reader alone (guarded against
hostile sizes) gives for the same file, from any frame on, in batches of any size, and so must
``read_log`` (which reads those runs as numpy records too): on python-can-written files
of every kind of message and container size, on files damaged at random, and on the shared real
BLF logs.  The numpy path must really be taken on a plain file, or these tests would pass on
python-can alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import can
import pytest
from blf_objects import blf_file, can_object, containers, damaged, python_can_alone, write_messages
from can.io.blf import CAN_MESSAGE, CAN_MESSAGE2
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.io.blf import CANRun, ColumnarBLFReader
from safety.io.columns import read_columns
from safety.io.logs import read_log

classic = st.builds(
    can.Message,
    arbitration_id=st.integers(0, 0x7FF),
    data=st.binary(min_size=0, max_size=8),
    is_extended_id=st.just(False),
    channel=st.sampled_from([0, 1, 3]),
)
extended = st.builds(
    can.Message,
    arbitration_id=st.integers(0, 0x1FFFFFFF),
    data=st.binary(min_size=0, max_size=8),
    is_extended_id=st.just(True),
    channel=st.sampled_from([0, 1]),
)
remote = st.builds(
    can.Message, arbitration_id=st.integers(0, 0x7FF), is_remote_frame=st.just(True), dlc=st.integers(0, 8)
)
error = st.builds(can.Message, arbitration_id=st.integers(0, 0x7FF), is_error_frame=st.just(True))
fd = st.builds(
    can.Message,
    arbitration_id=st.integers(0, 0x7FF),
    data=st.sampled_from([bytes(12), bytes(range(16)), bytes(64), b"\x01"]),
    is_fd=st.just(True),
    bitrate_switch=st.booleans(),
)
# Runs of plain classic frames (what the numpy path reads) between the other kinds.
plain = st.lists(st.one_of(classic, extended), min_size=1, max_size=30)
odd = st.lists(st.one_of(remote, error, fd), min_size=1, max_size=2)
messages = st.lists(st.one_of(plain, plain, odd), max_size=6).flatmap(
    lambda parts: st.lists(st.floats(0, 5e4), min_size=sum(map(len, parts)), max_size=sum(map(len, parts))).map(
        lambda stamps: list(zip([m for part in parts for m in part], stamps, strict=True))
    )
)


def write_blf(path: Path, sent: list[tuple[can.Message, float]], *, level: int, container_size: int) -> None:
    for message, timestamp in sent:
        message.timestamp = round(timestamp, 5)
    write_messages(path, [m for m, _ in sent], level=level, container_size=container_size)


def frames_and_errors_of_columns(path: Path, start: int, batch_frames: int) -> tuple[list[Any], list[str]]:
    errors: list[Any] = []
    batches = list(read_columns(path, on_error=errors.append, batch_frames=batch_frames, start=start))
    frames = [
        (position, frame)
        for batch in batches
        for position, frame in zip(batch.positions.tolist(), batch.frames(range(len(batch))), strict=True)
    ]
    assert all(len(b) == batch_frames for b in batches[:-1])
    return frames, [str(e) for e in errors]


def frames_and_errors_of_log(path: Path, start: int) -> tuple[list[Any], list[str]]:
    """python-can's frames (its reader alone) from ``start`` on, with their positions, and its
    errors; ``read_log``, which reads runs of classic frames as numpy records too, gives the same."""
    frames, errors = python_can_alone(path)
    logged: list[Any] = []
    assert list(read_log(path, on_error=logged.append)) == frames
    assert [str(e) for e in logged] == [str(e) for e in errors]
    return list(enumerate(frames))[start:], [str(e) for e in errors]


@settings(max_examples=200, deadline=None)
@given(
    sent=messages,
    level=st.sampled_from([0, 1, 6]),
    container_size=st.integers(20, 600),
    start=st.integers(0, 90),
    batch_frames=st.integers(1, 50),
)
def test_columns_of_a_blf_hold_exactly_what_read_log_gives(
    sent: list[tuple[can.Message, float]],
    level: int,
    container_size: int,
    start: int,
    batch_frames: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("blf") / "drive.blf"
    write_blf(path, sent, level=level, container_size=container_size)
    assert frames_and_errors_of_columns(path, start, batch_frames) == frames_and_errors_of_log(path, start)


@settings(max_examples=300, deadline=None)
@given(
    sent=messages,
    level=st.sampled_from([0, 1]),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)), max_size=6),
    sizes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 80)), max_size=3),
)
def test_columns_of_a_damaged_blf_hold_the_frames_and_errors_read_log_gives(
    sent: list[tuple[can.Message, float]],
    level: int,
    damage: list[tuple[int, bytes]],
    sizes: list[tuple[int, int]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("damaged") / "damaged.blf"
    write_blf(path, sent, level=level, container_size=160)
    path.write_bytes(damaged(path.read_bytes(), damage, sizes))
    assert frames_and_errors_of_columns(path, 0, 16) == frames_and_errors_of_log(path, 0)


# Objects as a logger may write them: 10 us or 1 ns ticks (some too large for a float to hold
# exactly), any DLC up to 15, the direction and remote flags, extended ids, channels 0..3,
# CAN_MESSAGE2, object headers of version 2, cut into containers anywhere.
def raw_object(odd: str = "") -> st.SearchStrategy[bytes]:
    """A CAN message object; ``odd`` names why the numpy path leaves it to python-can (a remote
    frame, a header of version 2, ticks a float cannot hold exactly)."""
    return st.builds(
        lambda can_id, data, ticks, time_flags, channel, flags, dlc, obj_type, version: can_object(
            can_id,
            data,
            ticks=ticks,
            time_flags=time_flags,
            channel=channel,
            flags=flags,
            dlc=dlc,
            obj_type=obj_type,
            version=version,
        ),
        can_id=st.one_of(st.integers(0, 0x7FF), st.integers(0, 2**32 - 1)),
        data=st.binary(min_size=0, max_size=8),
        ticks=st.integers(2**53, 2**64 - 1)
        if odd == "ticks"
        else st.one_of(st.integers(0, 10**12), st.integers(0, 2**53 - 1)),
        time_flags=st.sampled_from([1, 2, 0]),
        channel=st.integers(0, 3),
        flags=st.sampled_from([0x80, 0x81]) if odd == "remote" else st.sampled_from([0, 1]),
        dlc=st.one_of(st.none(), st.integers(0, 15)),
        obj_type=st.sampled_from([CAN_MESSAGE, CAN_MESSAGE2]),
        version=st.just(2) if odd == "version" else st.just(1),
    )


raw_objects = st.lists(
    st.one_of(
        st.lists(raw_object(), min_size=1, max_size=25),
        st.lists(raw_object(), min_size=1, max_size=25),
        st.lists(st.one_of(raw_object("remote"), raw_object("version"), raw_object("ticks")), min_size=1, max_size=2),
    ),
    max_size=5,
).map(lambda parts: [o for part in parts for o in part])


@settings(max_examples=300, deadline=None)
@given(
    objects=raw_objects,
    cuts=st.lists(st.integers(0, 10**5), max_size=6),
    method=st.sampled_from([0, 2]),
    start=st.integers(0, 70),
    batch_frames=st.integers(1, 40),
)
def test_columns_of_any_classic_objects_hold_exactly_what_read_log_gives(
    objects: list[bytes],
    cuts: list[int],
    method: int,
    start: int,
    batch_frames: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("raw") / "raw.blf"
    path.write_bytes(blf_file(*containers(b"".join(objects), cuts, method=method)))
    assert frames_and_errors_of_columns(path, start, batch_frames) == frames_and_errors_of_log(path, start)


@pytest.mark.parametrize(("ticks", "time_flags"), [(11336599266367910566, 1), (1757470080851883721, 2)])
def test_ticks_a_float_cannot_hold_are_converted_as_python_can_converts_them(
    tmp_path: Path, ticks: int, time_flags: int
) -> None:
    # python-can multiplies exact Decimals; dividing the float nearest to these ticks rounds twice
    # and comes out one unit in the last place off (a quarter of such ticks do).
    objects = [can_object(0x0B4, bytes(8), ticks=t, time_flags=time_flags) for t in (5, ticks, 7)]
    path = tmp_path / "late.blf"
    path.write_bytes(blf_file(*containers(b"".join(objects), [])))
    assert frames_and_errors_of_columns(path, 0, 8) == frames_and_errors_of_log(path, 0)


def test_a_plain_blf_is_read_as_numpy_runs_not_frame_by_frame(tmp_path: Path) -> None:
    path = tmp_path / "plain.blf"
    write_blf(
        path,
        [(can.Message(arbitration_id=0x0B4, data=bytes(8), is_extended_id=False), i / 100) for i in range(5000)],
        level=6,
        container_size=128 * 1024,
    )
    with path.open("rb") as file:
        items = list(ColumnarBLFReader(file, str(path)).items())
    assert all(isinstance(item, CANRun) for item in items)
    assert sum(len(item) for item in items) == 5000
    assert len(items) <= 3  # one run per container: 5,000 objects of 48 bytes fill two of 128 KiB


@pytest.mark.parametrize(
    "name",
    [
        "test_CanMessage.blf",
        "test_CanMessage2.blf",
        "test_CanFdMessage.blf",
        "test_CanFdMessage64.blf",
        "test_CanErrorFrameExt.blf",
        "issue_1905.blf",
    ],
)
def test_columns_of_the_shared_blf_logs_hold_what_read_log_gives(name: str) -> None:
    path = SHARED / "python-can_test_data" / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data is not on this machine)")
    for start in (0, 1, 5):
        assert frames_and_errors_of_columns(path, start, 3) == frames_and_errors_of_log(path, start)
