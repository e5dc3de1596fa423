"""CSV logs (``.csv``): python-can's CSVWriter dialect and comma's panda/strym dialect, told apart by the header."""

from __future__ import annotations

import base64
import binascii
import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from safety.errors import Location, LogFormatError
from safety.io.files import READ_ERRORS, BoundedLines, open_text
from safety.io.frame import (
    CAN_EFF_MASK,
    CAN_SFF_MASK,
    MAX_BLANK_LINES,
    ErrorHandler,
    Frame,
    blank_run_error,
    channel_name,
    is_hex,
    show,
)

# Column sets, lower-cased.  python-can's CSVWriter: timestamp (float), arbitration_id (hex, "0x"),
# extended/remote/error ("1"/"0"), dlc (decimal), data (base64).  panda/strym: Time (unix float),
# [Buffer (raw panda bytes, ignored),] Bus (decimal), MessageID (decimal), Message (hex),
# MessageLength (decimal).
_CSV_READ_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, csv.Error)  # csv.Error: e.g. a field too large
_PYTHON_CAN_COLUMNS = ("timestamp", "arbitration_id", "extended", "remote", "error", "dlc", "data")
_PANDA_COLUMNS = ("time", "bus", "messageid", "message", "messagelength")
_PANDA_BUFFER_COLUMNS = ("time", "buffer", "bus", "messageid", "message", "messagelength")


def csv_dialect(path: str | Path, gz: bool, file: str) -> tuple[str, dict[str, int]]:
    """Read the header: ('csv' | 'panda-csv', column name -> index), or raise at file:1."""
    try:
        with open_text(path, gz, "utf-8-sig") as f:
            header = next(csv.reader(BoundedLines(f, file)), [])
    except _CSV_READ_ERRORS as exc:
        raise LogFormatError(f"cannot read the header: {exc}", Location(file=file, line=1)) from None
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


def csv_file(
    path: str | Path, gz: bool, file: str, dialect: str, columns: dict[str, int], report: ErrorHandler
) -> Iterator[Frame]:
    parse = _parse_python_can_row if dialect == "csv" else _parse_panda_row
    channels: dict[str, str] = {}  # one "canN" string per bus, not one per frame
    width = len(columns)
    blank_run = 0
    with open_text(path, gz, "utf-8-sig") as f:
        lines = _RowLines(f, file)
        rows = csv.reader(lines)
        next(rows, None)  # the header, checked by csv_dialect
        while True:
            lines.row_start = lines.line + 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except LogFormatError as exc:  # a line too long to be a log's
                report(exc)
                return
            except _CSV_READ_ERRORS as exc:
                report(
                    LogFormatError(
                        f"cannot read past this line: {exc}; the file is truncated or corrupt",
                        Location(file=file, line=rows.line_num + 1),
                    )
                )
                return
            if not row or (len(row) == 1 and not row[0].strip()):
                blank_run += 1
                if blank_run >= MAX_BLANK_LINES:
                    report(blank_run_error(file, rows.line_num))
                    return
                continue  # blank line
            blank_run = 0
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


# A quoted field goes on across lines; the csv module bounds a field's length, not the fields of
# a row or the lines it spans.  No CAN log's row spans more than a few.
MAX_ROW_LINES = 10_000


class _RowLines(BoundedLines):
    """The lines of a CSV file, stopping a row (from ``row_start``) that spans too many."""

    def __init__(self, file: IO[str], name: str) -> None:
        super().__init__(file, name)
        self.row_start = 1

    def __next__(self) -> str:
        line = super().__next__()
        if self.line - self.row_start >= MAX_ROW_LINES:
            raise LogFormatError(
                f"a row goes on for more than {MAX_ROW_LINES} lines (a quote that never closes?); reading stopped",
                Location(file=self.name, line=self.row_start),
            )
        return line


def _csv_float(name: str, text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return f"bad {name}: found {show(text)}, expected a number of seconds"
    if not math.isfinite(value):
        return f"bad {name}: found {show(text)}, expected a finite number of seconds"
    return value


def _csv_uint(name: str, text: str, base: int = 10) -> int | str:
    body = text.strip()
    if base == 16 and body[:2] in ("0x", "0X"):
        body = body[2:]
    # No field of a CAN frame needs 20 digits; Python's int() refuses over 4,300 with ValueError.
    ok = len(body) <= 20 and (is_hex(body) if base == 16 else body.isascii() and body.isdigit())
    if not body or not ok:
        kind = "a hex number such as 0x1a" if base == 16 else "a whole decimal number"
        return f"bad {name}: found {show(text)}, expected {kind}"
    return int(body, base)


def _check_id(name: str, arbitration_id: int, extended: bool) -> str | None:
    limit = CAN_EFF_MASK if extended else CAN_SFF_MASK
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
            return f"bad {name}: found {show(text)}, expected 0 or 1"
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
        return f"bad data: found {show(text)}, expected base64 as python-can's CSVWriter writes it"
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
        channel = channels[bus_text] = channel_name(bus)
    arbitration_id = _csv_uint("MessageID", row[columns["messageid"]])
    if isinstance(arbitration_id, str):
        return arbitration_id
    # panda has no extended flag: like panda and openpilot, an address above 0x7FF is 29-bit.
    extended = arbitration_id > CAN_SFF_MASK
    if problem := _check_id("MessageID", arbitration_id, extended):
        return problem
    text = row[columns["message"]].strip()
    if len(text) % 2 or not is_hex(text):
        return f"bad Message: found {show(text)}, expected pairs of hex digits"
    data = binascii.a2b_hex(text)
    length = _csv_uint("MessageLength", row[columns["messagelength"]])
    if isinstance(length, str):
        return length
    if len(data) != length:
        return f"DLC/length mismatch: found {len(data)} data bytes, expected {length} (MessageLength)"
    return Frame(timestamp, arbitration_id, extended, data, channel)
