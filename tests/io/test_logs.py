"""``safety.io.logs`` on real recorded CAN logs, checked against python-can's own readers.

Every format is read from the real files in ../shared/data and compared frame by frame with what
python-can gives for the same file; bad inputs are written to tmp_path.  No mocks.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import io
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.errors import Location, LogFormatError
from safety.io import candump as candump_module
from safety.io.logs import SUPPORTED_FORMATS, Frame, iter_candump, log_format, read_log

DATA = SHARED
PCAN = DATA / "python-can_test_data"
RAV4_2017_LOG = DATA / "comma2k19_rav4_2017" / "comma2k19_rav4_2018-08-02_seg40.log.gz"
TSS2 = DATA / "verifiedcan_rav4_tss2"
DRIVE_LOG = TSS2 / "rav4_2020-02-03_drive.log.gz"
DRIVE_CSV = TSS2 / "2020-02-03-14-31-11-510096__CAN_Message_.csv"
STEER_LOG = TSS2 / "rav4_2020-03-02_steering.log.gz"
STEER_CSV = TSS2 / "2020-03-02-12-54-30-482889__CAN_Messages.csv"
MF4_DIR = DATA / "css_electronics_mf4"

HAVE_ASAMMDF = importlib.util.find_spec("asammdf") is not None
CANDUMP_SHAPE = "expected '(timestamp) interface id#data' and an optional R or T"


def need(path: Path) -> Path:
    """The shared data file, or skip the test when the shared data is absent."""
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


def frame_of(msg: can.Message, *, has_channel: bool = True) -> Frame:
    """What read_log should give for a python-can Message (channel N -> "canN")."""
    channel = msg.channel
    if not has_channel or channel is None:
        name = None
    elif isinstance(channel, int):
        name = f"can{channel}"
    else:
        name = str(channel)
    return Frame(
        float(msg.timestamp),
        msg.arbitration_id,
        msg.is_extended_id,
        bytes(msg.data),
        name,
        msg.is_error_frame,
        msg.is_remote_frame,
        bool(msg.is_fd),
        bool(msg.bitrate_switch),
        bool(msg.error_state_indicator),
    )


def assert_same_frames(ours: list[Frame], expected: list[Frame], tolerance: float = 1e-6) -> None:
    """Same frames in the same order; timestamps within ``tolerance`` seconds."""
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert abs(a.timestamp - b.timestamp) <= tolerance, (i, a, b)
        assert a._replace(timestamp=0.0) == b._replace(timestamp=0.0), (i, a, b)


def read_all(path: Path | str) -> tuple[list[Frame], list[LogFormatError]]:
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    return frames, errors


def gzip_copy(src: Path, dest: Path) -> Path:
    with src.open("rb") as fin, gzip.open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest


def gunzip_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="ascii") as f:
        return f.readlines()


# --------------------------------------------------------------------------- format detection


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("drive.log", "candump"),
        ("drive.LOG.GZ", "candump"),
        ("a.b.log.gz", "candump"),
        ("x.asc", "asc"),
        ("x.asc.gz", "asc"),
        ("x.blf", "blf"),
        ("x.trc", "trc"),
        ("x.MF4", "mf4"),
        ("x.mf4.gz", "mf4"),
    ],
)
def test_log_format_by_suffix(name: str, fmt: str) -> None:
    assert log_format(name) == fmt
    assert fmt in SUPPORTED_FORMATS


def test_log_format_tells_csv_dialects_by_header(tmp_path: Path) -> None:
    assert log_format(need(DRIVE_CSV)) == "panda-csv"
    assert log_format(need(STEER_CSV)) == "panda-csv"
    own = tmp_path / "own.csv"
    own.write_text("timestamp,arbitration_id,extended,remote,error,dlc,data\n")
    assert log_format(own) == "csv"
    gz = tmp_path / "panda.csv.gz"
    gz.write_bytes(gzip.compress(b"Time,Bus,MessageID,Message,MessageLength\n1.5,0,180,00,1\n"))
    assert log_format(gz) == "panda-csv"


@pytest.mark.parametrize(
    ("name", "found"), [("drive.txt", "suffix '.txt'"), ("drive", "no suffix"), ("drive.gz", "no suffix")]
)
def test_unknown_suffix_lists_the_supported_ones(tmp_path: Path, name: str, found: str) -> None:
    path = tmp_path / name
    path.write_text("(1.000000) can0 123#00\n")
    for call in (log_format, read_log):
        with pytest.raises(LogFormatError) as info:
            call(path)
        assert info.value.location == Location(file=str(path))
        assert info.value.message == (
            f"unknown log format: found {found}, expected one of .log (candump -L), .asc (Vector ASCII), "
            ".blf (Vector binary), .trc (PEAK), .csv (python-can or panda), .mf4 (ASAM MDF 4); "
            "each may be gzipped (.gz)"
        )


# --------------------------------------------------------------------------- candump


@pytest.mark.parametrize(("path", "count"), [(RAV4_2017_LOG, 135_468), (DRIVE_LOG, 68_178), (STEER_LOG, 42_867)])
def test_candump_equals_python_can_frame_by_frame(path: Path, count: int) -> None:
    ours, errors = read_all(need(path))
    assert errors == []
    expected = [frame_of(m) for m in can.LogReader(path)]
    assert len(ours) == count
    assert_same_frames(ours, expected)
    # Same text, same float(): not just within 1 µs but bit for bit.
    assert [f.timestamp for f in ours] == [f.timestamp for f in expected]


def test_candump_plain_gz_and_lines_agree(tmp_path: Path) -> None:
    lines = gunzip_lines(need(RAV4_2017_LOG))
    plain = tmp_path / "rav4.log"
    plain.write_text("".join(lines))
    misnamed = tmp_path / "really_gzipped.log"  # compression is found by content, not by name
    misnamed.write_bytes(RAV4_2017_LOG.read_bytes())
    from_gz = list(read_log(RAV4_2017_LOG))
    assert list(read_log(plain)) == from_gz
    assert list(read_log(str(misnamed))) == from_gz
    assert list(iter_candump(lines)) == from_gz
    assert list(iter_candump(line.rstrip("\n") for line in lines)) == from_gz


def test_candump_without_final_newline_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("\n(1.000000) can0 0B4#01 R\n\n   \n(2.500000) vcan1 1FFFFFFF#\n(3.000000) can0 7FF#0102")
    assert list(read_log(path)) == [
        Frame(1.0, 0xB4, False, b"\x01", "can0"),
        Frame(2.5, 0x1FFFFFFF, True, b"", "vcan1"),
        Frame(3.0, 0x7FF, False, b"\x01\x02", "can0"),
    ]


def test_candump_special_frames() -> None:
    lines = [
        "(0.000001) can0 123#R",
        "(0.000002) can0 123#R8 T",
        "(0.000003) can1 12345678#r",
        "(0.000004) can0 123##1" + "AB" * 12,
        "(0.000005) can0 1ABCDEF0##0" + "00" * 64,
        "(0.000006) can0 20000004#0004000000000000",  # CAN_ERR_FLAG | CAN_ERR_CRTL
        "(0.000007) can0 123#1122334455667788_C",
        "(0.000008) can0 123##3",
    ]
    assert list(iter_candump(lines)) == [
        Frame(0.000001, 0x123, False, b"", "can0", False, True),
        Frame(0.000002, 0x123, False, b"", "can0", False, True),
        Frame(0.000003, 0x12345678, True, b"", "can1", False, True),
        # CAN FD: the flags digit after "##" is BRS (1) and ESI (2), carried on the frame.
        Frame(0.000004, 0x123, False, b"\xab" * 12, "can0", is_fd=True, bitrate_switch=True),
        Frame(0.000005, 0x1ABCDEF0, True, bytes(64), "can0", is_fd=True),
        Frame(0.000006, 0x4, True, bytes.fromhex("0004000000000000"), "can0", True, False),
        Frame(0.000007, 0x123, False, bytes.fromhex("1122334455667788"), "can0"),
        Frame(0.000008, 0x123, False, b"", "can0", is_fd=True, bitrate_switch=True, error_state_indicator=True),
    ]


def test_candump_error_frames_from_python_can_writer(tmp_path: Path) -> None:
    # python-can writes error frames as "20000080#" (bus error).  Its reader turns them into an
    # id-0 frame without a channel; ours keeps the error class and the channel.
    path = tmp_path / "err.log"
    with can.CanutilsLogWriter(path) as writer:
        writer.on_message_received(can.Message(timestamp=5.0, is_error_frame=True, channel="can0"))
    assert list(read_log(path)) == [Frame(5.0, 0x80, True, b"", "can0", True, False)]
    assert [m.arbitration_id for m in can.LogReader(path)] == [0]


BAD_CANDUMP_LINES = [
    ("this is not a frame", f"malformed candump line: found 'this is not a frame', {CANDUMP_SHAPE}"),
    ("(1.000000) can0", f"malformed candump line: found '(1.000000) can0', {CANDUMP_SHAPE}"),
    ("(1.000000) can0 123#00 X", "bad direction flag: found 'X', expected 'R' or 'T'"),
    (
        "1.000000 can0 123#00",
        "bad timestamp: found '1.000000', expected '(seconds.fraction)' such as '(1580765471.675426)'",
    ),
    (
        "(1.0.0) can0 123#00",
        "bad timestamp: found '(1.0.0)', expected '(seconds.fraction)' such as '(1580765471.675426)'",
    ),
    ("(nan) can0 123#00", "bad timestamp: found '(nan)', expected '(seconds.fraction)' such as '(1580765471.675426)'"),
    ("(1.000000) can0 123-00", "bad frame: found '123-00', expected id#data such as '0B4#0102030405060708'"),
    ("(1.000000) can0 12#00", "bad CAN id: found '12', expected 3 hex digits (11-bit) or 8 hex digits (29-bit)"),
    ("(1.000000) can0 0x1#00", "bad CAN id: found '0x1', expected 3 hex digits (11-bit) or 8 hex digits (29-bit)"),
    ("(1.000000) can0 800#00", "bad CAN id: found '800', expected an 11-bit id of at most 7FF"),
    (
        "(1.000000) can0 40000000#00",
        "bad CAN id: found '40000000', expected a 29-bit id of at most 1FFFFFFF (or the error flag 20000000)",
    ),
    ("(1.000000) can0 123#0G", "bad data: found '0G', expected pairs of hex digits"),
    ("(1.000000) can0 123#012", "bad data: found '012', expected pairs of hex digits"),
    (
        "(1.000000) can0 123#001122334455667788",
        "bad data length: found 9 bytes, expected at most 8 for classic CAN (CAN FD uses '##')",
    ),
    (
        "(1.000000) can0 123##1" + "00" * 9,
        "bad CAN FD data length: found 9 bytes, expected 0-8, 12, 16, 20, 24, 32, 48 or 64",
    ),
    ("(1.000000) can0 123##", "bad CAN FD flags: found '#', expected '#' and one hex digit after 'id#'"),
    ("(1.000000) can0 123#R9", "bad remote frame: found 'R9', expected 'R' and an optional DLC digit 0-8"),
    ("(1.000000) can0 123#0011_C", "bad DLC suffix: found '123#0011_C', expected 8 data bytes, '_' and a DLC 9-F"),
]


@pytest.mark.parametrize(("line", "message"), BAD_CANDUMP_LINES)
def test_candump_bad_line_is_reported_at_its_place(tmp_path: Path, line: str, message: str) -> None:
    good = gunzip_lines(need(DRIVE_LOG))[:1000]
    path = tmp_path / "drive.log"
    path.write_text("".join(good[:500]) + line + "\n" + "".join(good[500:]))
    frames, errors = read_all(path)
    assert [str(e) for e in errors] == [f"{path}:501: log-format: {message}"]
    assert errors[0].location == Location(file=str(path), line=501)
    assert frames == list(iter_candump(good))  # every frame before and after is kept
    assert len(frames) == 1000

    # Strict mode: the frames before the bad line come out, then the error is raised.
    got: list[Frame] = []
    with pytest.raises(LogFormatError) as info:
        got.extend(read_log(path))
    assert str(info.value) == f"{path}:501: log-format: {message}"
    assert got == frames[:500]


def test_iter_candump_reports_with_filename_and_line() -> None:
    errors: list[LogFormatError] = []
    lines = ["(1.000000) can0 123#00", "garbage", "(2.000000) can0 124#01"]
    frames = list(iter_candump(lines, filename="drive.log", on_error=errors.append))
    assert frames == [Frame(1.0, 0x123, False, b"\x00", "can0"), Frame(2.0, 0x124, False, b"\x01", "can0")]
    assert [str(e) for e in errors] == [
        f"drive.log:2: log-format: malformed candump line: found 'garbage', {CANDUMP_SHAPE}"
    ]


def test_candump_truncated_gz_keeps_the_frames_before(tmp_path: Path) -> None:
    raw = need(DRIVE_LOG).read_bytes()
    path = tmp_path / "cut.log.gz"
    path.write_bytes(raw[: len(raw) // 2])
    frames, errors = read_all(path)
    assert len(errors) == 1
    assert errors[0].location.file == str(path)
    assert "the file is truncated or corrupt" in errors[0].message
    assert errors[0].location.line == len(frames) + 1  # the log has no blank lines
    assert 20_000 < len(frames) < 68_178
    assert frames == list(read_log(DRIVE_LOG))[: len(frames)]


# --------------------------------------------------------------------------- candump property tests

CHANNELS = st.sampled_from(["can0", "can1", "vcan0", "slcan12", "any0"])
MICROS = st.integers(min_value=0, max_value=2**53 - 1).map(lambda us: us / 1e6)
FD_LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]


@st.composite
def frames(draw: st.DrawFn, kinds: tuple[str, ...] = ("data", "remote", "error", "fd")) -> Frame:
    kind = draw(st.sampled_from(kinds))
    extended = draw(st.booleans())
    arbitration_id = draw(st.integers(0, 0x1FFFFFFF if extended else 0x7FF))
    timestamp, channel = draw(MICROS), draw(CHANNELS)
    if kind == "remote":
        return Frame(timestamp, arbitration_id, extended, b"", channel, False, True)
    if kind == "error":
        return Frame(timestamp, draw(st.integers(0, 0x1FFFFFFF)), True, draw(st.binary(max_size=8)), channel, True)
    if kind == "fd":
        size = draw(st.sampled_from(FD_LENGTHS))
        data = draw(st.binary(min_size=size, max_size=size))
        brs, esi = draw(st.booleans()), draw(st.booleans())
        return Frame(
            timestamp,
            arbitration_id,
            extended,
            data,
            channel,
            is_fd=True,
            bitrate_switch=brs,
            error_state_indicator=esi,
        )
    return Frame(timestamp, arbitration_id, extended, draw(st.binary(max_size=8)), channel)


def candump_line(frame: Frame, flag: str = "", fd_extra: int = 0) -> str:
    """A tiny candump -L writer, independent of the parser under test."""
    if frame.is_error_frame:
        ident = f"{0x20000000 | frame.arbitration_id:08X}"
    elif frame.is_extended_id:
        ident = f"{frame.arbitration_id:08X}"
    else:
        ident = f"{frame.arbitration_id:03X}"
    if frame.is_remote_frame:
        body = "R"
    elif frame.is_fd:
        # linux/can.h: CANFD_BRS 1, CANFD_ESI 2; other bits of the digit carry nothing we read.
        fd_flags = int(frame.bitrate_switch) | int(frame.error_state_indicator) << 1 | fd_extra
        body = f"#{fd_flags:X}{frame.data.hex().upper()}"
    else:
        body = frame.data.hex().upper()
    line = f"({frame.timestamp:.6f}) {frame.channel} {ident}#{body}"
    return f"{line} {flag}" if flag else line


@settings(max_examples=300, deadline=None)
@given(frame=frames(), flag=st.sampled_from(["", "R", "T"]), fd_extra=st.sampled_from([0, 4, 8, 12]))
def test_any_frame_written_as_candump_reads_back_identically(frame: Frame, flag: str, fd_extra: int) -> None:
    line = candump_line(frame, flag, fd_extra)
    assert list(iter_candump([line])) == [frame]
    assert list(iter_candump([line + "\n"])) == [frame]


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(frames(), min_size=1, max_size=40)
    | st.lists(frames(("data",)), min_size=1, max_size=40)
    | st.lists(frames(("data",)).filter(lambda f: not f.is_extended_id), min_size=1, max_size=40),
    flag=st.sampled_from(["", "T"]),
)
def test_blocks_of_frames_read_back_identically(
    tmp_path_factory: pytest.TempPathFactory, batch: list[Frame], flag: str
) -> None:
    # Blocks of plain data frames take the column-wise fast path, blocks with remote, FD or
    # error frames the line-by-line path; both must give the frames written, from a file too.
    lines = [candump_line(f, flag) + "\n" for f in batch]
    assert list(iter_candump(lines)) == batch
    path = tmp_path_factory.mktemp("blocks") / "batch.log"
    path.write_text("".join(lines))
    assert list(read_log(path)) == batch


MUTATION_CHARS = [*"()#.RTrt_xX -+0123456789abcdefABCDEFG\t\n", "", "٣", "(1.000000)", "##1", "20000000"]


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(frames(("data",)), min_size=1, max_size=12),
    flag=st.sampled_from(["", "R"]),
    mutations=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(MUTATION_CHARS)), max_size=3),
)
def test_fast_paths_accept_exactly_what_the_careful_parser_accepts(
    batch: list[Frame], flag: str, mutations: list[tuple[int, str]]
) -> None:
    # White-box: the column-wise block parser and the per-line quick path (ids seen before)
    # must give what the careful line parser gives, or step aside, on any damaged input.
    text = "".join(candump_line(f, flag) + "\n" for f in batch)
    for position, replacement in mutations:
        position %= len(text)
        text = text[:position] + replacement + text[position + 1 :]
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    candump_module._ID_VALUES.clear()
    careful = [candump_module._parse_candump_line(line) for line in lines]
    block = candump_module._candump_block_fast(text)  # learns the ids it accepts
    if block is not None:
        assert block == careful
    for frame in batch:
        width = 8 if frame.is_extended_id else 3
        candump_module._ID_VALUES[f"{frame.arbitration_id:0{width}X}"] = frame.arbitration_id
    assert [candump_module._parse_candump_line(line) for line in lines] == careful
    errors: list[LogFormatError] = []
    parsed = list(iter_candump(lines, on_error=errors.append))
    assert parsed == [r for r in careful if isinstance(r, Frame)]
    assert [e.message for e in errors] == [r for r in careful if isinstance(r, str)]


# --------------------------------------------------------------------------- python-can formats

TEXT_FIXTURES = sorted(p.name for p in PCAN.glob("*.asc")) + sorted(p.name for p in PCAN.glob("*.trc"))
BLF_FIXTURES = sorted(p.name for p in PCAN.glob("*.blf"))


def python_can_expected(path: Path) -> list[Frame]:
    """python-can's frames for ``path``, as read_log should give them."""
    if path.suffix == ".asc" or path.name.endswith(".asc.gz"):
        # read_log gives absolute ASC times; python-can does so with relative_timestamp=False.
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as f:
            return [frame_of(m) for m in can.ASCReader(f, relative_timestamp=False)]
    reader = can.LogReader(path)
    messages = list(reader)
    has_channel = True
    if isinstance(reader, can.TRCReader):  # python-can invents channel 1 when a TRC file has none
        has_channel = "B" in reader.columns or reader.file_version.name == "V1_3"
    return [frame_of(m, has_channel=has_channel) for m in messages]


