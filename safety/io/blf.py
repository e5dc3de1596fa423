"""BLF (Vector binary logging format): python-can's reader, guarded against hostile sizes.

python-can 4.6.1's ``BLFReader`` trusts every size a file declares:

- an object in a container that declares a size of 0 leaves its walk at the same place for
  ever (a CAN message of size 0 is yielded again and again, an object of another type or
  header version loops without yielding): a file of a few hundred bytes hangs a replay;
- an object that declares more than the data left (up to 4 GiB) is carried into the next
  container, and the next, so the rest of the log is joined into memory again and again and
  then dropped without a word;
- a container is inflated without a limit: a few hundred KiB of zlib become gigabytes at once;
- a top-level object that declares less than its own header makes it read the rest of the
  file as one object (``read`` of a negative length).

:class:`GuardedBLFReader` is python-can's reader with each of those sizes checked before it is
used: it reads the top-level objects and inflates the containers itself (the same loop as
python-can's, bounded), walks each container's objects the way python-can will and hands
python-can only the data up to an object it could not get past; the frames before stay, and
the bad object or container is reported with its place as a :class:`LogFormatError`.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import can
import numpy as np
import numpy.typing as npt
from can.io.blf import (
    CAN_MESSAGE,
    CAN_MESSAGE2,
    CAN_MSG_EXT,
    FILE_HEADER_STRUCT,
    LOG_CONTAINER,
    LOG_CONTAINER_STRUCT,
    NO_COMPRESSION,
    OBJ_HEADER_BASE_STRUCT,
    REMOTE_FLAG,
    ZLIB_DEFLATE,
)

from safety.errors import Location, LogFormatError
from safety.io.frame import CAN_EFF_MASK, Frame, channel_name

LOG = logging.getLogger(__name__)

_SIGNATURE = b"LOBJ"
_BASE_SIZE = OBJ_HEADER_BASE_STRUCT.size  # 16: signature, header size, version, object size, type
_SIZE_AT = 8  # byte offset of the object size (uint32, little-endian) in the base header
# The largest object we accept in a container.  BLF's largest frames (CAN FD 64, Ethernet,
# FlexRay) are under 2 KiB; 16 MiB leaves room for anything a logger writes and bounds the data
# python-can carries from container to container.
MAX_OBJECT_SIZE = 16 * 1024 * 1024
# The most a container may hold inflated.  Vector's loggers and python-can's writer fill
# containers to 128 KiB; 64 MiB is 512 times that, and bounds what one container costs.
MAX_CONTAINER_SIZE = 64 * 1024 * 1024
# A top-level object (a container, compressed or not) is read into memory whole: zlib's
# worst case grows data by well under 1 %, so twice a container's limit bounds any honest one.
MAX_TOP_LEVEL_SIZE = 2 * MAX_CONTAINER_SIZE
CAN_RECORD_SIZE = 48  # a classic CAN message object: base header, v1 header, the message
MAX_HEADER_SIZE = 64 * 1024  # the file header: python-can and Vector write 144 bytes
# Frames are estimated from the header for planning only; no log's frames take fewer bytes of
# file than this on average (zlib makes ~5 of a busy bus's 48), so a header saying more lies.
LEAST_FILE_BYTES_PER_FRAME = 4


def first_object_not_passed(data: bytes) -> tuple[int, int] | None:
    """The offset and declared size of the first object in ``data`` python-can must not parse.

    That is an object declaring fewer bytes than its own header (python-can would parse it for
    ever, or step back into it) or more than :data:`MAX_OBJECT_SIZE`.  The walk steps from
    object to object as python-can's does (the next object's signature is searched in the 8
    bytes from where the previous one ends) and ends where python-can's could go no further in
    this data: no signature found, or an object running past the end.
    """
    end = len(data)
    pos = 0
    previous_end = previous_size = -1
    while True:
        found = data.find(_SIGNATURE, pos, pos + 8)
        if found < 0 or found + _BASE_SIZE > end:
            return None
        size = int.from_bytes(data[found + _SIZE_AT : found + _SIZE_AT + 4], "little")
        if size < _BASE_SIZE or size > MAX_OBJECT_SIZE:
            return found, size
        if found + size > end:
            return None
        if found == previous_end and size == previous_size:
            # Objects of one size back to back (a log's classic frames are all 48 bytes): the
            # rest of the run is checked with numpy, python-can's walk steps through each exactly.
            pos = found + size * _run_length(data, found, _stride(size), functools.partial(_declares, size))
        else:
            pos = found + size
        previous_end, previous_size = pos, size


def _declares(size: int, records: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    same: npt.NDArray[np.bool_] = records["size"] == size
    return same


def _run_length(
    data: bytes,
    start: int,
    dtype: np.dtype[np.void],
    alike: Callable[[npt.NDArray[np.void]], npt.NDArray[np.bool_]],
) -> int:
    """How many records of ``dtype`` from ``start`` on carry the signature and are ``alike``.

    Looked at in windows that double while every record matches, so a short run costs a short
    look however much data follows (looking at all of it each time was quadratic in a container
    of objects that never run: found by review).
    """
    available = (len(data) - start) // dtype.itemsize
    length = 0
    window = 64
    while length < available:
        count = min(window, available - length)
        records = np.frombuffer(data, dtype=dtype, count=count, offset=start + length * dtype.itemsize)
        matches = (records["signature"] == _SIGNATURE) & alike(records)
        if not matches.all():
            return length + int(np.argmin(matches))
        length += count
        window *= 2
    return length


@functools.lru_cache(maxsize=64)
def _stride(size: int) -> np.dtype[np.void]:
    """Objects of ``size`` bytes back to back: their signatures and declared sizes."""
    return np.dtype(
        {"names": ["signature", "size"], "formats": ["S4", "<u4"], "offsets": [0, _SIZE_AT], "itemsize": size}
    )


def frames_in_header(path: str | Path) -> int | None:
    """About how many frames a BLF file holds, from its header; None if it has no BLF header.

    The header counts the objects written (python-can's writer and Vector's count each frame);
    where the count is 0, the frames of 48 bytes its uncompressed size would hold; never more
    than the file's size allows (:data:`LEAST_FILE_BYTES_PER_FRAME`: a header can lie).
    """
    with open(path, "rb") as file:
        head = file.read(FILE_HEADER_STRUCT.size)
        size = os.fstat(file.fileno()).st_size
    if len(head) < FILE_HEADER_STRUCT.size or head[:4] != b"LOGG":
        return None
    header = FILE_HEADER_STRUCT.unpack(head)
    uncompressed, objects = header[11], header[12]
    stated = int(objects) if objects else int(uncompressed) // CAN_RECORD_SIZE
    return min(stated, size // LEAST_FILE_BYTES_PER_FRAME)


def _size_problem(size: int, most: int, what: str) -> str:
    if size < _BASE_SIZE:
        return f"declares a size of {size} bytes, expected at least {_BASE_SIZE}"
    return f"declares a size of {size} bytes, more than the {most} {what} may hold"


class _CountingBytes:
    """A binary file that counts the bytes read from it, to notice a truncated BLF; bytes read
    may be handed back (``unread``) to be read again."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._back = b""
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        if self._back:
            data = self._back if size < 0 else self._back[:size]
            self._back = self._back[len(data) :]
            if size < 0 or len(data) < size:
                data += self._file.read(-1 if size < 0 else size - len(data))
        else:
            data = self._file.read(size)
        self.consumed += len(data)
        return data

    def unread(self, data: bytes) -> None:
        self._back = data + self._back
        self.consumed -= len(data)

    def close(self) -> None:
        self._file.close()


