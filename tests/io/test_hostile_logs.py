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
