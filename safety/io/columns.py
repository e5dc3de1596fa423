"""CAN logs read as columns: numpy arrays of times, ids and flags, the payload bytes alongside.

The columnar replay (:mod:`safety.replay.columnar`) looks at every frame of a log in a few
array operations and hands only the frames that can change a decision to the engine, so it
reads logs as :class:`FrameColumns` batches rather than one :class:`~safety.io.frame.Frame` at a
time.  A batch holds exactly the frames :func:`~safety.io.logs.read_log` yields for the same
part of the log, in the same order, and the same errors go to ``on_error``: candump blocks of the
common shape are parsed here with numpy, every other block line by line by the candump parser,
and the other formats through their frame readers.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from safety.io.blf import CANRun
from safety.io.candump import _candump_lines, _stamp_template, block_lines, candump_blocks
from safety.io.files import check_file
from safety.io.frame import CAN_EFF_MASK, CAN_SFF_MASK, ErrorHandler, Frame, channel_name, reporter
from safety.io.logs import format_from_suffix, read_log
from safety.io.pythoncan import python_can_items

# Frames per batch: large enough that numpy's per-call cost vanishes, small enough that a
# batch's arrays stay a few MB whatever the log's length (memory stays flat).
BATCH_FRAMES = 1 << 16
# candump text parsed by numpy at a time: numpy's cost per call (~40 calls a block) vanishes
# next to ~25,000 lines; the arrays of one block stay a few MB.
JOIN_CHARS = 1 << 20

F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]
BOOL = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FrameColumns:
    """A batch of frames as columns.  ``frame(i)`` is the i-th frame exactly as ``read_log`` gives it."""

    stamps: F64
    ids: U32
    extended: BOOL
    special: BOOL  # an error, remote or CAN FD frame: ``frame(i)`` has the details
    channels: I32  # index into ``channel_names``
    channel_names: tuple[str | None, ...]
    _frames: tuple[Frame, ...] | None = None  # a batch read frame by frame keeps its frames
    _payload: npt.NDArray[np.uint8] | None = None  # (n, 8) data bytes of a candump batch
    _lengths: npt.NDArray[np.uint8] | None = None
    # Where each frame is in its log (``read_columns`` sets it): the index of its line in a
    # candump log (0 for the first line), its index among the log's frames in other formats.
    positions: I64 | None = None

    def __len__(self) -> int:
        return len(self.stamps)

    def frame(self, i: int) -> Frame:
        return next(self.frames((i,)))

    def rows(self, start: int, stop: int) -> FrameColumns:
        """The frames ``start:stop`` as a batch of their own."""
        cut = slice(start, stop)
        return FrameColumns(
            self.stamps[cut],
            self.ids[cut],
            self.extended[cut],
            self.special[cut],
            self.channels[cut],
            self.channel_names,
            None if self._frames is None else self._frames[cut],
            None if self._payload is None else self._payload[cut],
            None if self._lengths is None else self._lengths[cut],
            None if self.positions is None else self.positions[cut],
        )

    def frames(self, rows: Iterable[int]) -> Iterator[Frame]:
        """The frames of ``rows`` (indices into the batch, ascending)."""
        if self._frames is not None:
            frames = self._frames
            for i in rows:
                yield frames[i]
            return
        assert self._payload is not None and self._lengths is not None
        # The rows' fields converted by numpy at once (one Python object per value is made
        # either way; converting them one by one costs several times as much).
        picked = np.fromiter(rows, dtype=np.intp)
        names = self.channel_names
        data = self._payload[picked].tobytes()
        stamps = self.stamps[picked].tolist()
        ids = self.ids[picked].tolist()
        extended = self.extended[picked].tolist()
        channels = self.channels[picked].tolist()
        lengths = self._lengths[picked].tolist()
        width = self._payload.shape[1]
        for k in range(len(picked)):
            start = width * k
            yield Frame(stamps[k], ids[k], extended[k], data[start : start + lengths[k]], names[channels[k]])


def columns_of_frames(frames: list[Frame], positions: I64 | None = None) -> FrameColumns:
    """A batch holding ``frames`` (any format's reader), at ``positions`` in their log."""
    # A column at a time through C-level iteration (``map`` and ``np.fromiter``): transposing
    # the frames with ``zip(*frames)`` cost about twice as much (BLF replay, #12).
    n = len(frames)

    def column(field: int, dtype: type[np.generic]) -> Any:
        return np.fromiter(map(_FIELDS[field], frames), dtype=dtype, count=n)

    channel = list(map(_FIELDS[4], frames))
    names = dict.fromkeys(channel)  # in the order they first appear
    if len(names) == 1:
        codes = np.zeros(n, dtype=np.int32)
    else:
        index = {name: i for i, name in enumerate(names)}
        codes = np.fromiter(map(index.__getitem__, channel), dtype=np.int32, count=n)
    return FrameColumns(
        stamps=column(0, np.float64),
        ids=column(1, np.uint32),
        extended=column(2, np.bool_),
        special=column(5, np.bool_) | column(6, np.bool_) | column(7, np.bool_),  # error, remote, FD
        channels=codes,
        channel_names=tuple(names),
        _frames=tuple(frames),
        positions=positions,
    )


_FIELDS = tuple(operator.itemgetter(i) for i in range(10))


def read_columns(
    path: str | Path, *, on_error: ErrorHandler | None = None, batch_frames: int = BATCH_FRAMES, start: int = 0
) -> Iterator[FrameColumns]:
    """The frames of a log (any format ``read_log`` reads) as batches of ``batch_frames`` frames
    (the last one shorter), in log order, each with its frames' ``positions``.

    Problems with the file as a whole raise here, as ``read_log``'s do; bad lines and frames go
    to ``on_error`` as they do there.  ``start``: the position of the first frame wanted.  The
    lines of a candump log before it are read and checked but not parsed (and their bad lines
    not reported); the frames of other formats before it are read and left out.
    """
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be at least 1, not {batch_frames}")
    if start < 0:
        raise ValueError(f"start must be at least 0, not {start}")
    report = reporter(on_error)
    fmt = format_from_suffix(path)
    if fmt == "candump":
        parts = _candump_columns(path, check_file(path), str(path), report, start)
    elif fmt == "blf":
        parts = _blf_columns(path, check_file(path), str(path), report, start)
    else:
        parts = _framed(read_log(path, on_error=report), start)
    return _rebatch(parts, batch_frames)


def _framed(frames: Iterator[Frame], start: int) -> Iterator[FrameColumns]:
    wanted = itertools.islice(frames, start, None)
    position = start
    while batch := list(itertools.islice(wanted, BATCH_FRAMES)):
        yield columns_of_frames(batch, np.arange(position, position + len(batch), dtype=np.int64))
        position += len(batch)


def _blf_columns(path: str | Path, gz: bool, file: str, report: ErrorHandler, start: int) -> Iterator[FrameColumns]:
    # Runs of classic data frames come as columns; python-can's frames between them are batched.
    position = 0  # of the next frame among the log's frames
    pending: list[Frame] = []

    def framed() -> FrameColumns:
        batch = columns_of_frames(pending, np.arange(position - len(pending), position, dtype=np.int64))
        pending.clear()
        return batch

    for item in python_can_items(path, gz, file, "blf", report, runs=True):
        if isinstance(item, Frame):
            position += 1
            if position > start:
                pending.append(item)
                if len(pending) == BATCH_FRAMES:
                    yield framed()
            continue
        if pending:
            yield framed()
        first = position
        position += len(item)
        if position > start:
            skip = max(start - first, 0)
            yield _run_columns(item, skip, np.arange(first + skip, position, dtype=np.int64))
    if pending:
        yield framed()


def _run_columns(run: CANRun, skip: int, positions: I64) -> FrameColumns:
    names, codes = np.unique(run.channels[skip:], return_inverse=True)
    return FrameColumns(
        stamps=run.stamps[skip:],
        ids=run.ids[skip:],
        extended=run.extended[skip:],
        special=np.zeros(len(positions), dtype=np.bool_),
        channels=codes.astype(np.int32),
        channel_names=tuple(map(channel_name, names.tolist())),
        _payload=run.payload[skip:],
        _lengths=run.lengths[skip:],
        positions=positions,
    )


def _candump_columns(path: str | Path, gz: bool, file: str, report: ErrorHandler, start: int) -> Iterator[FrameColumns]:
    for block, lineno in candump_blocks(path, gz, file, report, join_chars=JOIN_CHARS, skip_lines=start):
        columns = candump_block_columns(block)
        if columns is None:
            numbers: list[int] = []
            frames = list(_candump_lines(block_lines(block), lineno, file, report, numbers))
            if not frames:
                continue
            columns = columns_of_frames(frames, np.array(numbers, dtype=np.int64) - 1)
        else:
            # Every line of a block parsed as columns is a frame.
            columns = dataclasses.replace(columns, positions=np.arange(lineno, lineno + len(columns), dtype=np.int64))
        yield columns


def _rebatch(parts: Iterator[FrameColumns], size: int) -> Iterator[FrameColumns]:
    """``parts`` joined and cut into batches of ``size`` frames."""
    pending: list[FrameColumns] = []
    count = 0
    for part in parts:
        pending.append(part)
        count += len(part)
        if count < size:
            continue
        whole = concat(pending)
        start = 0
        while count - start >= size:
            yield whole.rows(start, start + size)
            start += size
        pending = [whole.rows(start, count)] if start < count else []
        count -= start
    if count:
        yield concat(pending)


def concat(parts: list[FrameColumns]) -> FrameColumns:
    """One batch of several, in order."""
    if len(parts) == 1:
        return parts[0]
    names: dict[str | None, int] = {}
    channels = []
    for part in parts:
        remap = np.array([names.setdefault(name, len(names)) for name in part.channel_names], dtype=np.int32)
        channels.append(remap[part.channels])
    framed = [p._frames is not None for p in parts]
    stamps = np.concatenate([p.stamps for p in parts])
    ids = np.concatenate([p.ids for p in parts])
    extended = np.concatenate([p.extended for p in parts])
    special = np.concatenate([p.special for p in parts])
    positions = None if any(p.positions is None for p in parts) else np.concatenate([p.positions for p in parts])
    if any(framed):
        frames: list[Frame] = []
        for part in parts:
            frames.extend(part._frames if part._frames is not None else part.frames(range(len(part))))
        return FrameColumns(
            stamps, ids, extended, special, np.concatenate(channels), tuple(names), _frames=tuple(frames), positions=positions
        )
    payload = np.concatenate([p._payload for p in parts if p._payload is not None])
    lengths = np.concatenate([p._lengths for p in parts if p._lengths is not None])
    return FrameColumns(
        stamps,
        ids,
        extended,
        special,
        np.concatenate(channels),
        tuple(names),
        _payload=payload,
        _lengths=lengths,
        positions=positions,
    )


@functools.cache
def _hex_table() -> npt.NDArray[np.uint8]:
    """Byte -> its hex digit value, 255 for a byte that is not a hex digit."""
    table = np.full(256, 255, dtype=np.uint8)
    for i, char in enumerate("0123456789"):
        table[ord(char)] = i
    for i, char in enumerate("abcdef"):
        table[ord(char)] = table[ord(char.upper())] = 10 + i
    return table


_SPACE, _HASH, _OPEN, _NEWLINE = 32, 35, 40, 10
_DIRECTION_BYTES = np.frombuffer(b"RTrt", dtype=np.uint8)


def candump_block_columns(block: str) -> FrameColumns | None:
    """A block of whole candump lines as columns, or None when it is not of the common shape.

    The common shape is what candump writes: ``(ssssssssss.uuuuuu) can0 123#0011223344556677``
    with an optional `` R``/`` T``, single spaces, a data frame of at most 8 bytes, the same
    timestamp width and channel name length on every line.  It accepts a subset of what
    the candump parser accepts and gives the same frames (a property test holds it to that);
    anything else returns None and the block is parsed line by line.
    """
    if not block.isascii():  # a stray byte (read as U+FFFD): the line parser reports its line
        return None
    raw = np.frombuffer(block.encode("ascii"), dtype=np.uint8)
    ends = np.flatnonzero(raw == _NEWLINE)
    n = len(ends)
    if n == 0 or ends[-1] != len(raw) - 1:
        return None
    # Lines of one length are usually laid out alike (one DLC, one id width: a bus has a few
    # of each): each length's lines read as a character matrix, a field per column range.
    # Lines of one length but not one layout, or too many lengths, go the general way.
    lengths = np.diff(ends, prepend=-1)
    if int(lengths.max()) > _MAX_MATRIX_LINE:  # not of the common shape, and a matrix would be n x longest
        return None
    distinct = np.unique(lengths)
    if len(distinct) <= _MAX_LAYOUTS:
        longest = int(distinct[-1])
        whole = raw.reshape(n, longest) if len(distinct) == 1 else _line_matrix(raw, ends - lengths + 1, longest)
        parts = []
        for length in distinct.tolist():
            rows = np.flatnonzero(lengths == length)
            part = uniform_block_columns(whole if len(rows) == n else whole[rows, :length])
            if part is None:
                break
            parts.append((rows, part))
        else:
            return parts[0][1] if len(parts) == 1 else _interleaved(parts, n)
    return _general_block_columns(raw, ends)


_MAX_LAYOUTS = 8  # line lengths in a block read as matrices, at most
# The longest line of the common shape (a 19-character stamp, a long channel name, a 29-bit id,
# 8 data bytes, a direction) is under 80 characters; a block with a longer one is parsed line by
# line (one line of 200,000 characters made the matrix of a block gigabytes: found by review).
_MAX_MATRIX_LINE = 128


def _line_matrix(raw: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], width: int) -> npt.NDArray[np.uint8]:
    """The first ``width`` bytes from each of ``starts`` (past the end: zeros), a row each.

    Gathered as 8-byte words from an unaligned view (one index per word, not per byte: about
    half the cost of gathering bytes).
    """
    words = (width + 7) // 8
    padded = np.concatenate((raw, np.zeros(8 * words, dtype=np.uint8)))
    view = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    matrix: npt.NDArray[np.uint8] = view[starts[:, None] + 8 * np.arange(words)].view(np.uint8)
    return matrix[:, :width]


