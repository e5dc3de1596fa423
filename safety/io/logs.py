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
see :class:`ASCReader`: millisecond start, local time).  What a :class:`Frame` has no field for is dropped: the
RX/TX direction, CAN FD's BRS/ESI flags, and a remote frame's DLC.

Errors: a line or frame that cannot be read is reported as a :class:`LogFormatError` at its
``file:line`` (binary formats: the frame's index) and skipped; the frames around it are kept.
With ``on_error=None`` the first such error is raised instead (strict mode).  A file that is
missing, empty, unreadable, of an unknown kind, or (for CSV) has a foreign header raises
:class:`LogFormatError` straight from :func:`read_log`, before any frame is read.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path, PurePath

from safety.errors import Location, LogFormatError
from safety.io.candump import candump_file, iter_candump
from safety.io.csv import csv_dialect, csv_file
from safety.io.files import check_file
from safety.io.frame import (
    ErrorHandler,
    Frame,
    reporter,
)
from safety.io.pythoncan import python_can_frames

__all__ = ["SUPPORTED_FORMATS", "ErrorHandler", "Frame", "iter_candump", "log_format", "read_log"]

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


def log_format(path: str | Path) -> str:
    """Return the format of the log at ``path``, one of :data:`SUPPORTED_FORMATS`.

    The format comes from the suffix (``.gz`` removed, case ignored).  A ``.csv`` file is opened
    to tell python-can's dialect (``csv``) from panda's (``panda-csv``) by its header, so for CSV
    a missing file or a foreign header raises too.  An unknown suffix raises
    :class:`LogFormatError` listing the supported ones.
    """
    fmt = format_from_suffix(path)
    if fmt == "csv":
        file = str(path)
        gz = check_file(path)
        fmt, _ = csv_dialect(path, gz, file)
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
    fmt = format_from_suffix(path)
    gz = check_file(path)
    report = reporter(on_error)
    if fmt == "candump":
        return candump_file(path, gz, file, report)
    if fmt == "csv":
        dialect, columns = csv_dialect(path, gz, file)
        return csv_file(path, gz, file, dialect, columns, report)
    if fmt == "mf4" and importlib.util.find_spec("asammdf") is None:
        raise LogFormatError(_MF4_HINT, Location(file=file))
    return python_can_frames(path, gz, file, fmt, report)


def format_from_suffix(path: str | Path) -> str:
    """The log format the name of ``path`` says (``.gz`` removed); a CSV is ``csv`` whatever its dialect."""
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
