"""Append-only files for the decision log: through a shared memory map, or with ``write``.

Both put each record into the kernel's page cache before returning, so a record survives
the death of the process (not a power cut: for that, ``fsync``).  They differ in cost:

* :class:`MappedAppender` copies the record into a ``MAP_SHARED`` mapping of the file: no
  system call per record (about 0.2 µs, against 1.3 µs and a 5-7 µs p99 for ``write`` on
  this machine).  The file is grown a window (4 MiB) at a time, and the window's pages are
  faulted in when it is mapped (``MADV_POPULATE_WRITE``), so no record takes a page fault;
  the record that opens a window pays for all of them at once (a few milliseconds, once
  per several thousand records: past the p99.9 of ``decide``, where a smaller window
  would put it).
  While the file is open it ends in up to one window of NUL bytes beyond the last record;
  :meth:`close` trims them, and so does the next open after a crash.  One writer per file
  (an exclusive ``flock``).
* :class:`WriteAppender` is one ``write`` per record on an ``O_APPEND`` descriptor: no
  padding, several writers may share a file, ``tail -f`` works.

Either way a record cut short by a crash mid-copy is left as one bad line: the next open
starts a fresh line after it (readers skip lines they cannot parse, see ``summarize``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import sys
from typing import Protocol

from safety.errors import LogInUseError

WINDOW_BYTES = 4 << 20
# A file system that cannot reserve blocks (posix_fallocate says so): map as before.
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})
_PAGE = mmap.PAGESIZE
# Linux 5.14+: fault a range in for writing now, rather than page by page on first write.
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23) if sys.platform.startswith("linux") else None


class Appender(Protocol):
    """Where decision records go: ``size`` bytes so far; ``append`` one whole record."""

    size: int

    def append(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class WriteAppender:
    """One ``write`` per record on an ``O_APPEND`` descriptor."""

    def __init__(self, path: str, *, fsync: bool = False, truncate: bool = False) -> None:
        self.fsync = fsync
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd = os.open(path, flags, 0o640)
        self._cut = False
        self.size = _end_of_records(self._fd)

    def append(self, data: bytes) -> None:
        if self._cut:  # the last record was cut short (a full disk): end its line first
            os.write(self._fd, b"\n")
            self._cut = False
        written = os.write(self._fd, data)
        try:
            while written < len(data):  # short writes happen only on full disks and signals
                written += os.write(self._fd, data[written:])
        except OSError:
            self._cut = True  # part of a record is in the file: one bad line, never two records merged
            raise
        if self.fsync:
            os.fsync(self._fd)
        self.size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MappedAppender:
    """Records copied into a shared mapping of the file, a window at a time."""

    def __init__(self, path: str, *, fsync: bool = False, truncate: bool = False) -> None:
        self.fsync = fsync
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0), 0o640)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LogInUseError(f"{path}: another process is writing this decision log") from None
        except OSError:  # no locks on this file system: DecisionLog falls back to write()
            os.close(self._fd)
            raise
        self.size = _end_of_records(self._fd)
        self._map: mmap.mmap | None = None
        self._start = 0  # file offset of the mapping
        self._end = 0  # file offset where the mapping ends
        try:
            self._remap(self.size, 0)  # fails here, at open, on a file system that cannot map
        except BaseException:
            os.close(self._fd)
            raise

    def append(self, data: bytes) -> None:
        n = len(data)
        at = self.size
        if at + n > self._end:
            self._remap(at, n)
        assert self._map is not None
        offset = at - self._start
        self._map[offset : offset + n] = data
        self.size = at + n
        if self.fsync:
            first = offset - offset % _PAGE
            self._map.flush(first, offset + n - first)

    def _remap(self, at: int, n: int) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        start = at - at % _PAGE
        needed = max(_PAGE, -(-(at + n - start) // _PAGE) * _PAGE)
        length = max(WINDOW_BYTES, needed)
        # Reserve the window's blocks before mapping it: a mapped page with no block behind it
        # is SIGBUS on a full disk, which no handler survives.  Short of space for a whole
        # window, reserve what this record needs; short of that, ENOSPC is an error the log
        # counts and reports (and the next record tries again).
        try:
            os.posix_fallocate(self._fd, start, length)
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or length == needed:
                    raise
                length = needed
                os.posix_fallocate(self._fd, start, length)
        os.ftruncate(self._fd, start + length)  # the mapping must not reach past the end of the file
        self._map = mmap.mmap(self._fd, length, offset=start)
        if _POPULATE_WRITE is not None:
            # An older kernel refuses: pages then fault in as they are first written.
            with contextlib.suppress(OSError):
                self._map.madvise(_POPULATE_WRITE)
        self._start, self._end = start, start + length

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._map is not None:
            self._map.close()
            self._map = None
        os.ftruncate(self._fd, self.size)  # drop the padding past the last record
        os.close(self._fd)
        self._fd = -1


def _end_of_records(fd: int) -> int:
    """Trim what a crash left past the last record; return the size, ending with a newline.

    A mapped file may end in NUL padding (trimmed); a record cut short (no final newline)
    is closed with one so that the next record starts a line of its own.
    """
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        stripped = block.rstrip(b"\0")
        if stripped:
            end = start + len(stripped)
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    if end and os.pread(fd, 1, end - 1) != b"\n":
        os.pwrite(fd, b"\n", end)
        end += 1
    return end
