"""BLF (Vector binary logging format): python-can's reader, guarded against objects that do not move.

python-can 4.6.1's ``BLFReader`` walks the objects of each container by their declared size.
An object that declares a size of 0 leaves it at the same place for ever: a CAN message of
size 0 is yielded again and again, an object of another type or header version loops without
yielding.  A file of a few hundred bytes would hang a replay.  :class:`GuardedBLFReader` walks
each container's objects the way python-can will (the same search for ``LOBJ``, the same sizes,
the data left over from the container before included) and hands python-can only the data up
to such an object; the frames before it stay, and the object is reported with its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import can
from can.io.blf import OBJ_HEADER_BASE_STRUCT

from safety.errors import Location, LogFormatError

_SIGNATURE = b"LOBJ"
_BASE_SIZE = OBJ_HEADER_BASE_STRUCT.size  # 16: signature, header size, version, object size, type
_SIZE_AT = 8  # byte offset of the object size (uint32, little-endian) in the base header


def first_object_that_does_not_move(data: bytes) -> int | None:
    """The offset in ``data`` of the first object python-can would parse for ever, or None.

    Follows python-can's walk: the next object's signature is searched in the 8 bytes from where
    the previous object ends; the walk stops (and python-can carries the rest to the next
    container, or raises) where no signature is found or an object runs past the data.
    """
    end = len(data)
    pos = 0
    while True:
        found = data.find(_SIGNATURE, pos, pos + 8)
        if found < 0 or found + _BASE_SIZE > end:
            return None
        size = int.from_bytes(data[found + _SIZE_AT : found + _SIZE_AT + 4], "little")
        if size == 0:
            return found
        if found + size > end:
            return None
        pos = found + size


class GuardedBLFReader(can.BLFReader):
    """python-can's ``BLFReader`` that stops with a :class:`LogFormatError` at an object of size 0.

    The error names the object's byte offset in the file's object stream (the uncompressed
    content of its containers, one after another) and the number of frames read before it.
    """

    def __init__(self, file: BinaryIO, name: str) -> None:
        super().__init__(file)
        self._name = name  # for errors
        self._stream_offset = 0  # where the data python-can parses next starts in the object stream
        self.frames = 0  # messages yielded so far

    def _parse_container(self, data: bytes) -> Iterator[can.Message]:
        # python-can parses its left-over tail and this container's data as one.
        joined = self._tail + data if self._tail else data
        stuck = first_object_that_does_not_move(joined)
        if stuck is not None:
            self._tail = b""
            data = joined[:stuck]
        for message in super()._parse_container(data):
            self.frames += 1
            yield message
        if stuck is not None:
            raise LogFormatError(
                f"BLF object at byte {self._stream_offset + stuck} of the object stream declares a size of 0 "
                f"bytes, expected at least {_BASE_SIZE}; frames after frame {self.frames} are lost",
                Location(file=self._name, line=0),
            )
        self._stream_offset += len(joined) - len(self._tail)
