"""Writing :class:`Frame` streams back to log files (the fault injector's output).

candump ``-L`` (``.log``, optionally ``.log.gz``) is written here, line for line what
``candump -L`` prints and what :func:`safety.io.logs.read_log` reads back: 3 or 8 hex digits of
id, ``##<flags>`` for CAN FD (BRS = 1, ESI = 2), error frames with SocketCAN's error flag in
the id, remote frames as ``R``.  Every other suffix python-can writes (``.asc``, ``.blf``,
``.trc``, ``.csv``, ``.mf4``, and their ``.gz`` where python-can compresses) goes through
python-can's own :class:`can.Logger`, so those files are exactly what python-can would record,
with what those formats cannot hold lost as python-can loses it: an error frame's class (ASC
writes a bare ``ErrorFrame``, TRC none at all) and, in TRC, CAN FD frames.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import can

from safety.io.frame import CAN_ERR_FLAG, Frame

__all__ = ["WRITE_SUFFIXES", "candump_line", "log_suffix", "write_frames"]

#: The suffixes :func:`write_frames` writes (each also gzipped, ``.gz``): those ``read_log`` reads.
WRITE_SUFFIXES: tuple[str, ...] = (".log", ".asc", ".blf", ".trc", ".csv", ".mf4")

_CHUNK = 4096  # lines per write() call


def candump_line(frame: Frame) -> str:
    """One frame as a ``candump -L`` line, newline included."""
    channel = frame.channel or "can0"
    if frame.is_error_frame:
        ident = f"{(frame.arbitration_id & 0x1FFFFFFF) | CAN_ERR_FLAG:08X}"
    elif frame.is_extended_id:
        ident = f"{frame.arbitration_id:08X}"
    else:
        ident = f"{frame.arbitration_id:03X}"
    if frame.is_remote_frame:
        body = "R"
    elif frame.is_fd:
        flags = (1 if frame.bitrate_switch else 0) | (2 if frame.error_state_indicator else 0)
        body = f"#{flags:X}{frame.data.hex().upper()}"
    else:
        body = frame.data.hex().upper()
    return f"({frame.timestamp:.6f}) {channel} {ident}#{body}\n"


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="ascii", newline="\n")
    return path.open("w", encoding="ascii", newline="\n")


def _candump(path: Path, frames: Iterable[Frame]) -> int:
    out = _open_text(path)
    written = 0
    lines: Iterator[str] = map(candump_line, frames)
    with out:
        while chunk := list(itertools.islice(lines, _CHUNK)):
            out.write("".join(chunk))
            written += len(chunk)
    return written


def _message(frame: Frame) -> can.Message:
    name = frame.channel
    channel: str | int | None = name
    # python-can's binary and Vector writers number channels; "can3" -> 3 as its readers give it back.
    if name is not None and name.startswith("can") and name[3:].isdigit():
        channel = int(name[3:])
    return can.Message(
        timestamp=frame.timestamp,
        arbitration_id=frame.arbitration_id,
        is_extended_id=frame.is_extended_id,
        data=frame.data,
        channel=channel,
        is_error_frame=frame.is_error_frame,
        is_remote_frame=frame.is_remote_frame,
        is_fd=frame.is_fd,
        bitrate_switch=frame.bitrate_switch,
        error_state_indicator=frame.error_state_indicator,
        dlc=len(frame.data),
        check=False,
    )


def log_suffix(path: str | Path) -> str:
    """The format suffix of ``path``, ``.gz`` removed and lower-cased (``drive.LOG.gz`` -> ``.log``)."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        path = Path(path.stem)
    return path.suffix.lower()


def write_frames(path: str | Path, frames: Iterable[Frame]) -> int:
    """Write ``frames`` to ``path`` in the format its suffix names; return how many were written.

    Raises ``ValueError`` for a suffix not in :data:`WRITE_SUFFIXES`.
    """
    path = Path(path)
    suffix = log_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write a log with suffix {suffix!r}; expected one of {', '.join(WRITE_SUFFIXES)}"
        )
    if suffix == ".log":
        return _candump(path, frames)
    written = 0
    with can.Logger(str(path)) as logger:
        for frame in frames:
            logger.on_message_received(_message(frame))
            written += 1
    return written
