"""The server's idle strategy: poll briefly for a client's next request before sleeping.

An event loop that finds nothing to do sleeps in ``epoll_wait``; the client's next request then
has to wake it, and a wake-up is a scheduler round trip -- on a VM, where an idle vCPU halts,
40-100 µs, several times what the service takes to decide.  A client deciding again and again
(the middleware re-checking as the drive changes, a burst of list items) sends its next request
tens of microseconds after the last answer.  So, for ``poll_s`` after the last bytes a client
sent, the loop polls instead of sleeping: ``select(0)`` and ``sched_yield`` in turn, so anything
else runnable on this CPU (the bus reader, another process) runs first.  This is the "spin, then
yield, then park" idle strategy of low-latency messaging (Aeron's ``BackoffIdleStrategy``),
bounded so that an idle service sleeps: frames, ticks and timers never start a poll, only client
activity does, so the cost is at most ``poll_s`` of one CPU per request (``drivegate serve
--poll-us``, 0 = never poll).  Measured on the shared 2-core VM under a saturated replay: the
single client's round-trip median halves and its p99 drops by about 100 µs (README).

Not under a real-time scheduling policy: there ``sched_yield`` yields only to tasks of the same
priority, and a poll would hold the CPU against everything below it (:func:`realtime_policy`).
"""

from __future__ import annotations

import math
import os
import selectors
import time
from typing import Any


class PollingSelector(selectors.DefaultSelector):
    """The platform's selector, polling for up to ``poll_s`` after :meth:`client_active`."""

    def __init__(self, poll_s: float) -> None:
        super().__init__()
        self.poll_s = poll_s
        self.poll_until = 0.0  # monotonic: poll rather than sleep until then
        self.polls = 0  # select() calls that polled (status)

    def client_active(self) -> None:
        """A client just sent something: its next request may be microseconds away."""
        if self.poll_s:
            self.poll_until = time.monotonic() + self.poll_s

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)
        start = time.monotonic()
        until = min(self.poll_until, start + (math.inf if timeout is None else timeout))
        if start >= until:  # no client activity lately: sleep, one system call as usual
            return super().select(timeout)
        ready: list[tuple[selectors.SelectorKey, Any]] = super().select(0)
        if ready:
            return ready
        self.polls += 1
        now = start
        while now < until:
            os.sched_yield()
            ready = super().select(0)
            if ready:
                return ready
            now = time.monotonic()
        remaining = None if timeout is None else max(0.0, timeout - (now - start))
        return super().select(remaining)


def realtime_policy() -> str | None:
    """The name of this process's real-time scheduling policy (SCHED_FIFO, SCHED_RR), or None."""
    try:
        policy = os.sched_getscheduler(0)
    except (AttributeError, OSError):  # not Linux, or not allowed to ask: assume the default
        return None
    names = {getattr(os, name, None): name for name in ("SCHED_FIFO", "SCHED_RR")}
    return names.get(policy)