class GuardedBLFReader(can.BLFReader):
    """python-can's ``BLFReader``, stopping with a :class:`LogFormatError` at a size it cannot trust.

    Errors name the bad object's byte offset in the file (top-level objects, containers) or in
    the file's object stream (the inflated content of its containers, one after another), and
    the number of frames read before it.  ``consumed`` is the number of bytes read from the file.
    """

    def __init__(self, file: BinaryIO, name: str) -> None:
        self._counted = _CountingBytes(file)
        # python-can reads the rest of the file header by the size it declares: check it first.
        head = self._counted.read(FILE_HEADER_STRUCT.size)
        if len(head) == FILE_HEADER_STRUCT.size and head[:4] == b"LOGG":
            header_size = int.from_bytes(head[4:8], "little")
            if not FILE_HEADER_STRUCT.size <= header_size <= MAX_HEADER_SIZE:
                raise LogFormatError(
                    f"the BLF file header declares a size of {header_size} bytes, "
                    f"expected {FILE_HEADER_STRUCT.size} to {MAX_HEADER_SIZE}",
                    Location(file=name),
                )
        self._counted.unread(head)
        super().__init__(self._counted)  # type: ignore[arg-type]  # it reads like a BinaryIO
        self._name = name  # for errors
        self._stream_offset = 0  # where the data python-can parses next starts in the object stream
        self.frames = 0  # messages yielded so far

    @property
    def consumed(self) -> int:
        """Bytes read from the file so far."""
        return self._counted.consumed

    def _error(self, problem: str) -> LogFormatError:
        return LogFormatError(
            f"{problem}; frames after frame {self.frames} are lost", Location(file=self._name, line=0)
        )

    def __iter__(self) -> Generator[can.Message, None, None]:
        for data in self._containers():
            yield from self._parse_container(data)
        self.stop()

    def _containers(self) -> Iterator[bytes]:
        """The inflated data of each container, in file order.

        python-can's loop over the top-level objects, with each size checked before use.
        """
        while True:
            offset = self.consumed
            head = self.file.read(_BASE_SIZE)
            if not head:
                return
            signature, _, _, size, obj_type = OBJ_HEADER_BASE_STRUCT.unpack(head)  # short: struct.error
            if signature != _SIGNATURE:
                raise can.io.blf.BLFParseError()
            if size < _BASE_SIZE or size > MAX_TOP_LEVEL_SIZE:
                problem = _size_problem(size, MAX_TOP_LEVEL_SIZE, "a top-level object")
                raise self._error(f"BLF object at byte {offset} of the file {problem}")
            body = self.file.read(size - _BASE_SIZE)
            self.file.read(size % 4)  # padding
            if obj_type == LOG_CONTAINER:
                data = self._inflate(body, offset)
                if data is not None:
                    yield data

    def _inflate(self, body: bytes, offset: int) -> bytes | None:
        """A container's objects, inflated to no more than it declares; None to skip it."""
        method, declared = LOG_CONTAINER_STRUCT.unpack_from(body)  # short: struct.error, as python-can
        data = body[LOG_CONTAINER_STRUCT.size :]
        if method == NO_COMPRESSION:
            return data
        if method != ZLIB_DEFLATE:
            LOG.warning("Unknown compression method (%d)", method)  # python-can skips it too
            return None
        where = f"BLF container at byte {offset} of the file"
        if declared > MAX_CONTAINER_SIZE:
            raise self._error(
                f"{where} declares {declared} uncompressed bytes, more than the {MAX_CONTAINER_SIZE} a container may hold"
            )
        limit = declared or MAX_CONTAINER_SIZE
        inflater = zlib.decompressobj()
        inflated = inflater.decompress(data, limit)
        if inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
            bound = f"the {declared} bytes it declares" if declared else f"the {limit} bytes a container may hold"
            raise self._error(f"{where} inflates to more than {bound}")
        return inflated

    def _parse_container(self, data: bytes) -> Iterator[can.Message]:
        # python-can parses its left-over tail and this container's data as one.
        joined = self._tail + data if self._tail else data
        bad = first_object_not_passed(joined)
        if bad is not None:
            self._tail = b""
            data = joined[: bad[0]]
        for message in super()._parse_container(data):
            self.frames += 1
            yield message
        if bad is not None:
            offset, size = bad
            problem = _size_problem(size, MAX_OBJECT_SIZE, "a BLF object")
            raise self._error(f"BLF object at byte {self._stream_offset + offset} of the object stream {problem}")
        self._stream_offset += len(joined) - len(self._tail)


