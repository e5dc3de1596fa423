"""Reading recorded CAN logs for replay.

:func:`read_log` turns a log file into :class:`Frame` tuples, whatever its format:

============  ==========================================  ===========================================
format        suffix                                      read by
============  ==========================================  ===========================================
candump       ``.log`` (``candump -L``)                   our own parser (the replay hot path)
asc           ``.asc`` (Vector ASCII)                     python-can's ``ASCReader``
blf           ``.blf`` (Vector binary)                    python-can's ``BLFReader``
trc           ``.trc`` (PEAK PCAN-View)                   python-can's ``TRCReader``
csv           ``.csv`` written by python-can's CSVWriter  our own parser
panda-csv     ``.csv`` from comma's panda/strym/libpanda  our own parser
mf4           ``.mf4`` (ASAM MDF 4, e.g. CANedge)         python-can's ``MF4Reader`` (needs asammdf)
============  ==========================================  ===========================================

Any of them may be gzip-compressed (``drive.log.gz``).  Compression is recognised by the gzip
magic bytes, not by the name, so a misnamed file still reads; the format comes from the suffix
with ``.gz`` removed.  The two CSV dialects share a suffix and are told apart by their header.

Channels are strings.  candump keeps the interface name it logged (``can0``, ``vcan1``).  panda
CSV bus ``N`` becomes ``canN``.  For the python-can formats, python-can's channel number ``N``
becomes ``canN``; python-can numbers ASC and BLF channels from 0 (Vector's channel 1 is ``can0``,
which is also what python-can's writers turn ``can0`` into) but keeps the file's own numbers for
TRC and MF4 (a CANedge's CAN 1 is ``can1``).  Formats that do not record a channel (python-can
CSV, TRC 1.0/1.1, TRC 2.x without a bus column) give ``None``.

Timestamps are seconds as float, absolute wherever the file says when it was recorded (for ASC
see :class:`_ASCReader`: millisecond start, local time).  What a :class:`Frame` has no field for is dropped: the
RX/TX direction, CAN FD's BRS/ESI flags, and a remote frame's DLC.

Errors: a line or frame that cannot be read is reported as a :class:`LogFormatError` at its
``file:line`` (binary formats: the frame's index) and skipped; the frames around it are kept.
With ``on_error=None`` the first such error is raised instead (strict mode).  A file that is
missing, empty, unreadable, of an unknown kind, or (for CSV) has a foreign header raises
:class:`LogFormatError` straight from :func:`read_log`, before any frame is read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import functools
import gzip
import importlib.util
import math
import operator
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path, PurePath
from typing import IO, Any, BinaryIO, NamedTuple, cast

import can
import numpy as np
from can.io.trc import TRCFileVersion

from safety.errors import Location, LogFormatError

__all__ = ["SUPPORTED_FORMATS", "ErrorHandler", "Frame", "iter_candump", "log_format", "read_log"]


class Frame(NamedTuple):
    """One CAN frame as read from a log."""

    timestamp: float  # seconds, as in the log (absolute where the format has it)
    arbitration_id: int
    is_extended_id: bool
    data: bytes
    channel: str | None  # e.g. "can0"; None when the format has none
    is_error_frame: bool = False
    is_remote_frame: bool = False


ErrorHandler = Callable[[LogFormatError], None]

#: Every value :func:`log_format` can return.
SUPPORTED_FORMATS: tuple[str, ...] = ("candump", "asc", "blf", "trc", "csv", "panda-csv", "mf4")

_FORMAT_BY_SUFFIX = {
    ".log": "candump",
    ".asc": "asc",
    ".blf": "blf",
    ".trc": "trc",
    ".csv": "csv",
    ".mf4": "mf4",
}
_SUPPORTED_TEXT = (
    ".log (candump -L), .asc (Vector ASCII), .blf (Vector binary), .trc (PEAK), "
    ".csv (python-can or panda), .mf4 (ASAM MDF 4); each may be gzipped (.gz)"
)
_MF4_HINT = "reading MF4 logs needs the asammdf package: pip install drivegate[mf4]"

_GZIP_MAGIC = b"\x1f\x8b"
_CAN_ERR_FLAG = 0x20000000  # SocketCAN's error-frame flag, which candump prints as part of the id
_CAN_EFF_MASK = 0x1FFFFFFF
_CAN_SFF_MASK = 0x7FF
_FD_LENGTHS = frozenset((0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64))
_HEX_DIGITS = "0123456789abcdefABCDEF"
_DIRECTIONS = frozenset(("R", "T", "r", "t"))  # candump writes R/T; python-can also accepts lowercase

# candump reading works on blocks of whole lines.  16 KiB (~400 lines) measured fastest here:
# a block's objects stay in cache.  It also bounds what a truncated .gz loses where it breaks.
_BLOCK_CHARS = 1 << 14
_CHUNK_LINES = 512
_MAX_LINE_CHARS = 1 << 20  # a "line" longer than this is not candump; stop rather than buffer it


# --------------------------------------------------------------------------- public API


def log_format(path: str | Path) -> str:
    """Return the format of the log at ``path``, one of :data:`SUPPORTED_FORMATS`.

    The format comes from the suffix (``.gz`` removed, case ignored).  A ``.csv`` file is opened
    to tell python-can's dialect (``csv``) from panda's (``panda-csv``) by its header, so for CSV
    a missing file or a foreign header raises too.  An unknown suffix raises
    :class:`LogFormatError` listing the supported ones.
    """
    fmt = _format_from_suffix(path)
    if fmt == "csv":
        file = str(path)
        gz = _check_file(path)
        fmt, _ = _csv_dialect(path, gz, file)
    return fmt


def read_log(path: str | Path, *, on_error: ErrorHandler | None = None) -> Iterator[Frame]:
    """Iterate over the frames of the log at ``path``, in file order.

    Problems with the file as a whole (missing, empty, unreadable, unknown suffix, foreign CSV
    header, MF4 without asammdf) raise :class:`LogFormatError` here, before iteration starts.
    A bad line or frame is passed to ``on_error`` and skipped; with ``on_error=None`` the first
    one is raised from the iterator instead.  If a reader cannot go on (a corrupt or truncated
    file), that is reported the same way and iteration ends; frames already yielded stay valid.
    """
    file = str(path)
    fmt = _format_from_suffix(path)
    gz = _check_file(path)
    report = _reporter(on_error)
    if fmt == "candump":
        return _candump_file(path, gz, file, report)
    if fmt == "csv":
        dialect, columns = _csv_dialect(path, gz, file)
        return _csv_file(path, gz, file, dialect, columns, report)
    if fmt == "mf4" and importlib.util.find_spec("asammdf") is None:
        raise LogFormatError(_MF4_HINT, Location(file=file))
    return _python_can_frames(path, gz, file, fmt, report)


def iter_candump(lines: Iterable[str], *, filename: str = "", on_error: ErrorHandler | None = None) -> Iterator[Frame]:
    """Parse ``candump -L`` lines (with or without their line ends) into frames.

    Accepts ``(1234.567890) can0 0B4#0102030405060708 R``: the trailing R/T is optional,
    8-digit ids are 29-bit, ``123#R`` is a remote frame, ``123##<flags><data>`` is CAN FD, and an
    id carrying 0x20000000 (CAN_ERR_FLAG) is an error frame whose id is the error class.  Blank
    lines are skipped.  A bad line goes to ``on_error`` as a :class:`LogFormatError` at
    ``filename:line`` and is skipped; with ``on_error=None`` it is raised.
    """
    report = _reporter(on_error)
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


# --------------------------------------------------------------------------- files


def _format_from_suffix(path: str | Path) -> str:
    name = PurePath(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = PurePath(name).suffix
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        found = f"suffix {suffix!r}" if suffix else "no suffix"
        raise LogFormatError(
            f"unknown log format: found {found}, expected one of {_SUPPORTED_TEXT}", Location(file=str(path))
        )
    return fmt


def _check_file(path: str | Path) -> bool:
    """Fail early, naming the file, if it cannot be read; return whether it is gzip-compressed."""
    file = str(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise LogFormatError("is a directory, expected a log file", Location(file=file))
        if st.st_size == 0:
            raise LogFormatError("file is empty", Location(file=file))
        with open(path, "rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        if gz:
            with gzip.open(path, "rb") as g:
                if not g.read(1):
                    raise LogFormatError("file is empty (after gunzip)", Location(file=file))
    except FileNotFoundError:
        raise LogFormatError("no such file", Location(file=file)) from None
    except (OSError, EOFError) as exc:  # permission denied, corrupt gzip header, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LogFormatError(f"cannot read the file: {reason}", Location(file=file)) from None
    return gz


def _open_text(path: str | Path, gz: bool, encoding: str = "utf-8") -> IO[str]:
    # errors="replace": a stray non-UTF-8 byte becomes a bad line reported at its place instead
    # of a UnicodeDecodeError that would end the file.
    if gz:
        return gzip.open(path, "rt", encoding=encoding, errors="replace")
    return open(path, encoding=encoding, errors="replace")


def _open_binary(path: str | Path, gz: bool) -> BinaryIO:
    if gz:
        return cast("BinaryIO", gzip.open(path, "rb"))
    return open(path, "rb")


def _reporter(on_error: ErrorHandler | None) -> ErrorHandler:
    if on_error is not None:
        return on_error

    def strict(error: LogFormatError) -> None:
        raise error

    return strict


def _show(text: str, limit: int = 60) -> str:
    """``repr`` of a piece of input, shortened so one bad line cannot flood the error list."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------- candump


