"""The stream clock: which frame times can be believed.

Decisions take their time from the frames, so a frame's timestamp is input like any other and
can be hostile: NaN or infinite (a TRC offset of ``nan``), a single frame stamped 10^18, a clock
that jumps.  The clock admits a frame's time only when it is finite and within
``max_jump_s`` of the stream's time so far; a frame beyond that is rejected and counted rather
than moving the clock.  A real change of time base (a logger restarted an hour later) is
followed once ``confirm`` frames in a row agree on it.  Which frames of one message are older
than the latest of that message (dropped, as Android Automotive drops older property events)
is the frame decoder's check, per message.
"""

from __future__ import annotations

from collections.abc import Callable

# Reasons a frame is rejected for its time: the keys of ``FrameDecoder.rejected``.
TIME_NOT_FINITE = "time-not-finite"
TIME_JUMP = "time-jump"
OUT_OF_ORDER = "out-of-order"

# On a live bus frames come every few ms; a log may pause (a logger restarted).  A jump past
# this is not believed from one frame: a bus silent this long is stale in every signal anyway.
DEFAULT_MAX_JUMP_S = 10.0
# Frames in a row, each within CONFIRM_WINDOW_S of the one before, that establish a new time base.
DEFAULT_CONFIRM = 3
CONFIRM_WINDOW_S = 1.0


class StreamClock:
    """The latest believable frame time of one stream, and the frames refused for their time."""

    __slots__ = ("_pending", "_pending_count", "confirm", "max_jump", "on_rebase", "rejected", "time")

    def __init__(
        self,
        rejected: dict[str, int],
        on_rebase: Callable[[float], None] | None = None,
        *,
        max_jump_s: float = DEFAULT_MAX_JUMP_S,
        confirm: int = DEFAULT_CONFIRM,
    ) -> None:
        self.time: float | None = None
        self.rejected = rejected  # shared with the decoder: reason -> count
        self.on_rebase = on_rebase
        self.max_jump = max_jump_s
        self.confirm = confirm
        self._pending: float | None = None
        self._pending_count = 0

    @property
    def settled(self) -> bool:
        """Whether the clock has a time and no jump is waiting for confirmation: from here on,
        its time after each frame is the running maximum of the frame times, as long as each
        is finite and within ``max_jump`` of it."""
        return self.time is not None and self._pending is None

    def admit(self, t: float) -> float | None:
        """The stream's time after a frame stamped ``t``, or None when ``t`` is refused (and counted)."""
        if t - t != 0.0:  # NaN or infinite
            self.rejected[TIME_NOT_FINITE] = self.rejected.get(TIME_NOT_FINITE, 0) + 1
            return None
        now = self.time
        if now is None:
            self.time = t
            return t
        if now - self.max_jump <= t <= now + self.max_jump:
            self._pending = None
            if t > now:
                self.time = t
                return t
            return now
        return self._jump(t)

    def _jump(self, t: float) -> float | None:
        pending = self._pending
        if pending is not None and abs(t - pending) <= CONFIRM_WINDOW_S:
            self._pending_count += 1
        else:
            self._pending_count = 1
        self._pending = t
        if self._pending_count < self.confirm:
            self.rejected[TIME_JUMP] = self.rejected.get(TIME_JUMP, 0) + 1
            return None
        # Enough frames agree: this is the stream's time now.
        self._pending = None
        self.time = t
        if self.on_rebase is not None:
            self.on_rebase(t)
        return t