@pytest.mark.parametrize("name", [*TEXT_FIXTURES, *BLF_FIXTURES, "test_CanMessage.asc.gz"])
def test_python_can_formats_equal_python_can(name: str) -> None:
    path = need(PCAN / name)
    ours, errors = read_all(path)
    assert errors == []
    assert ours, "every fixture has frames"
    assert_same_frames(ours, python_can_expected(path))


@pytest.mark.parametrize("name", [n for n in TEXT_FIXTURES if n.endswith(".asc")])
def test_asc_times_are_python_can_relative_times_plus_the_start(name: str) -> None:
    path = need(PCAN / name)
    ours = list(read_log(path))
    relative = [m.timestamp for m in can.LogReader(path)]
    starts = {round(a.timestamp - r, 6) for a, r in zip(ours, relative, strict=True)}
    assert len(starts) == 1
    assert starts.pop() > 1e9  # a wall-clock start was added


def test_trc_channels() -> None:
    assert {f.channel for f in read_log(need(PCAN / "test_CanMessage_V1_0_BUS1.trc"))} == {None}
    assert {f.channel for f in read_log(need(PCAN / "test_CanMessage_V2_1.trc"))} == {"can1"}
    assert {f.channel for f in read_log(need(PCAN / "test_CanMessage.trc"))} == {"can1", "can2"}