# One classic CAN message object as python-can reads it (CAN_MESSAGE or CAN_MESSAGE2 of 48 bytes,
# object header version 1): base header, v1 header, CAN_MSG_STRUCT.
CAN_RECORD = np.dtype(
    [
        ("signature", "S4"),
        ("header_size", "<u2"),
        ("header_version", "<u2"),
        ("size", "<u4"),
        ("type", "<u4"),
        ("time_flags", "<u4"),
        ("client", "<u2"),
        ("object_version", "<u2"),
        ("ticks", "<u8"),
        ("channel", "<u2"),
        ("flags", "u1"),
        ("dlc", "u1"),
        ("can_id", "<u4"),
        ("data", "u1", (8,)),
    ]
)
assert CAN_RECORD.itemsize == CAN_RECORD_SIZE
_EXACT_TICKS = 1 << 53  # ticks up to here convert to float exactly, so numpy rounds as python-can's Decimal
MIN_RUN = 16  # classic frames in a row worth reading as records rather than through python-can


def _plain_classic(records: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """The records that are classic CAN data frames python-can reads exactly as numpy does."""
    plain: npt.NDArray[np.bool_] = (
        (records["header_version"] == 1)
        & (records["size"] == CAN_RECORD.itemsize)
        & ((records["type"] == CAN_MESSAGE) | (records["type"] == CAN_MESSAGE2))
        & ((records["flags"] & REMOTE_FLAG) == 0)
        & (records["ticks"] < _EXACT_TICKS)
    )
    return plain


@dataclass(frozen=True, slots=True)
class CANRun:
    """Consecutive classic CAN data frames of a BLF, as columns (what python-can would yield for them)."""

    stamps: npt.NDArray[np.float64]
    ids: npt.NDArray[np.uint32]
    extended: npt.NDArray[np.bool_]
    channels: npt.NDArray[np.int32]  # python-can's channel number (the object's channel - 1)
    payload: npt.NDArray[np.uint8]  # (n, 8)
    lengths: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.stamps)


