"""Logs nobody should have to trust: corrupt compression and the like (found by tools/fuzz.py).

Each is read leniently (``on_error`` collecting) and strictly: never anything but a
``LogFormatError`` naming the file, and the frames before the damage are kept.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import with_peak_memory

from safety.errors import LogFormatError
from safety.io.frame import Frame
from safety.io.logs import read_log
from safety.io.write import write_frames

FRAMES = [Frame(1.0 + i * 0.01, 0x0B4, False, bytes([i % 256] * 8), "can0") for i in range(3000)]


def corrupt_deflate(path: Path) -> None:
    """Flip bytes inside the compressed stream (past the header), as a bad disk or transfer would."""
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 8):
        data[offset] ^= 0xA5
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix", [".log.gz", ".csv.gz", ".asc.gz", ".trc.gz"])
def test_a_corrupt_gzip_stream_is_a_log_error_with_the_frames_before_it_kept(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"drive{suffix}"
    write_frames(path, FRAMES)
    corrupt_deflate(path)
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    assert 0 < len(frames) < len(FRAMES)
    assert [f.data for f in frames[:100]] == [f.data for f in FRAMES[:100]]
    # Garbled lines may come first (each at its line); reading stops at the damage, said last.
    assert errors and all(e.location.file == str(path) and e.location.line > 0 for e in errors)
    assert any(word in errors[-1].message for word in ("corrupt", "CRC check failed", "reader failed")), errors[-1]
    with pytest.raises(LogFormatError):
        list(read_log(path, on_error=None))


# tools/fuzz.py's first find (target logs): a gzip member whose first deflate block is corrupt
# ("invalid distance too far back") gave zlib.error from read_log itself.
FUZZ_CRASH_1 = base64.b64decode(
    "H4sICKQWEWsC/3NlZWQubG9nANIw1DMAA02F5MQ8AwU3C0NXN0MDA2WgkKGBkYGxgYmBqYGZgTmXBlClIZJKAycT7IqMiDbOmBjjTIgu"
    "zpSQcQAAAAD//wMAV5O9RO0AAAA="
)


def test_a_gzip_whose_first_block_is_corrupt_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "drive.log.gz"
    path.write_bytes(FUZZ_CRASH_1)
    with pytest.raises(LogFormatError) as caught:
        read_log(path, on_error=[].append)
    assert str(caught.value) == (
        f"{path}: log-format: cannot read the file: Error -3 while decompressing data: invalid distance too far back"
    )


def _asc_with(tmp_path: Path, stamp: str) -> Path:
    path = tmp_path / "drive.asc"
    write_frames(path, FRAMES[:5])
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(" 0.020000"))
    lines[index] = lines[index].replace("0.020000", stamp, 1)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", "NaN"])
def test_an_asc_frame_stamped_nan_or_inf_is_reported_not_dropped_silently(tmp_path: Path, stamp: str) -> None:
    """#11 item 7: python-can's ASC reader skips such a line as if it were a comment."""
    path = _asc_with(tmp_path, stamp)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f" {stamp} "))
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    assert len(frames) == 4
    assert [str(e) for e in errors] == [
        f"{path}:{line}: log-format: bad timestamp: found {stamp!r}, expected seconds such as 0.020000; frame skipped"
    ]
    with pytest.raises(LogFormatError) as caught:
        list(read_log(path, on_error=None))
    assert str(caught.value) == str(errors[0])


def test_a_trc_frame_at_offset_inf_is_refused_and_counted_and_replay_ends(tmp_path: Path) -> None:
    """#11 item 7: a TRC offset of inf looped forever in replay; the stream clock refuses it now."""
    from conftest import DEFAULT_POLICY, DEMO_VEHICLE

    from safety import Engine
    from safety.replay.timeline import BUILTIN_PROBES, replay_file

    path = tmp_path / "drive.trc"
    write_frames(path, FRAMES[:5])
    text = path.read_text().replace("      2        20.000 DT", "      2           inf DT")
    path.write_text(text)
    summary = replay_file(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY), path, BUILTIN_PROBES, None)
    assert (summary.frames_read, summary.frames_rejected) == (5, {"time-not-finite": 1})


