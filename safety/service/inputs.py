"""CAN input of the service: a python-can bus read on its own thread, or a log replayed onto an
in-process virtual bus.

The bus thread only feeds the engine and the live clock; it never touches a client socket, so
no client can slow it down.  Both inputs end in the same :class:`BusReader`, so a replay goes
through python-can exactly as a car's bus does.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can

from ..engine import Engine
from ..errors import LogFormatError
from ..logs import read_log
from .clock import LiveClock
from .protocol import ServiceError

# The replay's receive queue: bounded so memory is; a full queue blocks the player (python-can's
# virtual bus never drops), so frames are delayed, never lost.
REPLAY_QUEUE = 65536
_RECV_TIMEOUT_S = 0.1  # how often the reader looks at its stop flag
# The player sleeps once it is this far ahead of the log's schedule.  Between sleeps it holds
# the GIL, and a request arriving meanwhile waits: 0.3 ms is about 3 frames of a saturated
# 1 Mbit/s bus (some 30 µs of work); sleeping only when a millisecond ahead made bursts 3x longer.
_PACE_S = 0.0003


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
    ids = sorted({(src.frame_id, src.is_extended) for src in engine.profile.sources.values()})
    return [
        {"can_id": frame_id, "can_mask": 0x1FFFFFFF if extended else 0x7FF, "extended": extended}
        for frame_id, extended in ids
    ]


def open_bus(spec: BusSpec, engine: Engine) -> can.BusABC:
    """Open the car's bus with kernel filters for the mapped ids; ``ServiceError`` if it cannot."""
    try:
        bus: can.BusABC = can.Bus(
            interface=spec.interface, channel=spec.channel, can_filters=kernel_filters(engine), **spec.options
        )
    except Exception as exc:  # python-can raises many kinds here; all mean "cannot open"
        raise ServiceError(f"cannot open the CAN bus {spec}: {type(exc).__name__}: {exc}", code="bus-open") from exc
    return bus


class _PlayedMessage(can.Message):
    """The player's frame.  python-can's virtual bus deep-copies every frame it sends (once per
    receiver), and can.Message's generic ``__deepcopy__`` is most of a send's cost (about 7 µs
    here).  This makes the same independent ``can.Message`` field by field in about 1 µs: less
    time holding the GIL on the bus side, so less waiting on the socket side."""

    __slots__ = ()

    def __deepcopy__(self, memo: Any) -> can.Message:
        copy = can.Message.__new__(can.Message)
        copy.timestamp = self.timestamp
        copy.arbitration_id = self.arbitration_id
        copy.is_extended_id = self.is_extended_id
        copy.is_remote_frame = self.is_remote_frame
        copy.is_error_frame = self.is_error_frame
        copy.channel = self.channel
        copy.dlc = self.dlc
        copy.data = bytearray(self.data)
        copy.is_fd = self.is_fd
        copy.is_rx = self.is_rx
        copy.bitrate_switch = self.bitrate_switch
        copy.error_state_indicator = self.error_state_indicator
        return copy


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
        bus, on_frame, mark, stop, lag = self.bus, self.engine.on_frame, self.clock.mark, self._stop, self.lag
        sent_at = self.sent_at
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
            arrived = monotonic()
            if msg.is_error_frame:
                self.error_frames += 1
            on_frame(msg)
            if sent_at is None:
                late = lag.observe(msg.timestamp, arrived)
            else:
                late = arrived - sent_at.popleft() if sent_at else 0.0
            self.last_lag = late
            if late > self.max_lag:
                self.max_lag = late
            mark(msg.timestamp, arrived - late)
            self.frames += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.bus.shutdown()


class ReplayPlayer:
    """Plays a log onto an in-process virtual bus from a thread, paced by its timestamps.

    ``speed`` 1 is real time, 20 twenty times faster, 0 as fast as possible.  With ``loop``
    the log starts over, its timestamps shifted by the log's length plus one mean frame gap so
    time keeps increasing and the engine sees one long drive.  Frames on other channels than
    the profile's, error and remote frames are skipped, as in ``drivegate replay --virtual``.
    """

    def __init__(
        self,
        log: str | Path,
        channel: str | None,
        speed: float = 1.0,
        loop: bool = False,
        on_log_error: Callable[[LogFormatError], None] | None = None,
        nice: int = 0,
    ) -> None:
        self.log = log
        self.nice = nice
        self.channel = channel
        self.speed = speed
        self.loop = loop
        self.on_log_error = on_log_error
        # The virtual bus carries the profile's channel name, as in the car (the virtual bus
        # stamps it on every frame, and a profile may insist on it).
        self.bus_name = channel or "drivegate-replay"
        self.tx = can.Bus(interface="virtual", channel=self.bus_name, preserve_timestamps=True)
        # The receiving side, for a BusReader.
        self.rx = can.Bus(interface="virtual", channel=self.bus_name, rx_queue_size=REPLAY_QUEUE)
        self.frames_sent = 0
        # When each frame went onto the bus, in bus order: the reader's exact lag (BusReader).
        self.sent_at: deque[float] = deque()
        self.skipped = 0
        self.passes = 0  # completed passes over the log
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._play, name="drivegate-replay", daemon=True)
        # Fail before the server listens when the log cannot be opened at all.
        read_log(log, on_error=self._log_error)

    def _log_error(self, error: LogFormatError) -> None:
        if self.on_log_error is not None:
            self.on_log_error(error)

    def start(self) -> None:
        self._thread.start()

    def backlog(self) -> int:
        """Frames sent and not yet read by the engine's thread."""
        queue = getattr(self.rx, "queue", None)  # python-can's VirtualBus keeps its receive queue here
        return 0 if queue is None else int(queue.qsize())

    def _play(self) -> None:
        lower_priority(self.nice)
        try:
            offset = 0.0
            origin: tuple[float, float] | None = None
            msg = _PlayedMessage(is_extended_id=False, check=False)
            while not self._cancel.is_set():
                first = last = None
                count = 0
                for frame in read_log(self.log, on_error=self._log_error):
                    if self._cancel.is_set():
                        return
                    if (
                        frame.is_error_frame
                        or frame.is_remote_frame
                        or (self.channel is not None and frame.channel is not None and frame.channel != self.channel)
                    ):
                        self.skipped += 1
                        continue
                    t = frame.timestamp + offset
                    if first is None:
                        first = frame.timestamp
                    last = frame.timestamp
                    count += 1
                    if self.speed > 0:
                        # Pacing reads the wall clock: this is the car, not the engine.
                        if origin is None:
                            origin = (t, time.monotonic())
                        delay = origin[1] + (t - origin[0]) / self.speed - time.monotonic()
                        if delay > _PACE_S:
                            time.sleep(delay)
                    # One message object for every frame: the virtual bus sends a copy.
                    msg.timestamp = t
                    msg.arbitration_id = frame.arbitration_id
                    msg.is_extended_id = frame.is_extended_id
                    msg.data = bytearray(frame.data)
                    msg.dlc = len(frame.data)
                    msg.is_fd = len(frame.data) > 8
                    self.sent_at.append(time.monotonic())  # before send: the reader may take it at once
                    self.tx.send(msg)
                    self.frames_sent += 1
                self.passes += 1
                if not self.loop or first is None or last is None:
                    return
                gap = (last - first) / (count - 1) if count > 1 else 0.01
                offset += last - first + gap
        except BaseException as exc:  # reported in status; the bus falls silent and decisions fail closed
            self.error = exc
        finally:
            self.done.set()

    def stop(self) -> None:
        self._cancel.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=2)
        self.tx.shutdown()
