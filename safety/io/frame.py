"""The frame every log reader yields, and what all readers share (error reporting, CAN limits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from safety.errors import Location, LogFormatError


class Frame(NamedTuple):
    """One CAN frame as read from a log."""

    timestamp: float  # seconds, as in the log (absolute where the format has it)
    arbitration_id: int
    is_extended_id: bool
    data: bytes
    channel: str | None  # e.g. "can0"; None when the format has none
    is_error_frame: bool = False
    is_remote_frame: bool = False
    is_fd: bool = False  # a CAN FD frame
    bitrate_switch: bool = False  # CAN FD: the data phase at the higher bit rate (BRS)
    error_state_indicator: bool = False  # CAN FD: the sender is error passive (ESI)


ErrorHandler = Callable[[LogFormatError], None]


def channel_name(number: int) -> str:
    """The name of python-can's channel ``number`` (``can0``; BLF's channel 0 comes as ``can-1``)."""
    return f"can{number}"

CAN_ERR_FLAG = 0x20000000  # SocketCAN's error-frame flag, which candump prints as part of the id
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x7FF
FD_LENGTHS = frozenset((0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64))
HEX_DIGITS = "0123456789abcdefABCDEF"


# No CAN log has this many blank lines in a row; a gzip of nothing but newlines (1 MB holds
# 1 GiB of them) would otherwise keep a reader busy for minutes without a frame or an error.
MAX_BLANK_LINES = 1_000_000


def blank_run_error(file: str, line: int) -> LogFormatError:
    """The error that ends reading after :data:`MAX_BLANK_LINES` blank lines in a row."""
    return LogFormatError(
        f"{MAX_BLANK_LINES} blank lines in a row: not a CAN log (a decompression bomb?); reading stopped",
        Location(file=file, line=line),
    )


def reporter(on_error: ErrorHandler | None) -> ErrorHandler:
    """``on_error`` itself, or (strict mode, ``None``) a handler that raises the first error."""
    if on_error is not None:
        return on_error

    def strict(error: LogFormatError) -> None:
        raise error

    return strict


def show(text: str, limit: int = 60) -> str:
    """``repr`` of a piece of input, shortened so one bad line cannot flood the error list."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def is_hex(text: str) -> bool:
    return text.isascii() and not text.strip(HEX_DIGITS)
