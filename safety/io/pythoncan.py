"""The formats python-can reads for us: ASC (Vector ASCII), BLF (Vector binary), TRC (PEAK), MF4 (ASAM MDF 4).

Each frame is checked (DLC against length) and converted to :class:`~safety.io.frame.Frame`;
a reader that fails mid-file is reported at the place it stopped, and the frames before stay.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import can
from can.io.trc import TRCFileVersion

from safety.errors import Location, LogFormatError
from safety.io.blf import CANRun, ColumnarBLFReader, GuardedBLFReader, run_frames
from safety.io.files import BoundedLines, open_binary, open_text
from safety.io.frame import (
    CAN_EFF_MASK,
    MAX_BLANK_LINES,
    ErrorHandler,
    Frame,
    blank_run_error,
    channel_name,
    show,
)


class CountingLines(BoundedLines):
    """A text file that counts the lines python-can has taken from it, for error locations.

    ``check(line, number)``, when given, sees every line on its way to python-can: for what
    python-can would skip without a word.  No line is read whole past
    :data:`~safety.io.files.MAX_LINE_CHARS` (python-can's readers take a line at a time).
    """

    def __init__(self, file: IO[str], check: Callable[[str, int], None] | None = None, name: str = "") -> None:
        super().__init__(file, name)
        self.blank_run = 0
        self._check = check

    def __next__(self) -> str:
        line = super().__next__()
        if line.isspace():
            self.blank_run += 1
            if self.blank_run >= MAX_BLANK_LINES:
                raise blank_run_error(self.name, self.line)
        else:
            self.blank_run = 0
        if self._check is not None:
            self._check(line, self.line)
        return line


# An ASC frame line whose time is not a number python-can's reader accepts (it skips such a line
# as if it were a comment): "nan 1 B4 Rx d 8 ...", "inf CANFD ...".
_ASC_NON_FINITE = re.compile(r"^\s*([+-]?(?:nan|inf(?:inity)?))\s+(?:\d+|CANFD)\s", re.IGNORECASE)


# python-can looks each TRC column up in the $COLUMNS list, quadratic in its length (120,000
# names took over a minute); the format defines 12 columns.
_MAX_TRC_COLUMNS = 64


def trc_line_check(file: str) -> Callable[[str, int], None]:
    """Refuse a TRC ``$COLUMNS`` line of more names than any TRC file has."""

    def check(line: str, number: int) -> None:
        if line.startswith(";$COLUMNS=") and (count := line.count(",") + 1) > _MAX_TRC_COLUMNS:
            raise LogFormatError(
                f"$COLUMNS names {count} columns, expected at most {_MAX_TRC_COLUMNS} (TRC has 12)",
                Location(file=file, line=number),
            )

    return check


def asc_line_check(file: str, report: ErrorHandler) -> Callable[[str, int], None]:
    """Report ASC frame lines stamped NaN or infinite, which python-can would drop unseen."""

    def check(line: str, number: int) -> None:
        if (match := _ASC_NON_FINITE.match(line)) is not None:
            report(
                LogFormatError(
                    f"bad timestamp: found {match.group(1)!r}, expected seconds such as 0.020000; frame skipped",
                    Location(file=file, line=number),
                )
            )

    return check


_ASC_SHORT_MILLIS = re.compile(r"(\d{1,2}:\d{2}:\d{2})\.(\d{1,2})(?!\d)")


class ASCReader(can.ASCReader):
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

    def __init__(self, file: CountingLines) -> None:
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
        return channel_name(channel)
    return str(channel)


def python_can_frames(path: str | Path, gz: bool, file: str, fmt: str, report: ErrorHandler) -> Iterator[Frame]:
    """Frames from python-can's reader for ``fmt``, checked and converted.

    The readers are built here rather than through ``can.LogReader``: for ``x.asc.gz`` LogReader
    drops keyword arguments (so no absolute ASC time) and it refuses names with more than two
    suffixes (``drive.2020.asc.gz``); passing an open gzip stream works for every reader.
    A BLF's runs of classic data frames are read as numpy records and made frames in bulk
    (:class:`~safety.io.blf.ColumnarBLFReader`), several times faster than python-can's
    messages; the frames are the same.
    """
    if fmt != "blf":
        # Without ``runs`` every item is a Frame.
        yield from cast(Iterator[Frame], python_can_items(path, gz, file, fmt, report))
        return
    for item in python_can_items(path, gz, file, fmt, report, runs=True):
        if isinstance(item, CANRun):
            yield from run_frames(item)
        else:
            yield item


def python_can_items(
    path: str | Path, gz: bool, file: str, fmt: str, report: ErrorHandler, *, runs: bool = False
) -> Iterator[Frame | CANRun]:
    """The frames of python-can's reader for ``fmt``; with ``runs``, a BLF's runs of classic data
    frames as :class:`CANRun` columns.  Without ``runs`` a BLF is read by python-can alone
    (guarded), which the tests hold the runs to."""
    text_lines: CountingLines | None = None
    reader: can.io.generic.MessageReader
    try:
        if fmt in ("asc", "trc"):
            check = asc_line_check(file, report) if fmt == "asc" else trc_line_check(file)
            text_lines = CountingLines(open_text(path, gz), check, file)
            reader = ASCReader(text_lines) if fmt == "asc" else can.TRCReader(text_lines)  # type: ignore[arg-type]
        elif fmt == "blf":
            blf_class = ColumnarBLFReader if runs else GuardedBLFReader
            reader = blf_class(open_binary(path, gz), file)
        else:  # mf4: python-can loads a stream into memory, a path it maps itself
            reader = can.MF4Reader(open_binary(path, True) if gz else path)
    except LogFormatError as exc:  # our own checks of what python-can would read (a BLF header's size)
        report(exc)
        return
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
    messages: Iterator[can.Message | CANRun] = reader.items() if isinstance(reader, ColumnarBLFReader) else iter(reader)
    try:
        while True:
            try:
                msg = next(messages)
            except StopIteration:
                # python-can stops quietly where a BLF's compressed data runs out; its header
                # knows how long the file should be.
                if isinstance(reader, GuardedBLFReader) and reader.consumed < reader.file_size:
                    report(
                        LogFormatError(
                            f"file is truncated: its header says {reader.file_size} bytes, "
                            f"found {reader.consumed}; frames after frame {index} are lost",
                            where(),
                        )
                    )
                return
            except LogFormatError as exc:
                # Raised from inside python-can's loop by our line checks (a run of blank lines,
                # or a strict-mode report): report it (strict: raise it) and stop.
                report(exc)
                return
            except Exception as exc:  # python-can raises many kinds mid-file (struct.error, ...)
                report(
                    LogFormatError(
                        f"python-can's {fmt.upper()} reader failed after {index} frames: {type(exc).__name__}: {exc}",
                        where(),
                    )
                )
                return
            if isinstance(msg, CANRun):
                index += len(msg)
                yield msg
                continue
            index += 1
            if has_channel is None:
                has_channel = _format_has_channel(reader)
                if isinstance(reader, ASCReader) and reader.bad_start is not None:
                    line, start = reader.bad_start
                    report(
                        LogFormatError(
                            f"cannot read the ASC start time {show(start)}, expected e.g. "
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
            if msg.arbitration_id > CAN_EFF_MASK:
                # python-can reads any hex number as an id (2**32 and more overflowed the columns).
                # An 11-bit id above 0x7FF is let through as python-can gives it: writers that
                # lose the extended flag exist (python-can's own test files hold such frames).
                report(
                    LogFormatError(
                        f"bad id: found {msg.arbitration_id:#x}, expected at most {CAN_EFF_MASK:#x} (29 bits)", where()
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
                bool(msg.is_fd),
                bool(msg.bitrate_switch),
                bool(msg.error_state_indicator),
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