@pytest.mark.parametrize(
    "name",
    [
        "logfile.asc",
        "test_CanFdMessage64.asc",
        "test_CanMessage_V2_1.trc",
        "test_CanMessage_V1_1.trc",
        "test_CanFdMessage64.blf",
        "issue_1905.blf",
    ],
)
def test_gzipped_python_can_formats_read_the_same(tmp_path: Path, name: str) -> None:
    path = need(PCAN / name)
    gz = gzip_copy(path, tmp_path / f"drive.2020.{name}.gz")  # three suffixes: can.LogReader refuses it
    assert list(read_log(gz)) == list(read_log(path))


def test_asc_written_by_python_can_keeps_its_absolute_time(tmp_path: Path) -> None:
    # python-can's ASCWriter writes the start's milliseconds unpadded (5 ms as ".5"), which its
    # reader takes as 500 ms.  read_log reads such a start as milliseconds.
    start = 1_700_000_000.005123
    path = tmp_path / "written.asc"
    with can.ASCWriter(path) as writer:
        for dt in (0.0, 1.5):
            writer.on_message_received(can.Message(timestamp=start + dt, arbitration_id=0x123, data=b"\x01"))
    ours = [f.timestamp for f in read_log(path)]
    assert ours == pytest.approx([start, start + 1.5], abs=1e-3)  # the start has ms resolution
    theirs = [m.timestamp for m in can.ASCReader(path, relative_timestamp=False)]
    assert theirs[0] - start > 0.49  # python-can's own round trip is off by ~0.5 s


