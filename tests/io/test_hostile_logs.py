"""Logs nobody should have to trust: corrupt compression and the like (found by tools/fuzz.py).

Each is read leniently (``on_error`` collecting) and strictly: never anything but a
``LogFormatError`` naming the file, and the frames before the damage are kept.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

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
    import tracemalloc

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
    tracemalloc.start()
    try:
        frames = list(read_log(path, on_error=errors.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"reading it held {peak / 2**20:.0f} MiB"
    from safety.io.files import MAX_LINE_CHARS

    assert frames == list(read_log(head)) and len(frames) == 3
    assert [str(e) for e in errors] == [
        f"{path}:{lines + 1}: log-format: line is longer than {MAX_LINE_CHARS} characters; not a text CAN log"
    ]