@pytest.mark.parametrize("suffix", [".log.gz", ".asc.gz", ".trc.gz"])
def test_a_gzip_of_blank_lines_stops_at_a_million_in_a_row(tmp_path: Path, suffix: str) -> None:
    """#11 item 7: a 1 MB gzip of 1 GiB of blank lines ran for minutes with no progress.  No log
    has a million blank lines in a row: reading stops there, with the frames before kept."""
    import gzip
    import time

    path = tmp_path / f"bomb{suffix}"
    head = tmp_path / f"head{suffix.removesuffix('.gz')}"
    write_frames(head, FRAMES[:3])
    with gzip.open(path, "wb") as out:
        out.write(head.read_bytes())
        for _ in range(40):
            out.write(b"\n" * 100_000)  # 4 million blank lines (4 MB, 4 kB gzipped)
        out.write(b"(9.0) can0 0B4#00\n")
    errors: list[LogFormatError] = []
    began = time.monotonic()
    frames = list(read_log(path, on_error=errors.append))
    assert time.monotonic() - began < 30  # not a timing test: a hang would take minutes
    assert len(frames) == 3
    (error,) = errors
    assert error.message == "1000000 blank lines in a row: not a CAN log (a decompression bomb?); reading stopped"


ENDLESS_LINE = 256 * 1024 * 1024  # characters of one "line" with no end, 256 KiB gzipped


