"""The fault injector: a frame stream in, the same stream with faults at given times out.

Faults act as a sender or a bus would get things wrong.  Where a real fault would still carry
a valid end-to-end seal (a sensor that reports a wrong value, an ECU that sends its SNA code),
the injector re-seals the frame with the profile's own E2E definition, so that only the
receiver's plausibility and validity checks can catch it; where the fault is in the protection
itself (a frozen or skipping counter, a corrupted checksum), only the E2E checker can.

Times are seconds after the log's first (finite) timestamp.  Several faults apply in the order
given, each to what the one before it produced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from safety.errors import DriveGateError, FaultSpecError, LoadError, Location
from safety.faults.spec import KINDS, FaultSpec
from safety.io.frame import Frame
from safety.vehicle.decode import write_raw
from safety.vehicle.e2e import Protection, seal
from safety.vehicle.profile import VehicleProfile, raw_validity

__all__ = ["Injector"]

# SocketCAN's error class for "controller problems" (linux/can/error.h CAN_ERR_CRTL), with data
# byte 1 = CAN_ERR_CRTL_RX_WARNING: what a controller reports while a bus misbehaves.
_ERROR_CLASS = 0x004
_ERROR_DATA = bytes((0, 0x04, 0, 0, 0, 0, 0, 0))


def _error(spec: FaultSpec, message: str) -> FaultSpecError:
    return FaultSpecError(f"{spec.text!r}: {message}", Location(field="--fault"))


def _find_message(spec: FaultSpec, database: Any, profile_file: str) -> Any:
    name = spec.message
    assert name is not None
    try:
        return database.get_message_by_name(name)
    except KeyError:
        pass
    try:
        frame_id = int(name, 0)
    except ValueError:
        frame_id = -1
    found = [m for m in database.messages if m.frame_id == frame_id]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(m.name for m in found)
        raise _error(spec, f"frame id {name} names several messages ({names}); give the message's name")
    known = sorted(m.name for m in database.messages)
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    raise _error(spec, f"no message {name!r} in the DBC of {profile_file}; it has {shown}")


class _Fault:
    """One compiled fault: its window, the frames it matches and what it does to them."""

    def __init__(self, spec: FaultSpec, message: Any, protection: Protection | None) -> None:
        self.spec = spec
        self.kind = spec.kind
        self.start, self.end = spec.start, spec.end
        self.message = message
        self.protection = protection
        self.key = None if message is None else (message.frame_id, bool(message.is_extended_frame))
        self.count = spec.number("count") if "count" in spec.params else math.inf
        self.applied = 0  # matching frames acted on (for count=)
        self.changed = 0  # frames removed, changed or added (the report)
        self.signal: Any = None
        self.raw = 0
        self.frozen: int | None = None
        self.pending: Frame | None = None  # reorder: the frame waiting for its successor
        self.held: list[Frame] = []  # reorder: the frames between the two
        self.next_error = math.nan  # error-frames: the time of the next one

    def matches(self, frame: Frame) -> bool:
        if self.key is None:
            return True
        return (
            not frame.is_error_frame
            and not frame.is_remote_frame
            and (frame.arbitration_id, frame.is_extended_id) == self.key
        )

    def _take(self, frame: Frame, rel: float) -> bool:
        """True when this fault acts on ``frame`` (in its window, matching, under its count)."""
        if not (self.start <= rel < self.end) or self.applied >= self.count or not self.matches(frame):
            return False
        self.applied += 1
        return True

    # -- payload edits ---------------------------------------------------------------------

    def _counter(self, data: bytes | bytearray) -> int:
        protection = self.protection
        assert protection is not None and protection.counter is not None
        raw = self.message.decode(bytes(data), decode_choices=False, scaling=False, allow_truncated=True)
        return int(raw[protection.counter])

    def _write(self, data: bytearray, signal: str, raw: int) -> None:
        write_raw(data, self.message.get_signal_by_name(signal), raw)

    def _reseal(self, data: bytearray, counter: int | None = None) -> None:
        protection = self.protection
        if protection is None:
            return
        if counter is None:
            counter = self._counter(data) if protection.counter is not None else 0
        seal(protection, data, counter, self._write)

    def _edit(self, frame: Frame) -> Frame:
        data = bytearray(frame.data)
        if len(data) < self.message.length:
            return frame  # already short: no room for the signals; pass it on as it is
        kind = self.kind
        protection = self.protection
        if kind == "freeze-counter":
            if self.frozen is None:
                self.frozen = self._counter(data)
            self._reseal(data, self.frozen)
        elif kind == "skip-counter":
            assert protection is not None
            self._reseal(data, self._counter(data) + int(self.spec.number("by")))
        elif kind == "bad-checksum":
            assert protection is not None and protection.checksum is not None
            signal = self.message.get_signal_by_name(protection.checksum)
            good = self.message.decode(bytes(data), decode_choices=False, scaling=False)[protection.checksum]
            write_raw(data, signal, int(good) ^ int(self.spec.number("xor")))
        else:  # spike, sna
            write_raw(data, self.signal, self.raw)
            self._reseal(data)
        return frame._replace(data=bytes(data))

    # -- the stream ------------------------------------------------------------------------

    def feed(self, frame: Frame, rel: float) -> list[Frame]:
        kind = self.kind
        if kind == "reorder":
            return self._reorder(frame, rel)
        if kind == "error-frames":
            return self._errors(frame, rel)
        if not self._take(frame, rel):
            return [frame]
        self.changed += 1
        if kind in ("drop", "silence"):
            return []
        if kind == "duplicate":
            return [frame, frame]
        if kind == "truncate":
            return [frame._replace(data=frame.data[: int(self.spec.number("length"))])]
        if kind == "backwards":
            return [frame._replace(timestamp=frame.timestamp - self.spec.number("by"))]
        edited = self._edit(frame)
        if edited is frame:
            self.changed -= 1
        return [edited]

    def _reorder(self, frame: Frame, rel: float) -> list[Frame]:
        pending = self.pending
        if pending is not None:
            if not self.matches(frame):
                self.held.append(frame)
                return []
            # The later payload arrives first: the receiver sees them in swapped order.
            out = [pending._replace(data=frame.data), *self.held, frame._replace(data=pending.data)]
            self.pending, self.held = None, []
            self.changed += 2
            return out
        if self._take(frame, rel):
            self.pending = frame
            return []
        return [frame]

    def _errors(self, frame: Frame, rel: float) -> list[Frame]:
        if not self.start <= rel < self.end:
            return [frame]
        period = 1.0 / self.spec.number("rate")
        origin = frame.timestamp - rel
        if math.isnan(self.next_error):
            self.next_error = origin + self.start
        out: list[Frame] = []
        stop = min(frame.timestamp, origin + self.end)
        while self.next_error <= stop:
            out.append(Frame(self.next_error, _ERROR_CLASS, True, _ERROR_DATA, frame.channel, is_error_frame=True))
            self.next_error += period
        self.changed += len(out)
        out.append(frame)
        return out

    def flush(self) -> list[Frame]:
        if self.pending is None:
            return []
        out = [self.pending, *self.held]
        self.pending, self.held = None, []
        return out


class Injector:
    """Faults compiled against a vehicle profile, applied to frame streams with :meth:`run`.

    Raises :class:`LoadError` (of :class:`FaultSpecError`) for every fault that names a message,
    signal or protection the profile does not have.  After a run, :attr:`changed` says how many
    frames each fault removed, changed or added.
    """

    def __init__(self, specs: Sequence[FaultSpec], profile: VehicleProfile) -> None:
        self.profile = profile
        errors: list[DriveGateError] = []
        self._faults: list[_Fault] = []
        for spec in specs:
            try:
                self._faults.append(self._compile(spec))
            except FaultSpecError as exc:
                errors.append(exc)
        if errors:
            raise LoadError(errors)

    def _compile(self, spec: FaultSpec) -> _Fault:
        profile = self.profile
        message = None if spec.message is None else _find_message(spec, profile.database, profile.file)
        protection = None
        if message is not None:
            protection = profile.e2e.get((message.frame_id, bool(message.is_extended_frame)))
        if KINDS[spec.kind].e2e and message is not None:
            need = "checksum" if spec.kind == "bad-checksum" else "counter"
            if protection is None or getattr(protection, need) is None:
                raise _error(
                    spec,
                    f"{message.name} has no e2e {need} in {profile.file}; the injector takes its place in the frame "
                    "from the profile's e2e: entry",
                )
        fault = _Fault(spec, message, protection)
        if spec.kind in ("spike", "sna"):
            fault.signal, fault.raw = self._signal_raw(spec, message)
        if spec.kind == "truncate" and message is not None and spec.number("length") >= message.length:
            raise _error(spec, f"length {spec.number('length'):g} does not cut {message.name}'s {message.length} bytes")
        return fault

    @staticmethod
    def _signal_raw(spec: FaultSpec, message: Any) -> tuple[Any, int]:
        name = spec.params["signal"]
        assert isinstance(name, str)
        try:
            signal = message.get_signal_by_name(name)
        except KeyError:
            names = ", ".join(s.name for s in message.signals)
            raise _error(spec, f"{message.name} has no signal {name!r}; it has {names}") from None
        if spec.kind == "sna":
            invalid, _, _ = raw_validity(signal)
            if not invalid:
                raise _error(
                    spec,
                    f"the DBC names no not-available value for {name} (a value table entry such as SNA); "
                    "use spike with value= instead",
                )
            return signal, min(invalid)
        value = spec.number("value")
        raw = round((value - signal.offset) / signal.scale)
        bits = signal.length
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signal.is_signed else (0, (1 << bits) - 1)
        if not low <= raw <= high:
            raise _error(
                spec, f"value {value:g} is raw {raw}, which does not fit {name}'s {signal.length} bits ({low}..{high})"
            )
        return signal, raw

    @property
    def changed(self) -> dict[str, int]:
        """Frames each fault removed, changed or added, by its specification as given."""
        return {fault.spec.text: fault.changed for fault in self._faults}

    def run(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The frames with every fault applied (lazily: one pass, memory flat in log length)."""
        origin: float | None = None
        faults = self._faults
        for frame in frames:
            if origin is None and math.isfinite(frame.timestamp):
                origin = frame.timestamp
            rel = frame.timestamp - origin if origin is not None else math.nan
            batch = [frame]
            for fault in faults:
                batch = [out for item in batch for out in fault.feed(item, rel)]
            yield from batch
        tail: list[Frame] = []
        for fault in faults:
            tail = [out for item in tail for out in fault.feed(item, math.nan)] + fault.flush()
        yield from tail
