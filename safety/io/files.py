"""Opening log files: fail early and name the file; gzip recognised by its magic bytes, not its name."""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path
from typing import IO, BinaryIO, cast

from safety.errors import Location, LogFormatError

GZIP_MAGIC = b"\x1f\x8b"

#: What reading a log file, gzipped or not, can raise when the file is damaged: I/O errors,
#: gzip's own (``BadGzipFile`` is an ``OSError``, a cut member ``EOFError``) and zlib's for a
#: corrupt deflate stream, which is neither.
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)

#: No line of a text CAN log comes near this; a longer "line" is not a log (a gzip of one byte
#: repeated holds a gigabyte in a megabyte): reading stops there rather than hold it.
MAX_LINE_CHARS = 1 << 20


def check_file(path: str | Path) -> bool:
    """Fail early, naming the file, if it cannot be read; return whether it is gzip-compressed."""
    file = str(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise LogFormatError("is a directory, expected a log file", Location(file=file))
        if st.st_size == 0:
            raise LogFormatError("file is empty", Location(file=file))
        with open(path, "rb") as f:
            gz = f.read(2) == GZIP_MAGIC
        if gz:
            with gzip.open(path, "rb") as g:
                if not g.read(1):
                    raise LogFormatError("file is empty (after gunzip)", Location(file=file))
    except FileNotFoundError:
        raise LogFormatError("no such file", Location(file=file)) from None
    except READ_ERRORS as exc:  # permission denied, corrupt gzip header or stream, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LogFormatError(f"cannot read the file: {reason}", Location(file=file)) from None
    return gz


def open_text(path: str | Path, gz: bool, encoding: str = "utf-8") -> IO[str]:
    # errors="replace": a stray non-UTF-8 byte becomes a bad line reported at its place instead
    # of a UnicodeDecodeError that would end the file.
    if gz:
        return gzip.open(path, "rt", encoding=encoding, errors="replace")
    return open(path, encoding=encoding, errors="replace")


def open_binary(path: str | Path, gz: bool) -> BinaryIO:
    if gz:
        return cast("BinaryIO", gzip.open(path, "rb"))
    return open(path, "rb")


class BoundedLines:
    """The lines of a text file, read no more than :data:`MAX_LINE_CHARS` at a time.

    Iterating over a file reads each line whole, however long; here a line longer than the
    limit raises :class:`LogFormatError` at its number once the limit is read.  ``line`` is the
    number of the last line given (1 for the first).
    """

    def __init__(self, file: IO[str], name: str = "") -> None:
        self._file = file
        self.name = name  # for errors
        self.line = 0

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = self._file.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.line += 1
        if len(line) > MAX_LINE_CHARS and line[-1] != "\n":
            raise LogFormatError(
                f"line is longer than {MAX_LINE_CHARS} characters; not a text CAN log",
                Location(file=self.name, line=self.line),
            )
        return line

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed
