"""CAN input of the service: a python-can bus read on its own thread (``--bus``).

The bus thread only feeds the engine and the live clock; it never touches a client socket, so
no client can slow it down.  A ``--replay`` (``safety.service.player``) is read on the event
loop instead and ends in the same :meth:`BusReader.handle`, so a replay goes through
python-can exactly as a car's bus does.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import can

from safety.engine.engine import Engine
from safety.errors import ServiceError
from safety.service.clock import LiveClock

_RECV_TIMEOUT_S = 0.1  # how often the reader looks at its stop flag


@dataclass(frozen=True)
class BusSpec:
    """``INTERFACE:CHANNEL[,key=value...]`` from the command line."""

    interface: str
    channel: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f",{k}={v}" for k, v in self.options.items())
        return f"{self.interface}:{self.channel}{extra}"


def parse_bus_spec(text: str) -> BusSpec:
    """Parse ``socketcan:can0`` or ``pcan:PCAN_USBBUS1,bitrate=500000,fd=true``.

    Option values become int, float or bool when they read as one (python-can wants
    ``bitrate=500000`` as a number), and stay strings otherwise.
    """
    head, *options = text.split(",")
    interface, sep, channel = head.partition(":")
    if not sep or not interface or not channel:
        raise ServiceError(f"--bus {text!r}: expected INTERFACE:CHANNEL[,key=value...]", code="bad-bus")
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ServiceError(f"--bus {text!r}: option {option!r} is not key=value", code="bad-bus")
        parsed[key.strip()] = _option_value(value.strip())
    return BusSpec(interface.strip(), channel.strip(), parsed)


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (lambda s: int(s, 0), float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def kernel_filters(engine: Engine) -> list[dict[str, Any]]:
    """python-can filters for the frame ids the profile reads; interfaces that can (SocketCAN,
    most vendor drivers) apply them in the kernel or the adapter, the rest in python-can."""
    exact = sorted({(src.frame_id, src.is_extended) for src in engine.profile.sources.values() if src.pgn is None})
    filters = [
        {"can_id": frame_id, "can_mask": 0x1FFFFFFF if extended else 0x7FF, "extended": extended}
        for frame_id, extended in exact
    ]
    # J1939: a PGN entry is matched by its parameter group, from any priority and (its source
    # list is checked by the engine) any sender: filter on the PGN's bits of the id only.  PDU1
    # (PF < 240) has a destination address where PDU2 has the group extension: not in the PGN.
    for pgn in sorted({src.pgn for src in engine.profile.sources.values() if src.pgn is not None}):
        pdu2 = (pgn >> 8) & 0xFF >= 0xF0
        filters.append({"can_id": pgn << 8, "can_mask": 0x03FFFF00 if pdu2 else 0x03FF0000, "extended": True})
    return filters


def open_bus(spec: BusSpec, engine: Engine) -> can.BusABC:
    """Open the car's bus with kernel filters for the mapped ids; ``ServiceError`` if it cannot."""
    try:
        bus: can.BusABC = can.Bus(
            interface=spec.interface, channel=spec.channel, can_filters=kernel_filters(engine), **spec.options
        )
    except Exception as exc:  # python-can raises many kinds here; all mean "cannot open"
        raise ServiceError(f"cannot open the CAN bus {spec}: {type(exc).__name__}: {exc}", code="bus-open") from exc
    return bus


class LagEstimator:
    """How late frames are read, from their timestamps alone.

    A frame's offset is its arrival (monotonic) minus its timestamp (scaled by ``rate``, the
    speed of the frames' clock against real time: 1 on a car's bus, the speed of a replay).
    Frames read on time share the smallest offset, whatever their clock's epoch; a frame read
    ``L`` seconds late has an offset ``L`` larger.  The smallest offset is taken over the last
    5-10 s so that drift between the clocks cannot build up: a lag that lasts longer than that
    becomes the new normal, and is no longer seen.
    """

    __slots__ = ("_current", "_ends", "_previous", "rate")

    WINDOW_S = 5.0

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._current = math.inf
        self._previous = math.inf
        self._ends = -math.inf

    def observe(self, frame_time: float, arrival: float) -> float:
        """The lag of this frame in seconds (0 for a frame read on time)."""
        offset = arrival - frame_time / self.rate
        if arrival >= self._ends:
            # Two buckets of WINDOW_S: the minimum always covers at least the last WINDOW_S.
            self._previous = self._current if arrival < self._ends + self.WINDOW_S else math.inf
            self._current = math.inf
            self._ends = arrival + self.WINDOW_S
        if offset < self._current:
            self._current = offset
        return offset - min(self._current, self._previous)


def lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` (Linux threads have their own nice
    value; raising it needs no privilege)."""
    if nice <= 0:
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class BusReader:
    """Reads frames from a bus on a thread into the engine, and anchors the live clock on them.

    The clock is anchored at each frame's arrival, not at the moment this thread got to it: when
    the reader falls behind, the state it feeds ages by the lag and goes stale past
    ``max_age_ms``, failing closed instead of passing old frames off as fresh.  The arrival is
    ``sent_at``'s entry for the frame when the sender records it (the replay: exact), else
    estimated from the timestamps (:class:`LagEstimator`; a car's bus).  ``nice`` lowers this
    thread's CPU priority (``drivegate serve --input-nice``).
    """

    def __init__(
        self,
        bus: can.BusABC,
        engine: Engine,
        clock: LiveClock,
        *,
        sent_at: deque[float] | None = None,
        nice: int = 0,
        name: str = "drivegate-bus",
    ) -> None:
        self.bus = bus
        self.engine = engine
        self.clock = clock
        self.sent_at = sent_at
        self.lag = LagEstimator(1.0)
        self.nice = nice
        self.frames = 0  # frames read from the bus, error frames included
        self.error_frames = 0
        self.bus_errors = 0  # exceptions from the interface
        self.last_error = ""
        self.last_lag = 0.0  # seconds, of the latest frame
        self.max_lag = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        lower_priority(self.nice)
        bus, stop = self.bus, self._stop
        monotonic = time.monotonic
        backoff = 0.01
        while not stop.is_set():
            try:
                msg = bus.recv(timeout=_RECV_TIMEOUT_S)
            except Exception as exc:  # an interface error must not end the reader: retry, count, fail closed meanwhile
                self.bus_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.01
            if msg is None:
                continue
            self.handle(msg, monotonic())

    def handle(self, msg: can.Message, arrived: float) -> None:
        """One frame read at ``arrived`` (monotonic): into the engine, and the clock anchored on it."""
        if msg.is_error_frame:
            self.error_frames += 1
        self.engine.on_frame(msg)
        sent_at = self.sent_at
        if sent_at is None:
            late = self.lag.observe(msg.timestamp, arrived)
        else:
            late = arrived - sent_at.popleft() if sent_at else 0.0
        self.last_lag = late
        if late > self.max_lag:
            self.max_lag = late
        self.clock.mark(msg.timestamp, arrived - late)
        self.frames += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.bus.shutdown()
