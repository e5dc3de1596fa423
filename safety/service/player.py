"""``--replay``: a log paced by a child process, played onto the server's in-process virtual bus.

Reading and pacing a log is Python work 9,000 times a second on a saturated bus.  On a
thread of the server it would take the GIL from the socket loop at every frame, and every
system call the loop makes would hand the GIL over and wait to get it back (measured: a
single client's round-trip p99 over 370 µs with the player and reader threads, about 220 µs
without them).  So a child process (``python -m safety.service.player``) reads the log and
writes each frame, when it is due, to a pipe; the server's event loop reads the pipe, sends
each frame onto the python-can virtual bus and takes it off the bus's receiving side in the
same callback, into :meth:`BusReader.handle`.  The frames still go through python-can as a
car's do; the server has no thread for its input.  The child writes the frames that fall due
together in one write (it paces in steps of ``_PACE_S``): one wake-up of the server's loop per
step rather than per frame (measured: the server's CPU with the bus alone 18 % of a core instead
of 28 %, and a single client's median p99 157 instead of 203 µs over four interleaved runs).

Records on the pipe: a header ``<BddII`` (kind, frame time, the child's monotonic time when the
frame fell due, arbitration id or a count, payload length) and the payload.  Kinds: 0 and 1 a
standard / extended frame (payload: data), 2 a pass over the log completed, 3 frames skipped
so far (count), 4 a problem in the log (payload: JSON of the ``LogFormatError``).  Monotonic
time is the same clock in both processes (Linux), so the reader's lag stays exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can

from safety.errors import Location, LogFormatError
from safety.io.logs import read_log

HEADER = struct.Struct("<BddII")
FRAME, FRAME_EXTENDED, PASS, SKIPPED, LOG_ERROR = range(5)
# The replay's receive queue: frames are taken off it as soon as they are sent.
REPLAY_QUEUE = 65536
# The child sleeps once it is this far ahead of the log's schedule.
_PACE_S = 0.0003
# Bytes read from the pipe per callback: about 80 frames, so a flat-out replay (--speed 0)
# still gives the loop back to the sockets every few hundred microseconds.
_READ_BYTES = 2048
# The child writes what it has once this much is waiting (or before it sleeps).
_WRITE_BYTES = 1024


class ReplayPlayer:
    """Plays a log onto an in-process virtual bus, paced by a child process (see the module).

    ``speed`` 1 is real time, 20 twenty times faster, 0 as fast as possible.  With ``loop``
    the log starts over, its timestamps shifted by the log's length plus one mean frame gap so
    time keeps increasing.  Frames on other channels than the profile's, error and remote
    frames are skipped, as in ``drivegate replay --virtual``.
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
        # The virtual bus carries the profile's channel name, as in the car.
        self.bus_name = channel or "drivegate-replay"
        self.tx = can.Bus(interface="virtual", channel=self.bus_name, preserve_timestamps=True)
        self.rx = can.Bus(interface="virtual", channel=self.bus_name, rx_queue_size=REPLAY_QUEUE)
        self.frames_sent = 0
        self.sent_at: deque[float] = deque()  # when each frame was sent (BusReader's exact lag)
        self.skipped = 0
        self.passes = 0  # completed passes over the log
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Fail before the server listens when the log cannot be opened at all (LogFormatError).
        read_log(log, on_error=self.on_log_error or (lambda error: None))

    def start(self, loop: asyncio.AbstractEventLoop, handle: Callable[[can.Message, float], None]) -> None:
        """Start the child; from now on ``loop`` feeds each frame to ``handle(message, arrived)``."""
        args = [sys.executable, "-m", "safety.service.player", str(self.log), self.channel or "", repr(self.speed)]
        self._child = subprocess.Popen([*args, "loop" if self.loop else "once"], stdout=subprocess.PIPE)
        if self.nice > 0:
            # The child stands in for the car's bus, which in a car does not share the CPU.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self._child.pid, min(19, self.nice))
        assert self._child.stdout is not None
        fd = self._child.stdout.fileno()
        os.set_blocking(fd, False)
        self._loop = loop
        msg = _PlayedMessage(is_extended_id=False, check=False)  # one object; the bus sends a copy
        tx, rx, sent_at, monotonic = self.tx, self.rx, self.sent_at, time.monotonic
        buffer, size = self._buffer, HEADER.size

        def on_readable() -> None:
            try:
                chunk = os.read(fd, _READ_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                self._ended(fd)
                return
            buffer.extend(chunk)
            at, end = 0, len(buffer)
            while end - at >= size:
                kind, t, sent, number, n = HEADER.unpack_from(buffer, at)
                if end - at < size + n:
                    break
                payload = buffer[at + size : at + size + n]
                at += size + n
                if kind <= FRAME_EXTENDED:
                    msg.timestamp = t
                    msg.arbitration_id = number
                    msg.is_extended_id = kind == FRAME_EXTENDED
                    msg.data = payload  # a fresh bytearray (a slice); the bus sends a copy
                    msg.dlc = n
                    msg.is_fd = n > 8
                    sent_at.append(sent)
                    tx.send(msg)
                    self.frames_sent += 1
                    received = rx.recv(timeout=0)
                    if received is not None:
                        handle(received, monotonic())
                elif kind == PASS:
                    self.passes += 1
                elif kind == SKIPPED:
                    self.skipped = number
                elif kind == LOG_ERROR and self.on_log_error is not None:
                    self.on_log_error(_log_error(bytes(payload)))
            del buffer[:at]

        loop.add_reader(fd, on_readable)

    def _ended(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.remove_reader(fd)
        child = self._child
        if child is not None and child.wait() != 0 and self.error is None:
            self.error = RuntimeError(f"the replay process exited with status {child.returncode}")
        self.done.set()

    def backlog(self) -> int:
        """Frames sent and not yet read (0: each is read as it is sent)."""
        queue = getattr(self.rx, "queue", None)  # python-can's VirtualBus keeps its receive queue here
        return 0 if queue is None else int(queue.qsize())

    def stop(self) -> None:
        child = self._child
        if child is not None:
            if child.stdout is not None and self._loop is not None and not self.done.is_set():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(child.stdout.fileno())
            if child.poll() is None:
                child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        self.tx.shutdown()
        self.rx.shutdown()


class _PlayedMessage(can.Message):
    """The player's frame.  python-can's virtual bus deep-copies every frame it sends, and
    can.Message's generic ``__deepcopy__`` is most of a send's cost (about 7 µs here).  This
    makes the same independent ``can.Message`` field by field in about 1 µs."""

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


def _log_error(payload: bytes) -> LogFormatError:
    fields: dict[str, Any] = json.loads(payload)
    where = Location(file=fields["file"], line=fields["line"], col=fields["col"], frame=fields["frame"])
    return LogFormatError(fields["message"], where, code=fields["code"])


# --------------------------------------------------------------------------- the child process
def play(log: str, channel: str | None, speed: float, loop: bool, out: int) -> None:
    """Write the log's frames to ``out`` as they become due (see the module for the records)."""

    # Records due together are written together: one write (and one wake-up of the server's
    # loop) per pacing step rather than per frame.  Bounded, so a flat-out replay flows.
    pending = bytearray()

    def flush() -> None:
        if pending:
            os.write(out, pending)
            pending.clear()

    def send(kind: int, t: float = 0.0, number: int = 0, payload: bytes = b"") -> None:
        pending.extend(HEADER.pack(kind, t, time.monotonic(), number, len(payload)))
        pending.extend(payload)
        if len(pending) >= _WRITE_BYTES:
            flush()

    def on_error(error: LogFormatError) -> None:
        where = error.location
        fields = {"message": error.message, "code": error.code, "file": where.file, "line": where.line}
        send(LOG_ERROR, payload=json.dumps({**fields, "col": where.col, "frame": where.frame}).encode())

    offset = 0.0
    origin: tuple[float, float] | None = None
    skipped = 0
    while True:
        first = last = None
        count = 0
        for frame in read_log(log, on_error=on_error):
            if (
                frame.is_error_frame
                or frame.is_remote_frame
                or (channel is not None and frame.channel is not None and frame.channel != channel)
            ):
                skipped += 1
                send(SKIPPED, number=skipped)
                continue
            t = frame.timestamp + offset
            if first is None:
                first = frame.timestamp
            last = frame.timestamp
            count += 1
            if speed > 0:
                # Pacing reads the wall clock: this is the car, not the engine.
                if origin is None:
                    origin = (t, time.monotonic())
                delay = origin[1] + (t - origin[0]) / speed - time.monotonic()
                if delay > _PACE_S:
                    flush()
                    time.sleep(delay)
            kind = FRAME_EXTENDED if frame.is_extended_id else FRAME
            send(kind, t, frame.arbitration_id, bytes(frame.data))
        send(PASS)
        flush()
        if not loop or first is None or last is None:
            return
        gap = (last - first) / (count - 1) if count > 1 else 0.01
        offset += last - first + gap


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):  # the server went away: so do we
        play(sys.argv[1], sys.argv[2] or None, float(sys.argv[3]), sys.argv[4] == "loop", sys.stdout.fileno())
