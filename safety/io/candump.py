"""candump -L logs (``.log``): our own parser, the replay hot path.

Blocks of whole lines are parsed column-wise when every line has the common shape, and line by
line (reporting each bad line at its ``file:line``) when not.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import math
import operator
from collections.abc import Iterable, Iterator
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import numpy as np

from safety.errors import Location, LogFormatError
from safety.io.files import MAX_LINE_CHARS, READ_ERRORS, open_text
from safety.io.frame import (
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_SFF_MASK,
    FD_LENGTHS,
    MAX_BLANK_LINES,
    ErrorHandler,
    Frame,
    blank_run_error,
    is_hex,
    reporter,
    show,
)

_DIRECTIONS = frozenset(("R", "T", "r", "t"))  # candump writes R/T; python-can also accepts lowercase
# candump reading works on blocks of whole lines.  16 KiB (~400 lines) measured fastest here:
# a block's objects stay in cache.  It also bounds what a truncated .gz loses where it breaks.
_BLOCK_CHARS = 1 << 14
_CHUNK_LINES = 512


def iter_candump(lines: Iterable[str], *, filename: str = "", on_error: ErrorHandler | None = None) -> Iterator[Frame]:
    """Parse ``candump -L`` lines (with or without their line ends) into frames.

    Accepts ``(1234.567890) can0 0B4#0102030405060708 R``: the trailing R/T is optional,
    8-digit ids are 29-bit, ``123#R`` is a remote frame, ``123##<flags><data>`` is CAN FD, and an
    id carrying 0x20000000 (CAN_ERR_FLAG) is an error frame whose id is the error class.  Blank
    lines are skipped.  A bad line goes to ``on_error`` as a :class:`LogFormatError` at
    ``filename:line`` and is skipped; with ``on_error=None`` it is raised.
    """
    report = reporter(on_error)
    it = iter(lines)
    lineno = 0
    while chunk := list(islice(it, _CHUNK_LINES)):
        # Lines from a file end in "\n"; lines from str.splitlines() do not.  Either way the
        # block must have exactly one "\n" per line, or the lines go one by one.
        text = "".join(chunk) if chunk[0].endswith("\n") else "\n".join(chunk) + "\n"
        frames = _candump_block_fast(text)
        if frames is not None and len(frames) == len(chunk):
            yield from frames
        else:
            yield from _candump_lines(chunk, lineno, filename, report)
        lineno += len(chunk)


def candump_file(path: str | Path, gz: bool, file: str, report: ErrorHandler) -> Iterator[Frame]:
    for block, lineno in candump_blocks(path, gz, file, report):
        frames = _candump_block_fast(block)
        if frames is not None:
            yield from frames
        else:
            yield from _candump_lines(block_lines(block), lineno, file, report)


def candump_blocks(
    path: str | Path, gz: bool, file: str, report: ErrorHandler, *, join_chars: int = 0, skip_lines: int = 0
) -> Iterator[tuple[str, int]]:
    """Blocks of whole lines of a candump file, each with the number of lines before it.

    Every reading problem (a truncated or corrupt .gz, a line too long, a run of blank lines)
    is reported here, at its line, so every reader of blocks (the frame reader, the columnar
    one) stops at the same place with the same errors.  Blank blocks are not yielded.  With
    ``join_chars``, consecutive blocks are joined up to about that size (the file is still
    read, and checked, in the same steps; an error may then be reported before the frames of
    the blocks read just before it are yielded, which loses none of them unless ``report``
    raises).  The first ``skip_lines`` lines are read and checked the same way but not yielded
    (a chunk of a long log starts there: reading text costs a fraction of parsing it).
    """
    if join_chars <= 0:
        yield from _candump_read_blocks(path, gz, file, report, skip_lines)
        return
    pending: list[str] = []
    size = 0
    first = next_line = 0
    for block, lineno in _candump_read_blocks(path, gz, file, report, skip_lines):
        if pending and lineno != next_line:  # blank lines between: a block of its own
            yield "".join(pending), first
            pending, size = [], 0
        if not pending:
            first = lineno
        pending.append(block)
        size += len(block)
        next_line = lineno + block.count("\n")
        if size >= join_chars:
            yield "".join(pending), first
            pending, size = [], 0
    if pending:
        yield "".join(pending), first


def _candump_read_blocks(
    path: str | Path, gz: bool, file: str, report: ErrorHandler, skip_lines: int = 0
) -> Iterator[tuple[str, int]]:
    lineno = 0  # lines already parsed
    blank_run = 0  # blank lines in a row, across blocks
    rest = ""  # an incomplete last line, waiting for the next block
    with open_text(path, gz, "ascii") as f:
        while True:
            try:
                chunk = f.read(_BLOCK_CHARS)
            except READ_ERRORS as exc:  # truncated or corrupt .gz
                report(
                    LogFormatError(
                        f"cannot read past line {lineno}: {exc}; the file is truncated or corrupt",
                        Location(file=file, line=lineno + 1),
                    )
                )
                return
            if chunk:
                chunk = rest + chunk
                cut = chunk.rfind("\n") + 1
                if cut == 0:
                    if len(chunk) > MAX_LINE_CHARS:
                        report(
                            LogFormatError(
                                f"line is longer than {MAX_LINE_CHARS} characters; not a candump -L log",
                                Location(file=file, line=lineno + 1),
                            )
                        )
                        return
                    rest = chunk
                    continue
                block, rest = chunk[:cut], chunk[cut:]
            elif rest:
                block, rest = rest + "\n", ""  # the last line had no line end
            else:
                return
            lines = block.count("\n")
            if not block.strip():
                blank_run += lines
                lineno += lines
                if blank_run >= MAX_BLANK_LINES:
                    report(blank_run_error(file, lineno))
                    return
                continue
            blank_run = 0
            if lineno < skip_lines:
                if lineno + lines <= skip_lines:
                    lineno += lines
                    continue
                cut = -1
                for _ in range(skip_lines - lineno):
                    cut = block.index("\n", cut + 1)
                block, lines, lineno = block[cut + 1 :], lines - (skip_lines - lineno), skip_lines
                if not block.strip():
                    lineno += lines
                    continue
            yield block, lineno
            lineno += lines


def block_lines(block: str) -> list[str]:
    """The lines of a block of whole lines (each ending in "\\n"), without their line ends."""
    lines = block.split("\n")
    lines.pop()  # what follows the block's final "\n" is empty
    return lines


def _candump_lines(
    lines: list[str], lineno: int, file: str, report: ErrorHandler, numbers: list[int] | None = None
) -> Iterator[Frame]:
    """Parse line by line; ``lineno`` is the number of lines before ``lines[0]``.  ``numbers``,
    if given, gets the line number of each frame yielded."""
    for line in lines:
        lineno += 1
        result = _parse_candump_line(line)
        if result is None:
            continue
        if isinstance(result, str):
            report(LogFormatError(result, Location(file=file, line=lineno)))
        else:
            if numbers is not None:
                numbers.append(lineno)
            yield result


_new_tuple = tuple.__new__
_first_char = itemgetter(0)
_last_char = itemgetter(-1)
_inside_parens = itemgetter(slice(1, -1))
_char3 = itemgetter(3)
_id3 = itemgetter(slice(0, 3))
_data4 = itemgetter(slice(4, None))
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)
_ID_WIDTHS = frozenset((3, 8))


def _candump_block_fast(text: str) -> list[Frame] | None:
    """Parse a block of whole candump lines column by column, or return None.

    This is the replay hot path.  Per-line Python code costs more than the parsing itself, so
    the block is split once and each column is parsed with C-level ``map`` calls (timestamps in
    one numpy pass).  It accepts only the common shape: every line ``(ts) iface id#data [R|T]``,
    a data frame of at most 8 bytes.  Anything else (blank or bad lines, remote, FD or error
    frames) returns None and the caller parses the block line by line, which gives the same
    frames and pinpoints bad lines.
    """
    n = text.count("\n")
    # Every line starts with "(" and that is the only "(" in the block, so each line's first
    # token is its timestamp; with k tokens per line on average, the timestamps sitting at
    # every k-th token proves every line has exactly k tokens.
    if n == 0 or text[-1] != "\n" or text[0] != "(" or text.count("(") != n or text.count("\n(") != n - 1:
        return None
    tokens = text.split()
    if len(tokens) == 4 * n:
        width = 4
        if not _DIRECTIONS.issuperset(tokens[3::4]):
            return None
    elif len(tokens) == 3 * n:
        width = 3
    else:
        return None
    stamps = tokens[0::width]
    frames = tokens[2::width]
    try:
        extended: Iterator[bool]
        if "".join(map(_char3, frames)) == "#" * n:  # all 11-bit: the common case, sliced
            ids, datas, extended = list(map(_id3, frames)), map(_data4, frames), repeat(False)
        else:  # 29-bit or mixed ids: split at "#", the id's length tells its width
            pieces = list(map(str.partition, frames, repeat("#")))
            if "".join(map(_second, pieces)) != "#" * n:
                return None
            ids, datas = list(map(_first, pieces)), map(_third, pieces)
            widths = list(map(len, ids))
            if not _ID_WIDTHS.issuperset(widths):
                return None
            extended = map(operator.eq, widths, repeat(8))
        # Ids repeat (a car sends a few hundred), so a dict of ids already checked beats int().
        arbitration_ids = list(map(_ID_VALUES.get, ids, repeat(-1)))
        if min(arbitration_ids) < 0 and not _learn_ids(ids, arbitration_ids):
            return None
        # a2b_hex is strict (no odd length, "R", "#" or spaces) and 3x faster than bytes.fromhex.
        payloads = list(map(binascii.a2b_hex, datas))
        if max(map(len, payloads)) > 8:
            return None
        timestamps = _parse_stamps(stamps)
    except (ValueError, IndexError):
        return None
    if timestamps is None:
        return None
    no = repeat(False)
    rows = zip(timestamps, arbitration_ids, extended, payloads, tokens[1::width], no, no, no, no, no, strict=False)
    # tuple.__new__ called from C builds the NamedTuple without running Frame's Python __new__.
    return list(map(_new_tuple, repeat(Frame), rows))


# Checked candump id text -> value, e.g. "0B4" -> 180 (3 digits: 11-bit, 8 digits: 29-bit).
_ID_VALUES: dict[str, int] = {}
_ID_VALUES_MAX = 1 << 16  # bound the memory a log with very many distinct ids can take


def _learn_ids(ids: list[str], values: list[int]) -> bool:
    """Fill in the ``-1`` entries of ``values`` from ``ids``; False if one is not a valid id.

    Only data-frame ids are learnt: 3 hex digits up to 7FF, or 8 up to 1FFFFFFF.
    """
    for i, value in enumerate(values):
        if value < 0:
            text = ids[i]
            # int(x, 16) also takes "0x", "_" and non-ASCII digits; demand plain hex digits.
            if len(text) not in _ID_WIDTHS or not is_hex(text):
                return False
            value = int(text, 16)
            if value > (CAN_SFF_MASK if len(text) == 3 else CAN_EFF_MASK):
                return False
            if len(_ID_VALUES) < _ID_VALUES_MAX:
                _ID_VALUES[text] = value
            values[i] = value
    return True


@functools.cache
def _stamp_template(width: int) -> tuple[Any, Any, Any]:
    """For ``(ddd.dddddd)`` of ``width`` characters: lowest byte, allowed span, digit weights.

    ``grid - low`` (uint8, so anything below wraps high) must be ``<= span`` in every column:
    "(" ")" "." exactly, digits 0-9.  The weights turn the digit columns into microseconds.
    With 16 digits the first may be at most 8, which keeps every value below 2**53.
    """
    digits = width - 3
    low = np.full(width, 48, dtype=np.uint8)
    span = np.full(width, 9, dtype=np.uint8)
    weights = np.zeros(width, dtype=np.int64)
    weights[1 : width - 8] = 10 ** np.arange(digits - 1, 5, -1, dtype=np.int64)
    weights[width - 7 : width - 1] = 10 ** np.arange(5, -1, -1, dtype=np.int64)
    for column, char in ((0, "("), (width - 8, "."), (width - 1, ")")):
        low[column], span[column] = ord(char), 0
    if digits == 16:
        span[1] = 8
    return low, span, weights


def _parse_stamps(stamps: list[str]) -> list[float] | None:
    """Timestamps ``(digits.digits)`` to floats, or None if one is malformed.

    float() per string is the costliest step of candump parsing (~250 ns here).  candump
    writes fixed-width ``(%010lu.%06lu)``, so a block is usually a character matrix: numpy
    reads the digits as integer microseconds and divides by 1e6, which gives bit for bit what
    float() gives (an integer below 2**53 is exact in a double and IEEE division rounds
    correctly).  Few numpy calls, as each costs microseconds.  Other shapes take float().
    """
    n = len(stamps)
    width = len(stamps[0])
    joined = "".join(stamps)
    same_width = len(joined) == width * n and len(set(map(len, stamps))) == 1
    if 10 <= width <= 19 and same_width and joined.isascii():
        low, span, weights = _stamp_template(width)
        offsets = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, width) - low
        if (offsets <= span).all():
            return cast("list[float]", ((offsets @ weights) / 1e6).tolist())
    # General route: "(digits[.digits])" checked the same way _parse_candump_line does.
    if "".join(map(_first_char, stamps)) != "(" * n or "".join(map(_last_char, stamps)) != ")" * n:
        return None
    inner = list(map(_inside_parens, stamps))
    if max(map(str.count, inner, repeat("."))) > 1:
        return None
    digits_only = "".join(inner).replace(".", "")
    if not (digits_only.isascii() and digits_only.isdigit()) or "" in inner or "." in inner:
        return None
    values = list(map(float, inner))
    if max(values) == math.inf:
        return None
    return values


def _parse_candump_line(line: str) -> Frame | str | None:
    """Parse one candump line: a Frame, None for a blank line, or the error message."""
    parts = line.split()
    # Quick path for a plain data frame with an id seen before; it accepts exactly what the
    # checks below accept.  Anything else, including every error, takes the long way.
    if len(parts) == 3 or (len(parts) == 4 and parts[3] in _DIRECTIONS):
        stamp, token = parts[0], parts[2]
        id_text, sep, data_text = token.partition("#")
        arbitration_id = _ID_VALUES.get(id_text)
        inner = stamp[1:-1]
        if (
            arbitration_id is not None
            and sep
            and len(data_text) <= 16
            and stamp[:1] == "("
            and stamp[-1:] == ")"
            and inner.isascii()
            and inner.replace(".", "", 1).isdigit()
        ):
            timestamp = float(inner)
            with contextlib.suppress(ValueError):  # odd length or not hex: the long way says which
                if timestamp != math.inf:
                    data = binascii.a2b_hex(data_text)
                    return Frame(timestamp, arbitration_id, len(id_text) == 8, data, parts[1], False, False)
    if not parts:
        return None
    if len(parts) == 4:
        if parts[3] not in _DIRECTIONS:
            return f"bad direction flag: found {show(parts[3])}, expected 'R' or 'T'"
    elif len(parts) != 3:
        return (
            f"malformed candump line: found {show(line.strip())}, "
            "expected '(timestamp) interface id#data' and an optional R or T"
        )
    stamp, channel, token = parts[0], parts[1], parts[2]
    inner = stamp[1:-1]
    if (
        len(stamp) < 3
        or stamp[0] != "("
        or stamp[-1] != ")"
        or inner.count(".") > 1
        or inner == "."
        or not (inner.isascii() and inner.replace(".", "").isdigit())
    ):
        return f"bad timestamp: found {show(stamp)}, expected '(seconds.fraction)' such as '(1580765471.675426)'"
    timestamp = float(inner)
    if timestamp == math.inf:
        return f"bad timestamp: found {show(stamp)}, which is out of range"

    id_text, sep, rest = token.partition("#")
    if not sep:
        return f"bad frame: found {show(token)}, expected id#data such as '0B4#0102030405060708'"
    if len(id_text) not in (3, 8) or not is_hex(id_text):
        return f"bad CAN id: found {show(id_text)}, expected 3 hex digits (11-bit) or 8 hex digits (29-bit)"
    raw_id = int(id_text, 16)
    error = False
    if len(id_text) == 3:
        extended = False
        if raw_id > CAN_SFF_MASK:
            return f"bad CAN id: found {show(id_text)}, expected an 11-bit id of at most 7FF"
    else:
        # candump prints error frames with CAN_ERR_FLAG in the 8-digit id and the error class
        # below it.  extended=True like python-can's error frames, so formats compare equal.
        extended = True
        if raw_id & CAN_ERR_FLAG:
            error = True
            raw_id &= CAN_EFF_MASK
        elif raw_id > CAN_EFF_MASK:
            return (
                f"bad CAN id: found {show(id_text)}, expected a 29-bit id of at most 1FFFFFFF "
                "(or the error flag 20000000)"
            )

    fd = False
    fd_flags = 0
    if rest[:1] == "#":  # CAN FD: "##", one hex digit of flags (BRS/ESI), then the data
        flags = rest[1:2]
        if not flags or not is_hex(flags):
            return f"bad CAN FD flags: found {show(rest[:2])}, expected '#' and one hex digit after 'id#'"
        fd = True
        fd_flags = int(flags, 16)
        rest = rest[2:]
    elif rest[:1] in ("R", "r"):
        dlc = rest[1:]
        if dlc and not (len(dlc) == 1 and dlc in "012345678"):
            return f"bad remote frame: found {show(rest)}, expected 'R' and an optional DLC digit 0-8"
        if error:
            return f"bad frame: found {show(token)}, an error frame cannot be a remote frame"
        return Frame(timestamp, raw_id, extended, b"", channel, False, True)
    elif "_" in rest:  # classic CAN with a raw DLC of 9..F after 8 data bytes ("..._C")
        rest, _, dlc = rest.partition("_")
        if len(rest) != 16 or len(dlc) != 1 or dlc not in "9ABCDEFabcdef":
            return f"bad DLC suffix: found {show(token)}, expected 8 data bytes, '_' and a DLC 9-F"

    if len(rest) % 2 or not is_hex(rest):
        return f"bad data: found {show(rest)}, expected pairs of hex digits"
    data = binascii.a2b_hex(rest)
    if fd:
        if len(data) not in FD_LENGTHS:
            return f"bad CAN FD data length: found {len(data)} bytes, expected 0-8, 12, 16, 20, 24, 32, 48 or 64"
        # candump's flags digit: CANFD_BRS = 1, CANFD_ESI = 2 (linux/can.h).
        return Frame(
            timestamp, raw_id, extended, data, channel, error, False, True, bool(fd_flags & 1), bool(fd_flags & 2)
        )
    if len(data) > 8:
        return f"bad data length: found {len(data)} bytes, expected at most 8 for classic CAN (CAN FD uses '##')"
    return Frame(timestamp, raw_id, extended, data, channel, error, False)