ASC_HEADER = "date Sam Sep 30 15:06:13.191 2017\nbase hex  timestamps absolute\ninternal events logged\n"


def test_asc_unreadable_start_time_is_reported_and_times_stay_relative(tmp_path: Path) -> None:
    path = tmp_path / "odd_locale.asc"
    path.write_text(
        "date Sat Septembre 30 15h06 2017\nbase hex  timestamps absolute\ninternal events logged\n"
        "   2.501000 1  123             Rx   d 1 01\nEnd TriggerBlock\n"
    )
    frames, errors = read_all(path)
    assert frames == [Frame(2.501, 0x123, False, b"\x01", "can0")]
    assert [str(e) for e in errors] == [
        f"{path}:1: log-format: cannot read the ASC start time 'Septembre 30 15h06 2017', expected e.g. "
        "'Sat Sep 30 15:06:13.191 2017'; timestamps are relative to the measurement start"
    ]
    with pytest.raises(LogFormatError):
        list(read_log(path))


def test_asc_dlc_mismatch_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "short.asc"
    path.write_text(
        ASC_HEADER + "Begin Triggerblock Sam Sep 30 15:06:13.191 2017\n"
        "   2.501000 1  123             Rx   d 8 01 02 03 04\n"
        "   2.502000 1  124             Rx   d 2 01 02\n"
        "End TriggerBlock\n"
    )
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x124]
    assert [str(e) for e in errors] == [
        f"{path}:5: log-format: DLC/length mismatch in frame 1 (id 0x123): found 4 data bytes, expected 8 from DLC 8"
    ]


