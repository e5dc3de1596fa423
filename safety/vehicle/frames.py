"""Decoding: CAN frames -> canonical samples, through a vehicle profile.

Only the frame ids the profile maps are decoded; any other frame costs one dict lookup.
Each mapped message gets one generated reader (``decode.compile_message_reader``) for all
the DBC signals the profile needs from it, then a small converter per canonical signal
applies the DBC's validity (named not-available values, declared min/max), the profile's
scale/offset/invert and value map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from safety.vehicle.decode import compile_message_reader
from safety.vehicle.profile import SignalSource, VehicleProfile, raw_validity

# (canonical name, value or None, time, invalid) -> None
Sink = Callable[..., None]
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
    """Turns frames into canonical samples pushed to ``sink(name, value, t, invalid=...)``."""

    def __init__(self, profile: VehicleProfile, sink: Sink) -> None:
        self.profile = profile
        self.frames_decoded = 0
        self.frames_short = 0
        groups: dict[tuple[int, bool], list[SignalSource]] = {}
        for src in profile.sources.values():
            groups.setdefault((src.frame_id, src.is_extended), []).append(src)
        self.handlers: dict[int, Callable[[float, bytes, str | None], None]] = {}  # by frame_key
        for (frame_id, is_extended), sources in groups.items():
            message = profile.database.get_message_by_frame_id(frame_id, force_extended_id=is_extended)
            names = list(dict.fromkeys(n for s in sources for n in s.signals))
            reader = compile_message_reader(message, names, scaled=False)
            converters = [(s.name, s.bus, _converter(s, message, names)) for s in sources]
            self.handlers[frame_key(frame_id, is_extended)] = self._handler(reader, converters, sink)

    def _handler(
        self,
        reader: Callable[[bytes], tuple[Any, ...]],
        converters: list[tuple[str, str | None, Converter]],
        sink: Sink,
    ) -> Callable[[float, bytes, str | None], None]:
        last_key: list[Any] = [None]
        last_samples: list[tuple[str, Any, bool]] = []

        def handle(t: float, data: bytes, channel: str | None) -> None:
            raws = reader(data)
            self.frames_decoded += 1
            key = (raws, channel)
            if key != last_key[0]:
                # Converters are pure functions of the raw values: convert only what changed
                # (most frames repeat the previous frame of their message).
                last_key[0] = key
                last_samples.clear()
                for name, bus, convert in converters:
                    # Formats that lose the channel (BLF, CSV) match any bus filter.
                    if bus is not None and channel is not None and channel != bus:
                        continue
                    value, invalid = convert(raws)
                    if value is not NOT_IN_FRAME:
                        last_samples.append((name, value, invalid))
            for name, value, invalid in last_samples:
                sink(name, value, t, invalid=invalid)

        return handle

    def feed(
        self, t: float, arbitration_id: int, data: bytes, channel: str | None = None, is_extended: bool = False
    ) -> bool:
        """Decode one frame if the profile maps its (id, extended); return whether it did."""
        handler = self.handlers.get(frame_key(arbitration_id, is_extended))
        if handler is None:
            return False
        handler(t, data, channel)
        return True


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