def _candump_file(path: str | Path, gz: bool, file: str, report: ErrorHandler) -> Iterator[Frame]:
    lineno = 0  # lines already parsed
    rest = ""  # an incomplete last line, waiting for the next block
    with _open_text(path, gz, "ascii") as f:
        while True:
            try:
                chunk = f.read(_BLOCK_CHARS)
            except (OSError, EOFError) as exc:  # truncated or corrupt .gz
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
                    if len(chunk) > _MAX_LINE_CHARS:
                        report(
                            LogFormatError(
                                f"line is longer than {_MAX_LINE_CHARS} characters; not a candump -L log",
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
            frames = _candump_block_fast(block)
            if frames is not None:
                yield from frames
                lineno += len(frames)
            else:
                lines = block.split("\n")
                lines.pop()  # what follows the block's final "\n" is empty
                yield from _candump_lines(lines, lineno, file, report)
                lineno += len(lines)


def _candump_lines(lines: list[str], lineno: int, file: str, report: ErrorHandler) -> Iterator[Frame]:
    """Parse line by line; ``lineno`` is the number of lines before ``lines[0]``."""
    for line in lines:
        lineno += 1
        result = _parse_candump_line(line)
        if result is None:
            continue
        if isinstance(result, str):
            report(LogFormatError(result, Location(file=file, line=lineno)))
        else:
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
    rows = zip(timestamps, arbitration_ids, extended, payloads, tokens[1::width], no, no, strict=False)
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
            if len(text) not in _ID_WIDTHS or not _is_hex(text):
                return False
            value = int(text, 16)
            if value > (_CAN_SFF_MASK if len(text) == 3 else _CAN_EFF_MASK):
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


def _is_hex(text: str) -> bool:
    return text.isascii() and not text.strip(_HEX_DIGITS)


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
            return f"bad direction flag: found {_show(parts[3])}, expected 'R' or 'T'"
    elif len(parts) != 3:
        return (
            f"malformed candump line: found {_show(line.strip())}, "
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
        return f"bad timestamp: found {_show(stamp)}, expected '(seconds.fraction)' such as '(1580765471.675426)'"
    timestamp = float(inner)
    if timestamp == math.inf:
        return f"bad timestamp: found {_show(stamp)}, which is out of range"

    id_text, sep, rest = token.partition("#")
    if not sep:
        return f"bad frame: found {_show(token)}, expected id#data such as '0B4#0102030405060708'"
    if len(id_text) not in (3, 8) or not _is_hex(id_text):
        return f"bad CAN id: found {_show(id_text)}, expected 3 hex digits (11-bit) or 8 hex digits (29-bit)"
    raw_id = int(id_text, 16)
    error = False
    if len(id_text) == 3:
        extended = False
        if raw_id > _CAN_SFF_MASK:
            return f"bad CAN id: found {_show(id_text)}, expected an 11-bit id of at most 7FF"
    else:
        # candump prints error frames with CAN_ERR_FLAG in the 8-digit id and the error class
        # below it.  extended=True like python-can's error frames, so formats compare equal.
        extended = True
        if raw_id & _CAN_ERR_FLAG:
            error = True
            raw_id &= _CAN_EFF_MASK
        elif raw_id > _CAN_EFF_MASK:
            return (
                f"bad CAN id: found {_show(id_text)}, expected a 29-bit id of at most 1FFFFFFF "
                "(or the error flag 20000000)"
            )

    fd = False
    if rest[:1] == "#":  # CAN FD: "##", one hex digit of flags (BRS/ESI), then the data
        flags = rest[1:2]
        if not flags or not _is_hex(flags):
            return f"bad CAN FD flags: found {_show(rest[:2])}, expected '#' and one hex digit after 'id#'"
        fd = True
        rest = rest[2:]
    elif rest[:1] in ("R", "r"):
        dlc = rest[1:]
        if dlc and not (len(dlc) == 1 and dlc in "012345678"):
            return f"bad remote frame: found {_show(rest)}, expected 'R' and an optional DLC digit 0-8"
        if error:
            return f"bad frame: found {_show(token)}, an error frame cannot be a remote frame"
        return Frame(timestamp, raw_id, extended, b"", channel, False, True)
    elif "_" in rest:  # classic CAN with a raw DLC of 9..F after 8 data bytes ("..._C")
        rest, _, dlc = rest.partition("_")
        if len(rest) != 16 or len(dlc) != 1 or dlc not in "9ABCDEFabcdef":
            return f"bad DLC suffix: found {_show(token)}, expected 8 data bytes, '_' and a DLC 9-F"

    if len(rest) % 2 or not _is_hex(rest):
        return f"bad data: found {_show(rest)}, expected pairs of hex digits"
    data = binascii.a2b_hex(rest)
    if fd:
        if len(data) not in _FD_LENGTHS:
            return f"bad CAN FD data length: found {len(data)} bytes, expected 0-8, 12, 16, 20, 24, 32, 48 or 64"
    elif len(data) > 8:
        return f"bad data length: found {len(data)} bytes, expected at most 8 for classic CAN (CAN FD uses '##')"
    return Frame(timestamp, raw_id, extended, data, channel, error, False)


# --------------------------------------------------------------------------- CSV

# Column sets, lower-cased.  python-can's CSVWriter: timestamp (float), arbitration_id (hex, "0x"),
# extended/remote/error ("1"/"0"), dlc (decimal), data (base64).  panda/strym: Time (unix float),
# [Buffer (raw panda bytes, ignored),] Bus (decimal), MessageID (decimal), Message (hex),
# MessageLength (decimal).
_PYTHON_CAN_COLUMNS = ("timestamp", "arbitration_id", "extended", "remote", "error", "dlc", "data")
_PANDA_COLUMNS = ("time", "bus", "messageid", "message", "messagelength")
_PANDA_BUFFER_COLUMNS = ("time", "buffer", "bus", "messageid", "message", "messagelength")


def _csv_dialect(path: str | Path, gz: bool, file: str) -> tuple[str, dict[str, int]]:
    """Read the header: ('csv' | 'panda-csv', column name -> index), or raise at file:1."""
    with _open_text(path, gz, "utf-8-sig") as f:
        header = next(csv.reader(f), [])
    names = [name.strip().lower() for name in header]
    columns = {name: i for i, name in enumerate(names)}
    if len(columns) == len(names):
        found = set(names)
        if found == set(_PYTHON_CAN_COLUMNS):
            return "csv", columns
        if found in (set(_PANDA_COLUMNS), set(_PANDA_BUFFER_COLUMNS)):
            return "panda-csv", columns
    raise LogFormatError(
        f"unknown CSV columns: found {','.join(h.strip() for h in header) or '(no header)'}, expected "
        f"{','.join(_PYTHON_CAN_COLUMNS)} (python-can) or Time,Bus,MessageID,Message,MessageLength or "
        "Time,Buffer,Bus,MessageID,Message,MessageLength (panda)",
        Location(file=file, line=1),
    )


def _csv_file(
    path: str | Path, gz: bool, file: str, dialect: str, columns: dict[str, int], report: ErrorHandler
) -> Iterator[Frame]:
    parse = _parse_python_can_row if dialect == "csv" else _parse_panda_row
    channels: dict[str, str] = {}  # one "canN" string per bus, not one per frame
    width = len(columns)
    with _open_text(path, gz, "utf-8-sig") as f:
        rows = csv.reader(f)
        next(rows, None)  # the header, checked by _csv_dialect
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except (OSError, EOFError, csv.Error) as exc:
                report(
                    LogFormatError(
                        f"cannot read past this line: {exc}; the file is truncated or corrupt",
                        Location(file=file, line=rows.line_num + 1),
                    )
                )
                return
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != width:
                report(
                    LogFormatError(
                        f"bad row: found {len(row)} fields, expected {width} as in the header",
                        Location(file=file, line=rows.line_num),
                    )
                )
                continue
            result = parse(row, columns, channels)
            if isinstance(result, str):
                report(LogFormatError(result, Location(file=file, line=rows.line_num)))
            else:
                yield result


def _csv_float(name: str, text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return f"bad {name}: found {_show(text)}, expected a number of seconds"
    if not math.isfinite(value):
        return f"bad {name}: found {_show(text)}, expected a finite number of seconds"
    return value


def _csv_uint(name: str, text: str, base: int = 10) -> int | str:
    body = text.strip()
    if base == 16 and body[:2] in ("0x", "0X"):
        body = body[2:]
    ok = _is_hex(body) if base == 16 else body.isascii() and body.isdigit()
    if not body or not ok:
        kind = "a hex number such as 0x1a" if base == 16 else "a whole decimal number"
        return f"bad {name}: found {_show(text)}, expected {kind}"
    return int(body, base)


def _check_id(name: str, arbitration_id: int, extended: bool) -> str | None:
    limit = _CAN_EFF_MASK if extended else _CAN_SFF_MASK
    if arbitration_id > limit:
        bits = 29 if extended else 11
        return f"bad {name}: found {arbitration_id:#x}, expected a {bits}-bit id of at most {limit:#x}"
    return None


def _parse_python_can_row(row: list[str], columns: dict[str, int], channels: dict[str, str]) -> Frame | str:
    timestamp = _csv_float("timestamp", row[columns["timestamp"]])
    if isinstance(timestamp, str):
        return timestamp
    flags: dict[str, bool] = {}
    for name in ("extended", "remote", "error"):
        text = row[columns[name]].strip()
        if text not in ("0", "1"):
            return f"bad {name}: found {_show(text)}, expected 0 or 1"
        flags[name] = text == "1"
    arbitration_id = _csv_uint("arbitration_id", row[columns["arbitration_id"]], 16)
    if isinstance(arbitration_id, str):
        return arbitration_id
    if problem := _check_id("arbitration_id", arbitration_id, flags["extended"]):
        return problem
    dlc = _csv_uint("dlc", row[columns["dlc"]])
    if isinstance(dlc, str):
        return dlc
    text = row[columns["data"]].strip()
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"bad data: found {_show(text)}, expected base64 as python-can's CSVWriter writes it"
    # A remote frame's DLC is what it asks for, an error frame's is meaningless.  A classic
    # frame's DLC 9..15 still carries 8 bytes (python-can keeps such DLCs as read).
    if not (flags["remote"] or flags["error"]) and len(data) != dlc and not (dlc > 8 and len(data) == 8):
        return f"DLC/length mismatch: found {len(data)} data bytes, expected {dlc} (the dlc column)"
    return Frame(timestamp, arbitration_id, flags["extended"], data, None, flags["error"], flags["remote"])


def _parse_panda_row(row: list[str], columns: dict[str, int], channels: dict[str, str]) -> Frame | str:
    timestamp = _csv_float("Time", row[columns["time"]])
    if isinstance(timestamp, str):
        return timestamp
    bus_text = row[columns["bus"]].strip()
    channel = channels.get(bus_text)
    if channel is None:
        bus = _csv_uint("Bus", bus_text)
        if isinstance(bus, str):
            return bus
        channel = channels[bus_text] = f"can{bus}"
    arbitration_id = _csv_uint("MessageID", row[columns["messageid"]])
    if isinstance(arbitration_id, str):
        return arbitration_id
    # panda has no extended flag: like panda and openpilot, an address above 0x7FF is 29-bit.
    extended = arbitration_id > _CAN_SFF_MASK
    if problem := _check_id("MessageID", arbitration_id, extended):
        return problem
    text = row[columns["message"]].strip()
    if len(text) % 2 or not _is_hex(text):
        return f"bad Message: found {_show(text)}, expected pairs of hex digits"
    data = binascii.a2b_hex(text)
    length = _csv_uint("MessageLength", row[columns["messagelength"]])
    if isinstance(length, str):
        return length
    if len(data) != length:
        return f"DLC/length mismatch: found {len(data)} data bytes, expected {length} (MessageLength)"
    return Frame(timestamp, arbitration_id, extended, data, channel)


# --------------------------------------------------------------------------- python-can formats


class _CountingLines:
    """A text file that counts the lines python-can has taken from it, for error locations."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.line = 0

    def __iter__(self) -> _CountingLines:
        return self

    def __next__(self) -> str:
        line = next(self._file)
        self.line += 1
        return line

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class _CountingBytes:
    """A binary file that counts the bytes python-can has read, to notice a truncated BLF."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.consumed += len(data)
        return data

    def close(self) -> None:
        self._file.close()


_ASC_SHORT_MILLIS = re.compile(r"(\d{1,2}:\d{2}:\d{2})\.(\d{1,2})(?!\d)")


class _ASCReader(can.ASCReader):
    """python-can's ASCReader with absolute time, and a fix for times python-can itself wrote.

    With ``relative_timestamp=False`` python-can adds the wall-clock start of the file (the
    ``date`` line, then each ``Begin Triggerblock`` line) to the relative times.  Caveats, read
    from python-can 4.6.1's asc.py:

    * python-can's ASCWriter writes that start as ``%S.{msec}`` without zero padding, so 5 ms
      comes out as ``.5`` and reads back as 500 ms: absolute times shift by up to 0.99 s.
      CANoe always writes 3 digits, so a 1- or 2-digit fraction is taken as milliseconds here.
    * The start has millisecond resolution, so absolute times are exact only to 1 ms (and a
      python-can-written file loses the first frame's sub-millisecond part); differences
      between frames are exact.
    * The wall clock carries no time zone; like python-can we read it in local time.
    * A start that cannot be parsed (a locale python-can does not know) would make python-can
      raise and lose the whole file; here it is reported once and times stay relative.
    """

    def __init__(self, file: _CountingLines) -> None:
        super().__init__(file, relative_timestamp=False)  # type: ignore[arg-type]
        self._lines = file
        self.bad_start: tuple[int, str] | None = None  # (line, text) of an unreadable start time

    def _datetime_to_timestamp(self, datetime_string: str) -> float:  # type: ignore[override]
        padded = _ASC_SHORT_MILLIS.sub(lambda m: f"{m.group(1)}.{m.group(2).zfill(3)}", datetime_string)
        try:
            start = float(can.ASCReader._datetime_to_timestamp(padded))
        except ValueError:
            self.bad_start = (self._lines.line, datetime_string)
            return 0.0
        self.bad_start = None
        return start


def _channel_name(channel: Any) -> str | None:
    if channel is None:
        return None
    if isinstance(channel, int):
        return f"can{channel}"
    return str(channel)


def _python_can_frames(path: str | Path, gz: bool, file: str, fmt: str, report: ErrorHandler) -> Iterator[Frame]:
    """Frames from python-can's reader for ``fmt``, checked and converted.

    The readers are built here rather than through ``can.LogReader``: for ``x.asc.gz`` LogReader
    drops keyword arguments (so no absolute ASC time) and it refuses names with more than two
    suffixes (``drive.2020.asc.gz``); passing an open gzip stream works for every reader.
    """
    text_lines: _CountingLines | None = None
    blf_bytes: _CountingBytes | None = None
    reader: can.io.generic.MessageReader
    try:
        if fmt in ("asc", "trc"):
            text_lines = _CountingLines(_open_text(path, gz))
            reader = _ASCReader(text_lines) if fmt == "asc" else can.TRCReader(text_lines)  # type: ignore[arg-type]
        elif fmt == "blf":
            blf_bytes = _CountingBytes(_open_binary(path, gz))
            reader = can.BLFReader(blf_bytes)  # type: ignore[arg-type]
        else:  # mf4: python-can loads a stream into memory, a path it maps itself
            reader = can.MF4Reader(_open_binary(path, True) if gz else path)
    except Exception as exc:  # python-can raises many kinds here; all mean "not readable"
        if text_lines is not None:
            text_lines.close()
        report(
            LogFormatError(
                f"python-can cannot open it as {fmt.upper()}: {type(exc).__name__}: {exc}", Location(file=file)
            )
        )
        return

    def where() -> Location:
        return Location(file=file, line=text_lines.line if text_lines is not None else 0)

    has_channel: bool | None = None  # decided at the first frame, once python-can read the header
    index = 0  # frames read so far, for binary formats' error messages
    messages = iter(reader)
    try:
        while True:
            try:
                msg = next(messages)
            except StopIteration:
                # python-can stops quietly where a BLF's compressed data runs out; its header
                # knows how long the file should be.
                if (
                    isinstance(reader, can.BLFReader)
                    and blf_bytes is not None
                    and blf_bytes.consumed < reader.file_size
                ):
                    report(
                        LogFormatError(
                            f"file is truncated: its header says {reader.file_size} bytes, "
                            f"found {blf_bytes.consumed}; frames after frame {index} are lost",
                            where(),
                        )
                    )
                return
            except Exception as exc:  # python-can raises many kinds mid-file (struct.error, ...)
                report(
                    LogFormatError(
                        f"python-can's {fmt.upper()} reader failed after {index} frames: {type(exc).__name__}: {exc}",
                        where(),
                    )
                )
                return
            index += 1
            if has_channel is None:
                has_channel = _format_has_channel(reader)
                if isinstance(reader, _ASCReader) and reader.bad_start is not None:
                    line, start = reader.bad_start
                    report(
                        LogFormatError(
                            f"cannot read the ASC start time {_show(start)}, expected e.g. "
                            "'Sat Sep 30 15:06:13.191 2017'; timestamps are relative to the measurement start",
                            Location(file=file, line=line),
                        )
                    )
            data = bytes(msg.data)
            if not (msg.is_remote_frame or msg.is_error_frame):
                # A classic frame's DLC 9..15 still means 8 bytes; python-can gives FD's DLC as a length.
                expected = msg.dlc if msg.is_fd else min(msg.dlc, 8)
                if len(data) != expected:
                    report(
                        LogFormatError(
                            f"DLC/length mismatch in frame {index} (id {msg.arbitration_id:#x}): "
                            f"found {len(data)} data bytes, expected {expected} from DLC {msg.dlc}",
                            where(),
                        )
                    )
                    continue
            yield Frame(
                float(msg.timestamp),
                msg.arbitration_id,
                msg.is_extended_id,
                data,
                _channel_name(msg.channel) if has_channel else None,
                msg.is_error_frame,
                msg.is_remote_frame,
            )
    finally:
        # ASC/TRC/BLF stop themselves at the end, MF4 does not; a second stop() may raise.
        with contextlib.suppress(Exception):
            reader.stop()


def _format_has_channel(reader: can.io.generic.MessageReader) -> bool:
    """Whether the file records channels; python-can invents channel 1 for TRC files without one."""
    if isinstance(reader, can.TRCReader):
        version = reader.file_version
        if version == TRCFileVersion.V1_3:
            return True
        return version in (TRCFileVersion.V2_0, TRCFileVersion.V2_1) and "B" in reader.columns
    return True