def test_python_can_failure_mid_file_keeps_the_frames_before(tmp_path: Path) -> None:
    path = tmp_path / "bad.asc"
    path.write_text(
        ASC_HEADER + "Begin Triggerblock Sam Sep 30 15:06:13.191 2017\n"
        "   2.501000 1  123             Rx   d 1 01\n"
        "   2.502000 1  124             Rx   d 1 ZZ\n"
        "   2.503000 1  125             Rx   d 1 03\n"
    )
    frames, errors = read_all(path)
    assert [f.arbitration_id for f in frames] == [0x123]
    assert [(e.location, e.message.split(":")[0]) for e in errors] == [
        (Location(file=str(path), line=6), "python-can's ASC reader failed after 1 frames")
    ]


def test_corrupt_blf_is_a_log_format_error_naming_the_file(tmp_path: Path) -> None:
    raw = need(PCAN / "issue_1905.blf").read_bytes()
    cut = tmp_path / "cut.blf"
    cut.write_bytes(raw[:-30])  # python-can fails on the last object header
    frames, errors = read_all(cut)
    assert frames == list(read_log(PCAN / "issue_1905.blf"))
    assert [str(e) for e in errors] == [
        f"{cut}: log-format: python-can's BLF reader failed after 22 frames: "
        "error: unpack requires a buffer of 16 bytes"
    ]
    cut.write_bytes(raw[:-200])  # python-can stops quietly inside the compressed container
    frames, errors = read_all(cut)
    assert len(frames) == 13
    assert [str(e) for e in errors] == [
        f"{cut}: log-format: file is truncated: its header says 524 bytes, found 324; frames after frame 13 are lost"
    ]
    not_blf = tmp_path / "not.blf"
    not_blf.write_bytes(b"this is not a binary logging file at all" * 4)
    frames, errors = read_all(not_blf)
    assert frames == []
    assert [str(e) for e in errors] == [
        f"{not_blf}: log-format: python-can cannot open it as BLF: BLFParseError: Unexpected file format"
    ]


# --------------------------------------------------------------------------- MF4


@pytest.mark.skipif(not HAVE_ASAMMDF, reason="asammdf not installed (pip install drivegate[mf4])")
@pytest.mark.parametrize(
    "name", ["gnss_2F6913DB_00001089_00000001-63BEF5CD.MF4", "j1939_FCBF0606_00003482_00000001-60B621D9.MF4"]
)
def test_mf4_equals_python_can(tmp_path: Path, name: str) -> None:
    path = need(MF4_DIR / name)
    ours, errors = read_all(path)
    assert errors == []
    assert_same_frames(ours, [frame_of(m) for m in can.LogReader(path)])
    assert list(read_log(gzip_copy(path, tmp_path / f"{name}.gz"))) == ours


@pytest.mark.skipif(HAVE_ASAMMDF, reason="asammdf is installed")
def test_mf4_without_asammdf_says_what_to_install() -> None:
    path = need(MF4_DIR / "gnss_2F6913DB_00001089_00000001-63BEF5CD.MF4")
    assert log_format(path) == "mf4"
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert str(info.value) == (
        f"{path}: log-format: reading MF4 logs needs the asammdf package: pip install drivegate[mf4]"
    )


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(("csv_path", "log_path"), [(DRIVE_CSV, DRIVE_LOG), (STEER_CSV, STEER_LOG)])
def test_panda_csv_equals_its_candump_conversion(tmp_path: Path, csv_path: Path, log_path: Path) -> None:
    ours, errors = read_all(need(csv_path))
    assert errors == []
    assert_same_frames(ours, list(read_log(need(log_path))), tolerance=1e-6)
    gz = gzip_copy(csv_path, tmp_path / (csv_path.name + ".gz"))
    assert list(read_log(gz)) == ours


