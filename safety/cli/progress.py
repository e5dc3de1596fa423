"""Progress on a terminal for long commands: one line on stderr, rewritten at most 5 times a second.

Quiet when stderr is not a terminal or with ``--quiet``.  Reads the wall clock, which is the
command's business (how often to redraw), never a decision's.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done)`` redraws ``label: done unit`` (with the total and percent when known)."""

    def __init__(self, label: str, *, total: int | None = None, unit: str = "frames", quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.label, self.total, self.unit = label, total, unit
        self._last = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        text = f"{self.label}: {done:,} {self.unit}"
        if self.total:
            text += f" of {self.total:,} ({100 * done / self.total:.0f} %)"
        self.stream.write(f"\r{text}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