@pytest.mark.parametrize("suffix", [".asc.gz", ".trc.gz", ".csv.gz", ".asc", ".csv"])
def test_a_line_without_end_stops_reading_without_holding_it(tmp_path: Path, suffix: str) -> None:
    """Reproduced first: python-can's ASC and TRC readers and the CSV reader take a text log a
    whole line at a time, so a 'line' of 256 MiB with no newline (256 KiB gzipped) was held in
    memory whole (a 2 GiB one takes a head unit's memory).  Reading stops at the line instead,
    having held no more than the limit, with the frames before kept."""
    import gzip
    head = tmp_path / f"head{suffix.removesuffix('.gz')}"
    write_frames(head, FRAMES[:3])
    lines = head.read_bytes().count(b"\n")
    path = tmp_path / f"endless{suffix}"
    with gzip.open(path, "wb") if suffix.endswith(".gz") else path.open("wb") as out:
        out.write(head.read_bytes())
        chunk = b"a" * (16 * 1024 * 1024)
        for _ in range(ENDLESS_LINE // len(chunk)):
            out.write(chunk)
    errors: list[LogFormatError] = []
    frames, peak = with_peak_memory(lambda: list(read_log(path, on_error=errors.append)))
    assert peak < 32 * 1024 * 1024, f"reading it held {peak / 2**20:.0f} MiB"
    from safety.io.files import MAX_LINE_CHARS

    assert frames == list(read_log(head)) and len(frames) == 3
    assert [str(e) for e in errors] == [
        f"{path}:{lines + 1}: log-format: line is longer than {MAX_LINE_CHARS} characters; not a text CAN log"
    ]


# --- found by a fuzzing review of the text readers (2026-12-08), each reproduced first ---

ASC_HEAD = (
    "date Tue Dec 08 02:17:58.533 2026\nbase hex  timestamps absolute\ninternal events logged\n"
    "Begin Triggerblock Thu Jan 01 00:00:01.0 1970\n 0.000000 Start of measurement\n"
)


@pytest.mark.parametrize(
    ("can_id", "problem"),
    [
        ("1FFFFFFFFFx", "bad id: found 0x1fffffffff, expected at most 0x1fffffff (29 bits)"),
        ("1FFFFFFFFF", "bad id: found 0x1fffffffff, expected at most 0x1fffffff (29 bits)"),
        ("FFFFFFFFFFFF", "bad id: found 0xffffffffffff, expected at most 0x1fffffff (29 bits)"),
    ],
)
def test_an_asc_id_beyond_can_is_reported_and_both_readers_go_on(tmp_path: Path, can_id: str, problem: str) -> None:
    """python-can reads any hex number as an id: 2**32 and more made the columnar reading raise
    OverflowError (the default replay crashed).  No CAN id has more than 29 bits."""
    from safety.io.columns import read_columns

    path = tmp_path / "ids.asc"
    path.write_text(
        ASC_HEAD + f" 0.000000 2  123             Rx   d 2 01 02\n 0.010000 2  {can_id:<15} Rx   d 2 01 02\n"
        " 0.020000 2  124             Rx   d 2 01 02\nEnd TriggerBlock\n"
    )
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    assert [f.arbitration_id for f in frames] == [0x123, 0x124]
    assert [str(e) for e in errors] == [f"{path}:7: log-format: {problem}"]
    column_errors: list[LogFormatError] = []
    columns = [f for b in read_columns(path, on_error=column_errors.append) for f in b.frames(range(len(b)))]
    assert columns == frames and [str(e) for e in column_errors] == [str(e) for e in errors]


@pytest.mark.parametrize("field", ["dlc", "arbitration_id"])
def test_a_csv_number_of_thousands_of_digits_is_a_bad_field(tmp_path: Path, field: str) -> None:
    """Python's int() refuses strings over 4,300 digits with ValueError, which escaped."""
    values = {"dlc": "2", "arbitration_id": "0x123"}
    values[field] = "9" * 5000
    path = tmp_path / "digits.csv"
    path.write_text(
        "timestamp,arbitration_id,extended,remote,error,dlc,data\n"
        f"1.0,0x123,0,0,0,2,AQI=\n2.0,{values['arbitration_id']},0,0,0,{values['dlc']},AQI=\n3.0,0x124,0,0,0,2,AQI=\n"
    )
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    assert [f.arbitration_id for f in frames] == [0x123, 0x124]
    assert len(errors) == 1 and errors[0].location.line == 3, [str(e) for e in errors]


def test_a_csv_row_that_never_ends_stops_reading(tmp_path: Path) -> None:
    """A quoted field goes on across lines; the csv module bounds a field, not the fields of a
    row: 31 M lines of '","' (122 KB gzipped) grew one row to gigabytes."""
    import gzip
    path = tmp_path / "endless.csv.gz"
    with gzip.open(path, "wb") as out:
        out.write(b'timestamp,arbitration_id,extended,remote,error,dlc,data\n1.0,0x123,0,0,0,2,AQI=\n"\n')
        for _ in range(30):
            out.write(b'","\n' * 100_000)
    errors: list[LogFormatError] = []
    frames, peak = with_peak_memory(lambda: list(read_log(path, on_error=errors.append)))
    assert peak < 64 * 1024 * 1024, f"reading it held {peak / 2**20:.0f} MiB"
    assert [f.arbitration_id for f in frames] == [0x123]
    assert [str(e) for e in errors] == [
        f"{path}:3: log-format: a row goes on for more than 10000 lines (a quote that never closes?); reading stopped"
    ]


def test_a_csv_of_blank_lines_stops_at_a_million_in_a_row(tmp_path: Path) -> None:
    """268 M blank lines in 261 KB of gzip took 68 s and ended without a word."""
    import gzip

    path = tmp_path / "blank.csv.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"timestamp,arbitration_id,extended,remote,error,dlc,data\n1.0,0x123,0,0,0,2,AQI=\n")
        for _ in range(12):
            out.write(b"\n" * 100_000)
        out.write(b"2.0,0x124,0,0,0,2,AQI=\n")
    errors: list[LogFormatError] = []
    frames = list(read_log(path, on_error=errors.append))
    assert [f.arbitration_id for f in frames] == [0x123]
    assert [str(e) for e in errors] == [
        f"{path}:1000002: log-format: 1000000 blank lines in a row: not a CAN log (a decompression bomb?); reading stopped"
    ]


def test_a_candump_block_with_one_very_long_line_is_not_read_as_a_matrix(tmp_path: Path) -> None:
    """The numpy block reader laid lines of a few lengths out as an n x longest matrix: one line
    of 200,000 characters among 40,000 made it allocate gigabytes (read_log: 142 MB)."""
    from safety.io.columns import read_columns

    lines = [f"(1.{i:06d}) can0 123#0011\n" for i in range(40_000)]
    lines[20_000] = "(1.020000) can0 123#" + "00" * 100_000 + "\n"
    path = tmp_path / "long.log"
    path.write_text("".join(lines))
    errors: list[LogFormatError] = []
    frames, peak = with_peak_memory(lambda: sum(len(b) for b in read_columns(path, on_error=errors.append)))
    assert peak < 128 * 1024 * 1024, f"reading it held {peak / 2**20:.0f} MiB"
    assert frames == 39_999 and len(errors) == 1


def test_a_trc_columns_line_of_thousands_of_names_is_refused_quickly(tmp_path: Path) -> None:
    """python-can looks each TRC column up in the $COLUMNS list, quadratic in its length: 120,000
    names in an 850 KB file took over a minute.  The format has 12 columns."""
    import time

    path = tmp_path / "columns.trc"
    names = ",".join(f"c{i}" for i in range(120_000))
    path.write_text(f";$FILEVERSION=2.1\n;$STARTTIME=25569.000011574073\n;$COLUMNS={names}\n")
    errors: list[LogFormatError] = []
    began = time.monotonic()
    frames = list(read_log(path, on_error=errors.append))
    assert time.monotonic() - began < 30, "not a timing test: it took minutes"
    assert frames == []
    assert [str(e) for e in errors] == [
        f"{path}:3: log-format: $COLUMNS names 120000 columns, expected at most 64 (TRC has 12)"
    ]