def _interleaved(parts: list[tuple[npt.NDArray[np.intp], FrameColumns]], n: int) -> FrameColumns:
    """One batch of ``n`` frames from parts that each hold the frames at their rows."""
    stamps = np.empty(n, dtype=np.float64)
    ids = np.empty(n, dtype=np.uint32)
    extended = np.empty(n, dtype=np.bool_)
    channels = np.empty(n, dtype=np.int32)
    payload = np.empty((n, 8), dtype=np.uint8)
    lengths = np.empty(n, dtype=np.uint8)
    names: dict[str | None, int] = {}
    for rows, part in parts:
        assert part._payload is not None and part._lengths is not None
        remap = np.array([names.setdefault(name, len(names)) for name in part.channel_names], dtype=np.int32)
        stamps[rows], ids[rows], extended[rows] = part.stamps, part.ids, part.extended
        channels[rows], payload[rows], lengths[rows] = remap[part.channels], part._payload, part._lengths
    return FrameColumns(
        stamps, ids, extended, np.zeros(n, dtype=np.bool_), channels, tuple(names), _payload=payload, _lengths=lengths
    )


def _general_block_columns(raw: npt.NDArray[np.uint8], ends: npt.NDArray[np.intp]) -> FrameColumns | None:
    """:func:`candump_block_columns` for lines of any lengths."""
    n = len(ends)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    # Below the space only the line ends: no tab, CR or other byte str.split() would split at.
    if (raw[starts] != _OPEN).any() or np.count_nonzero(raw < _SPACE) != n:
        return None
    spaces = np.flatnonzero(raw == _SPACE)
    # The first space of each line ends the timestamp: every line's must be at the same width.
    first = np.searchsorted(spaces, starts)
    if first[-1] >= len(spaces):
        return None
    stamp_end = spaces[first]
    width = int(stamp_end[0] - starts[0])
    if not 10 <= width <= 19 or (stamp_end - starts != width).any():
        return None
    low, span, weights = _stamp_template(width)
    grid = raw[starts[:, None] + np.arange(width)] - low
    if (grid > span).any():
        return None
    stamps = (grid @ weights) / 1e6
    # Two spaces (three tokens) or three (a direction flag last) on every line.
    count = np.searchsorted(spaces, ends) - first
    has_direction = count == 3
    if not ((count == 2) | has_direction).all():
        return None
    channel_end = spaces[first + 1]
    channel_width = int(channel_end[0] - stamp_end[0] - 1)
    if not 1 <= channel_width <= 8 or (channel_end - stamp_end - 1 != channel_width).any():
        return None
    data_end = np.where(has_direction, ends - 2, ends)
    if has_direction.any():
        if (spaces[np.minimum(first + 2, len(spaces) - 1)][has_direction] != data_end[has_direction]).any():
            return None
        if not np.isin(raw[ends[has_direction] - 1], _DIRECTION_BYTES).all():
            return None
    id_start = channel_end + 1
    hexval = _hex_table()
    short = raw[np.minimum(id_start + 3, len(raw) - 1)] == _HASH
    long = ~short & (raw[np.minimum(id_start + 8, len(raw) - 1)] == _HASH)
    if not (short | long).all():
        return None
    id_width = np.where(short, 3, 8)
    id_digits = hexval[raw[np.minimum(id_start[:, None] + np.arange(8), len(raw) - 1)]].astype(np.uint32)
    id_mask = np.arange(8) < id_width[:, None]
    if (id_digits[id_mask] > 15).any():
        return None
    shifts = (id_width[:, None] - 1 - np.arange(8)) * 4
    ids = np.where(id_mask, id_digits << np.maximum(shifts, 0).astype(np.uint32), 0).sum(axis=1, dtype=np.uint32)
    if (ids[short] > CAN_SFF_MASK).any() or (ids[long] > CAN_EFF_MASK).any():
        return None
    data_start = id_start + id_width + 1
    digits = data_end - data_start
    if (digits < 0).any() or (digits > 16).any() or (digits % 2).any():
        return None
    columns = np.arange(16)
    data_mask = columns < digits[:, None]
    nibbles = hexval[raw[np.minimum(data_start[:, None] + columns, len(raw) - 1)]]
    if (nibbles[data_mask] > 15).any():
        return None
    nibbles = np.where(data_mask, nibbles, 0)
    payload = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)
    # Each line's channel name (at most 8 bytes).
    name_bytes = raw[(stamp_end + 1)[:, None] + np.arange(channel_width)]
    channels, channel_names = _channel_columns(name_bytes)
    return FrameColumns(
        stamps=stamps,
        ids=ids,
        extended=long,
        special=np.zeros(n, dtype=np.bool_),
        channels=channels,
        channel_names=channel_names,
        _payload=payload,
        _lengths=(digits // 2).astype(np.uint8),
    )


def uniform_block_columns(lines: npt.NDArray[np.uint8]) -> FrameColumns | None:
    """Candump lines of one layout (a character matrix, a line per row, each ending in its
    newline) as columns, or None when they are not all laid out as the first one.

    Accepts exactly what :func:`candump_block_columns` accepts of such lines and gives the
    same columns (a property test holds it to that): the first line fixes where each field
    is, every line is checked to have the same characters of the same kinds there.
    """
    n, length = lines.shape
    first = lines[0].tobytes()
    width = first.find(b" ")
    if not 10 <= width <= 19:
        return None
    channel_end = first.find(b" ", width + 1)
    channel_width = channel_end - width - 1
    if not 1 <= channel_width <= 8:
        return None
    id_start = channel_end + 1
    if first[id_start + 3 : id_start + 4] == b"#":
        id_width = 3
    elif first[id_start + 8 : id_start + 9] == b"#":
        id_width = 8
    else:
        return None
    direction = first[length - 3 : length - 2] == b" "
    data_start = id_start + id_width + 1
    data_end = length - 3 if direction else length - 1
    digits = data_end - data_start
    if digits < 0 or digits > 16 or digits % 2:
        return None
    body = lines[:, : length - 1]
    # Every line: no byte below the space, spaces exactly where the first line has them.
    spaces = [width, channel_end] + ([length - 3] if direction else [])
    if (body < _SPACE).any() or np.count_nonzero(body == _SPACE) != n * len(spaces):
        return None
    if not (lines[:, spaces] == _SPACE).all():
        return None
    # A short id is one whose '#' comes after 3 digits, on any line.
    if not (lines[:, id_start + id_width] == _HASH).all():
        return None
    if id_width == 8 and (lines[:, id_start + 3] == _HASH).any():
        return None
    if direction and not np.isin(lines[:, length - 2], _DIRECTION_BYTES).all():
        return None
    low, span, weights = _stamp_template(width)
    grid = lines[:, :width] - low
    if (grid > span).any():
        return None
    hexval = _hex_table()
    id_digits = hexval[lines[:, id_start : id_start + id_width]].astype(np.uint32)
    nibbles = hexval[lines[:, data_start:data_end]]
    if (id_digits > 15).any() or (nibbles > 15).any():
        return None
    shifts = (4 * np.arange(id_width - 1, -1, -1)).astype(np.uint32)
    ids = (id_digits << shifts).sum(axis=1, dtype=np.uint32)
    extended = np.full(n, id_width == 8, dtype=np.bool_)
    if (ids > (CAN_EFF_MASK if id_width == 8 else CAN_SFF_MASK)).any():
        return None
    payload = np.zeros((n, 8), dtype=np.uint8)
    payload[:, : digits // 2] = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    channels, channel_names = _channel_columns(lines[:, width + 1 : channel_end])
    return FrameColumns(
        stamps=(grid @ weights) / 1e6,
        ids=ids,
        extended=extended,
        special=np.zeros(n, dtype=np.bool_),
        channels=channels,
        channel_names=channel_names,
        _payload=payload,
        _lengths=np.full(n, digits // 2, dtype=np.uint8),
    )


def _channel_columns(name_bytes: npt.NDArray[np.uint8]) -> tuple[I32, tuple[str | None, ...]]:
    """Each line's channel (the bytes of its name, a row each, at most 8) as an index into the
    names: a log usually has one or two, so the name is one number while they are told apart."""
    n, width = name_bytes.shape
    if (name_bytes == name_bytes[0]).all():
        return np.zeros(n, dtype=np.int32), (bytes(name_bytes[0]).decode("ascii"),)
    codes = name_bytes.astype(np.uint64) @ (np.uint64(256) ** np.arange(width, dtype=np.uint64))
    unique, inverse = np.unique(codes, return_inverse=True)
    names = tuple(bytes(name_bytes[np.argmax(codes == code)]).decode("ascii") for code in unique)
    return inverse.reshape(-1).astype(np.int32), names