def panda_rows(path: Path, count: int) -> list[str]:
    with path.open(newline="") as f:
        return [next(f) for _ in range(count)]


def test_panda_csv_bad_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    rows = panda_rows(need(DRIVE_CSV), 11)  # header + 10 frames, CRLF line ends as in the file
    bad = [
        "1580765471.7,0,170,29772970296c,8\r\n",  # MessageLength says 8, 6 bytes given
        "1580765471.8,0,1x0,00,1\r\n",
        "1580765471.9,zero,170,00,1\r\n",
        "1580765472.0,0,170,0g,1\r\n",
        "1580765472.1,0,170\r\n",
        "soon,0,170,00,1\r\n",
        "1580765472.2,0,4000000000,00,1\r\n",
    ]
    path = tmp_path / "panda.csv"
    path.write_text("".join(rows[:6] + bad + rows[6:]), newline="")
    frames, errors = read_all(path)
    assert frames == list(read_log(DRIVE_CSV))[:10]
    file = str(path)
    assert [str(e) for e in errors] == [
        f"{file}:7: log-format: DLC/length mismatch: found 6 data bytes, expected 8 (MessageLength)",
        f"{file}:8: log-format: bad MessageID: found '1x0', expected a whole decimal number",
        f"{file}:9: log-format: bad Bus: found 'zero', expected a whole decimal number",
        f"{file}:10: log-format: bad Message: found '0g', expected pairs of hex digits",
        f"{file}:11: log-format: bad row: found 3 fields, expected 5 as in the header",
        f"{file}:12: log-format: bad Time: found 'soon', expected a number of seconds",
        f"{file}:13: log-format: bad MessageID: found 0xee6b2800, expected a 29-bit id of at most 0x1fffffff",
    ]


def test_panda_csv_extended_ids_and_buses(tmp_path: Path) -> None:
    path = tmp_path / "ext.csv"
    path.write_text("Time,Buffer,Bus,MessageID,Message,MessageLength\n1.5,00,2,419361024,0102,2\n2.5,00,128,2047,,0\n")
    assert list(read_log(path)) == [
        Frame(1.5, 419361024, True, b"\x01\x02", "can2"),
        Frame(2.5, 0x7FF, False, b"", "can128"),
    ]


def python_can_messages() -> list[can.Message]:
    """Real RAV4 frames plus the kinds python-can's CSV also stores."""
    messages = list(can.LogReader(need(DRIVE_LOG)))[:2000]
    return [
        *messages,
        can.Message(timestamp=1580765600.25, arbitration_id=0x18FEF100, is_extended_id=True, data=b"\x01\x02"),
        can.Message(timestamp=1580765600.5, arbitration_id=0x7DF, is_extended_id=False, is_remote_frame=True, dlc=8),
        can.Message(timestamp=1580765600.75, is_error_frame=True),
    ]


def test_python_can_csv_equals_python_can(tmp_path: Path) -> None:
    path = tmp_path / "own.csv"
    with can.CSVWriter(path) as writer:
        for msg in python_can_messages():
            writer.on_message_received(msg)
    ours, errors = read_all(path)
    assert errors == []
    expected = [frame_of(m, has_channel=False) for m in can.LogReader(path)]
    assert len(expected) == 2003
    assert_same_frames(ours, expected, tolerance=0.0)
    gz = gzip_copy(path, tmp_path / "own.csv.gz")
    assert list(read_log(gz)) == ours


