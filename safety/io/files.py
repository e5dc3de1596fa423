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
