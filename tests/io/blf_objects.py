"""BLF files built object by object from python-can's structs, for tests of hostile and odd files."""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path
from typing import cast

import can
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

from safety.errors import LogFormatError
from safety.io.frame import Frame
from safety.io.pythoncan import python_can_items


def can_object(
    can_id: int,
    data: bytes,
    *,
    ticks: int,
    size: int | None = None,
    version: int = 1,
    obj_type: int = CAN_MESSAGE,
    time_flags: int = 1,
    channel: int = 1,
    flags: int = 0,
    dlc: int | None = None,
) -> bytes:
    """One BLF CAN message object (header v1; ticks of 10 us with ``time_flags`` 1, else of 1 ns);
    ``size`` and ``dlc`` override the declared size and DLC."""
    body = OBJ_HEADER_V1_STRUCT.pack(time_flags, 0, 0, ticks) + CAN_MSG_STRUCT.pack(
        channel, flags, len(data) if dlc is None else dlc, can_id, data.ljust(8, b"\0")
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


def container(stream: bytes, *, declared: int | None = None, method: int = 2) -> bytes:
    """One top-level log container of ``stream`` (zlib or stored), padded as BLF files are."""
    body = zlib.compress(stream) if method == 2 else stream
    data = LOG_CONTAINER_STRUCT.pack(method, len(stream) if declared is None else declared) + body
    top = OBJ_HEADER_BASE_STRUCT.pack(b"LOBJ", 16, 1, 16 + len(data), LOG_CONTAINER) + data
    return top + b"\0" * (len(top) % 4)


def blf_file(*tops: bytes) -> bytes:
    """A BLF file of the given top-level objects (containers, as :func:`container` makes them)."""
    body = b"".join(tops)
    header = FILE_HEADER_STRUCT.pack(
        b"LOGG", FILE_HEADER_SIZE, 5, 0, 0, 0, 2, 6, 8, 1, FILE_HEADER_SIZE + len(body), 0, 0, 0, *([0] * 16)
    )
    return header.ljust(FILE_HEADER_SIZE, b"\0") + body


def containers(stream: bytes, cuts: list[int], *, method: int = 2) -> list[bytes]:
    """``stream`` in containers cut at ``cuts`` (offsets into it), objects spanning their borders."""
    points = [0, *sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]
    return [container(stream[a:b], method=method) for a, b in itertools.pairwise(points) if b > a]


def write_messages(path: Path, messages: list[can.Message], *, level: int, container_size: int) -> None:
    """``messages`` written by python-can's BLFWriter, in containers of ``container_size`` bytes."""
    writer = can.BLFWriter(path, compression_level=level)
    writer.max_container_size = container_size  # small containers: objects span container borders
    for message in messages:
        writer.on_message_received(message)
    writer.stop()


def damaged(raw: bytes, junk: list[tuple[int, bytes]], sizes: list[tuple[int, int]]) -> bytes:
    """``raw`` with bytes overwritten (``(offset, bytes)``, offsets wrapped) and some objects'
    declared sizes rewritten (``(which object, size)``): sizes are where a reader is most easily
    sent astray (with compression level 0 the objects inside containers are in the file as they are)."""
    out = bytearray(raw)
    for at, data in junk:
        at %= len(out)
        out[at : at + len(data)] = data
    headers = [i for i in range(len(out) - 16) if out[i : i + 4] == b"LOBJ"]
    for which, size in sizes:
        if headers:
            at = headers[which % len(headers)] + 8
            out[at : at + 4] = size.to_bytes(4, "little")
    return bytes(out)


def python_can_alone(path: Path) -> tuple[list[Frame], list[LogFormatError]]:
    """The frames and errors of a BLF read by python-can's reader alone (guarded against
    hostile sizes, no numpy runs): what ``read_log`` and ``read_columns`` are held to."""
    errors: list[LogFormatError] = []
    items = list(python_can_items(path, False, str(path), "blf", errors.append))
    assert all(isinstance(item, Frame) for item in items)
    return cast(list[Frame], items), errors