def run_frames(run: CANRun) -> Iterator[Frame]:
    """The frames of ``run``, as python-can's messages for them are converted."""
    data = run.payload.tobytes()
    names = {channel: channel_name(channel) for channel in np.unique(run.channels).tolist()}
    channels = run.channels.tolist()
    start = 0
    for stamp, can_id, extended, channel, length in zip(
        run.stamps.tolist(), run.ids.tolist(), run.extended.tolist(), channels, run.lengths.tolist(), strict=True
    ):
        yield Frame(stamp, can_id, extended, data[start : start + length], names[channel])
        start += 8


class ColumnarBLFReader(GuardedBLFReader):
    """A :class:`GuardedBLFReader` that yields runs of classic CAN data frames as columns.

    :meth:`items` yields, in file order, :class:`CANRun` batches for back-to-back classic CAN
    message objects (the bulk of a CAN log) and python-can's ``Message`` for everything else.
    Exactly python-can's frames: a container's objects are read as numpy records from its start
    while they are plain classic data frames, and the rest of the container (from the first other
    object on) goes to python-can as it is, so anything unusual is read by python-can itself.
    """

    def items(self) -> Iterator[can.Message | CANRun]:
        for data in self._containers():
            yield from self._container_items(data)
        self.stop()

    def _container_items(self, data: bytes) -> Iterator[can.Message | CANRun]:
        joined = self._tail + data if self._tail else data
        self._tail = b""
        pos = 0
        end = len(joined)
        while True:
            found = joined.find(_SIGNATURE, pos, pos + 8)
            if found < 0 or found + CAN_RECORD.itemsize > end:
                break
            run = self._run(joined, found)
            if run is None:
                break
            self.frames += len(run)
            yield run
            pos = found + CAN_RECORD.itemsize * len(run)
        # python-can reads the rest, from an object boundary of its own walk: what it yields and
        # raises, and the tail it keeps, are what it would have from the whole container.
        self._stream_offset += pos
        yield from self._parse_container(joined[pos:])

    def _run(self, data: bytes, start: int) -> CANRun | None:
        length = _run_length(data, start, CAN_RECORD, _plain_classic)
        # A short run is not worth its numpy calls: python-can reads the rest of the container
        # (else objects that only now and then come two in a row cost a numpy call each).
        if length == 0 or (
            length < MIN_RUN and start + length * CAN_RECORD.itemsize + CAN_RECORD.itemsize <= len(data)
        ):
            return None
        records = np.frombuffer(data, dtype=CAN_RECORD, count=length, offset=start)
        ticks = records["ticks"].astype(np.float64)
        # python-can: float(Decimal(ticks) * factor) + start; dividing exact floats by 1e5 or
        # 1e9 rounds the same quotient once, as float(Decimal) does.
        seconds = np.where(records["time_flags"] == 1, ticks / 1e5, ticks / 1e9) + self.start_timestamp
        can_id = records["can_id"]
        return CANRun(
            stamps=seconds,
            ids=can_id & np.uint32(CAN_EFF_MASK),
            extended=(can_id & CAN_MSG_EXT) != 0,
            channels=records["channel"].astype(np.int32) - 1,  # python-can's numbering: channel 0 is "can-1"
            payload=records["data"],
            lengths=np.minimum(records["dlc"], 8),
        )