def test_python_can_csv_bad_rows(tmp_path: Path) -> None:
    data = base64.b64encode(b"\x01\x02").decode()
    path = tmp_path / "own.csv"
    path.write_text(
        "timestamp,arbitration_id,extended,remote,error,dlc,data\n"
        f"1.0,0x123,0,0,0,2,{data}\n"
        f"2.0,0x123,0,0,0,3,{data}\n"
        "3.0,0x123,0,0,0,2,not base64!\n"
        f"4.0,0x123,yes,0,0,2,{data}\n"
        f"5.0,0x800,0,0,0,2,{data}\n"
        f"6.0,0x1,1,0,0,2,{data}\n"
    )
    frames, errors = read_all(path)
    assert frames == [Frame(1.0, 0x123, False, b"\x01\x02", None), Frame(6.0, 1, True, b"\x01\x02", None)]
    file = str(path)
    assert [str(e) for e in errors] == [
        f"{file}:3: log-format: DLC/length mismatch: found 2 data bytes, expected 3 (the dlc column)",
        f"{file}:4: log-format: bad data: found 'not base64!', expected base64 as python-can's CSVWriter writes it",
        f"{file}:5: log-format: bad extended: found 'yes', expected 0 or 1",
        f"{file}:6: log-format: bad arbitration_id: found 0x800, expected a 11-bit id of at most 0x7ff",
    ]


@pytest.mark.parametrize(
    "header", ["Time,Bus,MessageID,Message", "timestamp,id,data", "Time,Bus,MessageID,Message,MessageLength,Extra", ""]
)
def test_csv_with_foreign_columns_is_refused_at_line_1(tmp_path: Path, header: str) -> None:
    path = tmp_path / "other.csv"
    path.write_text(f"{header}\n1.0,0,180,0000,2\n" if header else "\n1.0,0,180,0000,2\n")
    expected = (
        f"{path}:1: log-format: unknown CSV columns: found {header or '(no header)'}, expected "
        "timestamp,arbitration_id,extended,remote,error,dlc,data (python-can) or "
        "Time,Bus,MessageID,Message,MessageLength or Time,Buffer,Bus,MessageID,Message,MessageLength (panda)"
    )
    for call in (log_format, read_log):
        with pytest.raises(LogFormatError) as info:
            call(path)
        assert str(info.value) == expected


# --------------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize("name", ["empty.log", "empty.csv", "empty.asc", "empty.blf", "empty.trc"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert str(info.value) == f"{path}: log-format: file is empty"


def test_empty_gz_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert str(info.value) == f"{path}: log-format: file is empty (after gunzip)"


def test_missing_file(tmp_path: Path) -> None:
    for name in ("missing.log", "missing.csv", "missing.asc.gz"):
        path = tmp_path / name
        with pytest.raises(LogFormatError) as info:
            read_log(path)
        assert str(info.value) == f"{path}: log-format: no such file"
    with pytest.raises(LogFormatError, match="no such file"):
        log_format(tmp_path / "missing.csv")


def test_directory_and_bad_gzip(tmp_path: Path) -> None:
    folder = tmp_path / "folder.log"
    folder.mkdir()
    with pytest.raises(LogFormatError) as info:
        read_log(folder)
    assert str(info.value) == f"{folder}: log-format: is a directory, expected a log file"
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 3)
    with pytest.raises(LogFormatError) as info:
        read_log(bad)
    assert info.value.location == Location(file=str(bad))
    assert info.value.message.startswith("cannot read the file:")


def test_binary_garbage_as_candump(tmp_path: Path) -> None:
    path = tmp_path / "garbage.log"
    path.write_bytes(bytes(range(256)) * 4)
    frames, errors = read_all(path)
    assert frames == []
    assert errors and all(e.location.file == str(path) and e.location.line >= 1 for e in errors)


def stream(lines: Iterable[str]) -> Iterator[str]:
    yield from lines


def test_iter_candump_takes_any_iterable_of_lines() -> None:
    text = "(1.000000) can0 123#00\n(2.000000) can0 124#01\n"
    expected = [Frame(1.0, 0x123, False, b"\x00", "can0"), Frame(2.0, 0x124, False, b"\x01", "can0")]
    assert list(iter_candump(io.StringIO(text))) == expected
    assert list(iter_candump(stream(text.splitlines()))) == expected
    assert list(iter_candump([])) == []


def test_frame_is_a_plain_named_tuple() -> None:
    frame = Frame(1.0, 0x123, False, b"\x00", "can0")
    assert frame == (1.0, 0x123, False, b"\x00", "can0", False, False, False, False, False)
    fields: Any = Frame._fields
    assert fields == (
        "timestamp",
        "arbitration_id",
        "is_extended_id",
        "data",
        "channel",
        "is_error_frame",
        "is_remote_frame",
        "is_fd",
        "bitrate_switch",
        "error_state_indicator",
    )
