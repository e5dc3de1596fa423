"""Decoding: CAN frames -> canonical samples, through a vehicle profile.

Only the frame ids the profile maps are decoded; any other frame costs one dict lookup.
Each mapped message gets one generated reader (``decode.compile_message_reader``) for all
the DBC signals the profile needs from it, then a small converter per canonical signal
applies the DBC's validity (named not-available values, declared min/max), the profile's
scale/offset/invert and value map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from safety.vehicle.clock import OUT_OF_ORDER, StreamClock
from safety.vehicle.decode import bytes_needed, compile_message_reader, j1939_pgn
from safety.vehicle.e2e import DROP, E2EChecker, Protection
from safety.vehicle.profile import SignalSource, VehicleProfile, raw_validity

# (canonical name, value or None, time, invalid=..., reason=...) -> None
Sink = Callable[..., None]
Handler = Callable[[float, bytes, str | None, bool], None]
_MAX_MISSES = 1 << 16  # 29-bit ids remembered as matching no PGN (a hostile log cannot grow it further)
Converter = Callable[[tuple[Any, ...]], tuple[Any, bool]]
_MISSING = object()
# A multiplexed signal absent from this frame's page: no sample at all (not an unknown one).
NOT_IN_FRAME = object()
# Decoded floats carry binary noise (45.790000000000006): compare ranges with slack.
_RANGE_SLACK = 1e-9
# Handlers are keyed by (id, extended) folded into one int (the bit SocketCAN uses for 29-bit
# ids), so an 11-bit and a 29-bit message with the same number never meet; one int lookup per
# frame keeps the replay hot path as fast as a bare id.
EXTENDED_KEY = 1 << 31


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    """The handler key of a frame: its id, with bit 31 set for a 29-bit id."""
    return arbitration_id | EXTENDED_KEY if is_extended else arbitration_id


class FrameDecoder:
    """Turns frames into canonical samples pushed to ``sink(name, value, t, invalid=..., reason=...)``.

    Frame times go through a :class:`~safety.vehicle.clock.StreamClock` (``feed``; a replay loop
    calls ``clock.admit`` itself); a frame older than the latest of its message is dropped.  Every
    frame refused is counted in ``rejected`` by reason.  ``on_rebase`` hears of a new time base.
    """

    def __init__(
        self, profile: VehicleProfile, sink: Sink, *, on_rebase: Callable[[float], None] | None = None
    ) -> None:
        self.profile = profile
        self.frames_decoded = 0
        self.frames_short = 0
        self.rejected: dict[str, int] = {}
        self.e2e: dict[str, E2EChecker] = {}  # by message name
        self._latest: list[list[float]] = []  # per handler: the latest time of its message
        self._on_rebase = on_rebase
        self.clock = StreamClock(self.rejected, self._rebase)
        groups: dict[tuple[int, bool], list[SignalSource]] = {}
        self._pgn_groups: dict[int, list[SignalSource]] = {}  # J1939 sources, matched by PGN
        for src in profile.sources.values():
            if src.pgn is not None:
                self._pgn_groups.setdefault(src.pgn, []).append(src)
            else:
                groups.setdefault((src.frame_id, src.is_extended), []).append(src)
        self._sink = sink
        self.handlers: dict[int, Handler] = {}  # by frame_key
        for (frame_id, is_extended), sources in groups.items():
            message = profile.database.get_message_by_frame_id(frame_id, force_extended_id=is_extended)
            self.handlers[frame_key(frame_id, is_extended)] = self._build(message, sources, message.name)
        # 29-bit ids already looked at for a PGN match (and found none): each is resolved once.
        self._misses: set[int] = set()
        self.resolve = self._resolve if self._pgn_groups else None

    def _build(self, message: Any, sources: list[SignalSource], label: str) -> Handler:
        names = list(dict.fromkeys(n for s in sources for n in s.signals))
        reader = compile_message_reader(message, names, scaled=False)
        by_name = {signal.name: signal for signal in message.signals}
        converters = [
            (
                s.name,
                s.bus,
                _converter(s, message, names),
                max(bytes_needed(by_name[n], message.length) for n in s.signals),
            )
            for s in sources
        ]
        protection = self.profile.e2e.get((message.frame_id, bool(message.is_extended_frame)))
        checker = None
        if protection is not None:
            checker = E2EChecker(protection, _e2e_reader(message, protection))
            self.e2e[label] = checker
        fd_only = frozenset(s.name for s in sources if s.require_fd)
        return self._handler(reader, converters, self._sink, checker, fd_only)

    def _resolve(self, key: int) -> Handler | None:
        """The handler of a 29-bit frame the exact ids do not name: a J1939 PGN match, built once per sender."""
        if key in self._misses:
            return None
        arbitration_id = key & ~EXTENDED_KEY
        pgn = j1939_pgn(arbitration_id)
        source = arbitration_id & 0xFF
        sources = [
            s for s in self._pgn_groups.get(pgn, ()) if s.source_addresses is None or source in s.source_addresses
        ]
        if not sources:
            if len(self._misses) < _MAX_MISSES:
                self._misses.add(key)
            return None
        message = self.profile.database.get_message_by_frame_id(sources[0].frame_id, force_extended_id=True)
        # Each sender is its own stream: its own order and, if protected, its own counter.
        handler = self._build(message, sources, f"{message.name} from 0x{source:02X}")
        self.handlers[key] = handler
        return handler

    def carry_from(self, previous: FrameDecoder) -> None:
        """Continue where ``previous`` (a decoder of the same profile, replaced on a reload) left off:
        the stream's time, each message's latest time and the counts of refused frames."""
        self.clock.time = previous.clock.time
        self.rejected.update(previous.rejected)
        # The exact-id handlers come first, in the same order (J1939 ones are built again on demand).
        for mine, theirs in zip(self._latest, previous._latest, strict=False):
            mine[0] = theirs[0]
        for name, checker in self.e2e.items():
            old = previous.e2e.get(name)
            if old is None:
                continue
            checker.last_counter, checker.repeats, checker.trusted = old.last_counter, old.repeats, old.trusted
            checker.since_failure, checker.counts = old.since_failure, old.counts

    def _rebase(self, t: float) -> None:
        for latest in self._latest:
            latest[0] = -math.inf
        if self._on_rebase is not None:
            self._on_rebase(t)

    def _handler(
        self,
        reader: Callable[[bytes], tuple[Any, ...]],
        converters: list[tuple[str, str | None, Converter, int]],
        sink: Sink,
        checker: E2EChecker | None,
        fd_only: frozenset[str] = frozenset(),
    ) -> Handler:
        last_key: list[Any] = [None]
        last_samples: list[tuple[str, Any, bool]] = []
        latest = [-math.inf]
        self._latest.append(latest)
        rejected = self.rejected
        need = max(n for *_, n in converters)
        e2e_need = 0 if checker is None else checker.protection.need
        need = max(need, e2e_need)
        check = None if checker is None else checker.check
        # The channels this message is read from (None: any).  A frame of the same id on another
        # channel is another bus's message: not checked, not decoded, not ordered with these.
        buses = {bus for _, bus, _, _ in converters}
        only = None if None in buses else frozenset(b for b in buses if b is not None)

        def handle(t: float, data: bytes, channel: str | None, is_fd: bool = False) -> None:
            if only is not None and channel is not None and channel not in only:
                return
            if t < latest[0]:
                # Older than the latest frame of this message: a late or replayed frame (dropped,
                # as Android Automotive drops older property events).
                rejected[OUT_OF_ORDER] = rejected.get(OUT_OF_ORDER, 0) + 1
                return
            latest[0] = t
            if fd_only and not is_fd:
                # A classic frame where the profile requires CAN FD: not the message it claims to be.
                for name in fd_only:
                    sink(name, None, t, reason="not a CAN FD frame (the profile requires FD)", cause="integrity")
            self.frames_decoded += 1
            if len(data) < need:
                self._short(t, data, channel, reader, converters, sink, e2e_need)
                last_key[0] = None
                return
            if check is not None:
                failure = check(data)
                if failure is not None:
                    if failure is DROP:
                        return  # a repeated counter: no new data; the last values stand and age
                    for name, bus, _, _ in converters:
                        if bus is None or channel is None or channel == bus:
                            sink(name, None, t, reason=failure, cause="integrity")
                    last_key[0] = None
                    return
            raws = reader(data)
            key = (raws, channel)
            if key != last_key[0]:
                # Converters are pure functions of the raw values: convert only what changed
                # (most frames repeat the previous frame of their message).
                last_key[0] = key
                last_samples.clear()
                for name, bus, convert, _ in converters:
                    # Formats that lose the channel (BLF, CSV) match any bus filter.
                    if bus is not None and channel is not None and channel != bus:
                        continue
                    value, invalid = convert(raws)
                    if value is not NOT_IN_FRAME:
                        last_samples.append((name, value, invalid))
            for name, value, invalid in last_samples:
                if not fd_only or is_fd or name not in fd_only:
                    sink(name, value, t, invalid=invalid)

        return handle

    def _short(
        self,
        t: float,
        data: bytes,
        channel: str | None,
        reader: Callable[[bytes], tuple[Any, ...]],
        converters: list[tuple[str, str | None, Converter, int]],
        sink: Sink,
        e2e_need: int,
    ) -> None:
        """A frame shorter than some mapped signal needs: those signals are unknown, and say why.

        A protected message whose counter or checksum is cut off cannot be verified: all its
        signals are unknown.
        """
        self.frames_short += 1
        raws = reader(data)
        for name, bus, convert, need in converters:
            if bus is not None and channel is not None and channel != bus:
                continue
            need = max(need, e2e_need)
            if len(data) < need:
                reason = f"truncated frame: {len(data)} bytes received, {need} needed"
                sink(name, None, t, reason=reason, cause="truncated")
                continue
            value, invalid = convert(raws)
            if value is not NOT_IN_FRAME:
                sink(name, value, t, invalid=invalid)

    def feed(
        self,
        t: float,
        arbitration_id: int,
        data: bytes,
        channel: str | None = None,
        is_extended: bool = False,
        is_fd: bool = False,
    ) -> bool:
        """Decode one frame if its time is believable and the profile maps its (id, extended); return whether it did."""
        if self.clock.admit(t) is None:
            return False
        key = frame_key(arbitration_id, is_extended)
        handler = self.handlers.get(key)
        if handler is None and is_extended and self.resolve is not None:
            handler = self.resolve(key)
        if handler is None:
            return False
        decoded = self.frames_decoded
        handler(t, data, channel, is_fd)
        return self.frames_decoded > decoded


def _e2e_reader(message: Any, protection: Protection) -> Callable[[bytes], tuple[Any, Any]]:
    """A reader of the (counter, checksum) raw values; None for the one the message does not have."""
    names = [n for n in (protection.counter, protection.checksum) if n is not None]
    read = compile_message_reader(message, names, scaled=False)
    if protection.counter is not None and protection.checksum is not None:
        return read  # type: ignore[return-value]
    if protection.counter is not None:
        return lambda data: (read(data)[0], None)
    return lambda data: (None, read(data)[0])


def _mean(values: list[Any]) -> Any:
    return sum(values) / len(values)


_COMBINE: dict[str, Callable[[list[Any]], Any]] = {"sum": sum, "min": min, "max": max, "mean": _mean}


def _converter(src: SignalSource, message: Any, names: list[str]) -> Converter:
    signals = {s.name: s for s in message.signals}
    parts = []
    multiplexed = any(signals[name].multiplexer_ids for name in src.signals)
    for name in src.signals:
        sig = signals[name]
        invalid_raw, low, high = raw_validity(sig)
        lo = None if low is None else low - _RANGE_SLACK * max(1.0, abs(low))
        hi = None if high is None else high + _RANGE_SLACK * max(1.0, abs(high))
        parts.append((names.index(name), sig.scale, sig.offset, invalid_raw, lo, hi))

    if src.value_map is not None:
        index, _, _, invalid_raw, _, _ = parts[0]
        value_map = src.value_map

        def convert_enum(raws: tuple[Any, ...]) -> tuple[Any, bool]:
            raw = raws[index]
            if raw is None and multiplexed:
                return NOT_IN_FRAME, False
            if raw is None or raw in invalid_raw:
                return None, True
            value = value_map.get(raw, _MISSING)
            return (None, True) if value is _MISSING else (value, False)

        return convert_enum

    def physical(raws: tuple[Any, ...], part: tuple[Any, ...]) -> Any:
        index, scale, offset, invalid_raw, lo, hi = part
        raw = raws[index]
        if raw is None or raw in invalid_raw:
            return None
        value = raw * scale + offset  # exactly as cantools scales
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return None
        return value

    combine = _COMBINE[src.combine]
    scale, offset, sign = src.scale, src.offset, (-1.0 if src.invert else 1.0)
    identity = scale == 1.0 and offset == 0.0 and not src.invert

    if len(parts) == 1:
        only = parts[0]

        def convert_one(raws: tuple[Any, ...]) -> tuple[Any, bool]:
            if multiplexed and raws[only[0]] is None:
                return NOT_IN_FRAME, False
            value = physical(raws, only)
            if value is None:
                return None, True
            return (value if identity else sign * (value * scale + offset)), False

        return convert_one

    def convert_many(raws: tuple[Any, ...]) -> tuple[Any, bool]:
        if multiplexed and any(raws[part[0]] is None for part in parts):
            return NOT_IN_FRAME, False
        values = [physical(raws, part) for part in parts]
        if any(v is None for v in values):
            return None, True
        value = combine(values)
        return (value if identity else sign * (value * scale + offset)), False

    return convert_many
