"""Live time for the service: frame time that keeps moving while the bus is silent.

The engine never reads a clock: its time is the latest frame's timestamp.  In a replay that
is right; in a running car it is not, because a bus that falls silent would freeze time at its
last frame and the last state would stay fresh for ever.  The service therefore asks the engine
at ``now = last_frame_time + (monotonic() - monotonic_at_last_frame)``: between frames time
advances with the monotonic clock, so signals go stale after their ``max_age_ms`` of silence and
every decision fails closed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class LiveClock:
    """Frame time anchored to the last frame, advancing with a monotonic clock in between.

    ``mark`` is called on the bus thread for every frame; ``now`` on the event loop.  The
    anchor is one tuple, replaced in a single assignment, so the two need no lock.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._anchor: tuple[float, float] | None = None
        self._last = -math.inf

    def mark(self, frame_time: float, arrived: float | None = None) -> None:
        """A frame with timestamp ``frame_time`` arrived at monotonic time ``arrived`` (default:
        now).  A reader that fell behind passes the frame's estimated arrival, so the time it
        lost counts as age."""
        self._anchor = (frame_time, self._monotonic() if arrived is None else arrived)

    @property
    def last_frame_time(self) -> float | None:
        anchor = self._anchor
        return None if anchor is None else anchor[0]

    def now(self) -> float | None:
        """The current time in the frames' time base; None before the first frame.

        Never steps back: a frame stamped a little before the time already given out (a
        replay slower than real time, jitter between senders) holds the clock still until
        frame time catches up, so a state that went stale cannot come back from the past.
        """
        anchor = self._anchor
        if anchor is None:
            return None
        t = anchor[0] + (self._monotonic() - anchor[1])
        if t < self._last:
            return self._last
        self._last = t
        return t
