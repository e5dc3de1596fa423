"""What a log says about the messages a vehicle profile reads: rates, gaps, lengths, channels.

``drivegate log-stats`` prints it.  Its point is ``max_age_ms``: a limit shorter than the gaps
of normal traffic makes a signal go stale while the car is fine (every such gap is a moment of
fail-closed decisions for no reason), and one much longer than the message's period keeps a
value that is no longer true.  The suggestion is two and a half periods (a reception timeout of
a few cycles, as AUTOSAR COM deadline monitoring is usually set) or, where the traffic is irregular, the 99th percentile of the gaps plus half a
period (so that a few dropouts in a log do not set the limit; under 100 gaps, the largest),
rounded up to 10 ms.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from safety.io.frame import Frame
from safety.vehicle.decode import j1939_pgn
from safety.vehicle.profile import SignalSource, VehicleProfile

__all__ = ["MessageStats", "log_stats"]


@dataclass
class MessageStats:
    """One mapped message, as the log carries it."""

    message: str
    frame: str  # as profiles and errors print it: 0x0B4, or the PGN and sources
    signals: tuple[str, ...]  # the canonical signals it feeds
    max_age_ms: float  # the profile's limit (the smallest of its signals')
    bus: str | None
    frames: int = 0
    times: list[float] = field(default_factory=list, repr=False)
    lengths: dict[int, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)  # channel -> frames (all channels)
    other_bus: int = 0  # frames of this id on channels the profile does not read
    page: tuple[Any, str, frozenset[int]] | None = None  # multiplexed: (DBC message, selector, values)
    origin: float = 0.0  # the log's first frame time: gaps are placed in seconds after it

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.times)]

    def summary(self) -> dict[str, Any]:
        """The figures, as ``--format json`` prints them."""
        gaps = self.gaps
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        period = statistics.median(gaps) if gaps else None
        largest = max(gaps) if gaps else None
        where = None
        if largest is not None:
            i = gaps.index(largest)
            where = self.times[i] - self.origin
        suggested = p99 = None
        if period is not None and largest is not None:
            p99 = statistics.quantiles(gaps, n=100)[-1] if len(gaps) >= 100 else largest
            suggested = max(2.5 * period, p99 + period / 2)
            suggested = math.ceil(suggested * 100 - 1e-9) * 10.0  # ms, up to 10 ms
        limit = self.max_age_ms / 1000
        stale = sum(1 for gap in gaps if gap > limit)
        return {
            "message": self.message,
            "frame": self.frame,
            "signals": list(self.signals),
            "bus": self.bus,
            "frames": self.frames,
            "rate_hz": (len(self.times) - 1) / span if span > 0 else None,
            "period_ms": None if period is None else period * 1000,
            "largest_gap_ms": None if largest is None else largest * 1000,
            "largest_gap_at_s": where,
            "gap_p99_ms": None if p99 is None else p99 * 1000,
            "lengths": dict(sorted(self.lengths.items())),
            "channels": dict(sorted(self.channels.items())),
            "frames_on_other_buses": self.other_bus,
            "max_age_ms": self.max_age_ms,
            "suggested_max_age_ms": suggested,
            "stale_gaps": stale,  # gaps longer than the profile's max_age_ms in this traffic
        }


def _page(profile: VehicleProfile, source: SignalSource) -> tuple[Any, str, frozenset[int]] | None:
    """For a signal of a multiplexed message: the message, its selector and the values that carry it."""
    message = profile.database.get_message_by_name(source.message)
    signal = message.get_signal_by_name(source.signals[0])
    if not signal.multiplexer_ids or not signal.multiplexer_signal:
        return None
    return message, signal.multiplexer_signal, frozenset(signal.multiplexer_ids)


def _group(profile: VehicleProfile) -> dict[tuple[Any, ...], MessageStats]:
    groups: dict[tuple[Any, ...], list[SignalSource]] = {}
    pages: dict[tuple[Any, ...], tuple[Any, str, frozenset[int]] | None] = {}
    for source in profile.sources.values():
        page = _page(profile, source)
        mux = None if page is None else (page[1], page[2])
        if source.pgn is not None:
            key: tuple[Any, ...] = ("pgn", source.pgn, source.source_addresses, source.bus, mux)
        else:
            key = ("id", source.frame_id, source.is_extended, source.bus, mux)
        groups.setdefault(key, []).append(source)
        pages[key] = page
    stats = {}
    for key, sources in groups.items():
        page = pages[key]
        name = sources[0].message
        if page is not None:
            name += f" [{page[1]} {', '.join(str(v) for v in sorted(page[2]))}]"  # the page that carries them
        stats[key] = MessageStats(
            message=name,
            frame=sources[0].frame,
            signals=tuple(s.name for s in sources),
            max_age_ms=min(s.max_age for s in sources) * 1000,
            bus=sources[0].bus,
            page=page,
        )
    return stats


def _on_page(stats: MessageStats, data: bytes) -> bool:
    page = stats.page
    if page is None:
        return True
    message, selector, values = page
    try:
        raw = message.decode(data, decode_choices=False, scaling=False, allow_truncated=True)
    except Exception:  # a payload cantools cannot decode carries no page: not counted
        return False
    return raw.get(selector) in values


def log_stats(profile: VehicleProfile, frames: Iterable[Frame]) -> list[MessageStats]:
    """Per mapped message of ``profile``: its frames in ``frames`` (in the profile's order)."""
    groups = _group(profile)
    by_id: dict[tuple[int, bool], list[tuple[MessageStats, str | None]]] = {}
    by_pgn: dict[int, list[tuple[MessageStats, frozenset[int] | None, str | None]]] = {}
    for key, stats in groups.items():
        if key[0] == "pgn":
            by_pgn.setdefault(key[1], []).append((stats, key[2], key[3]))
        else:
            by_id.setdefault((key[1], key[2]), []).append((stats, key[3]))
    pgn_of: dict[int, int] = {}
    origin: float | None = None
    for frame in frames:
        if origin is None and math.isfinite(frame.timestamp):
            origin = frame.timestamp
        if frame.is_error_frame or frame.is_remote_frame or not math.isfinite(frame.timestamp):
            continue
        ident = frame.arbitration_id
        targets: list[tuple[MessageStats, str | None]] = list(by_id.get((ident, frame.is_extended_id), ()))
        if by_pgn and frame.is_extended_id:
            pgn = pgn_of.get(ident)
            if pgn is None:
                pgn = pgn_of[ident] = j1939_pgn(ident)
            for stats, sources, bus in by_pgn.get(pgn, ()):
                if sources is None or (ident & 0xFF) in sources:
                    targets.append((stats, bus))
        for stats, bus in targets:
            if not _on_page(stats, frame.data):
                continue
            channel = frame.channel
            label = channel or "(none)"
            stats.channels[label] = stats.channels.get(label, 0) + 1
            if bus is not None and channel is not None and channel != bus:
                stats.other_bus += 1
                continue
            if stats.times and frame.timestamp < stats.times[-1]:
                continue  # older than the latest of its message: the engine drops it too
            stats.frames += 1
            stats.times.append(frame.timestamp)
            length = len(frame.data)
            stats.lengths[length] = stats.lengths.get(length, 0) + 1
    for stats in groups.values():
        stats.origin = origin or 0.0
    return list(groups.values())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_stats(stats: list[MessageStats]) -> tuple[str, list[str]]:
    """The text report and its warnings (a profile limit normal traffic would break)."""
    lines: list[str] = []
    warnings: list[str] = []
    for item in stats:
        s = item.summary()
        rate = "-" if s["rate_hz"] is None else f"{s['rate_hz']:.1f} Hz"
        lengths = ", ".join(f"{n} B x{count}" for n, count in s["lengths"].items()) or "-"
        channels = ", ".join(f"{c} x{n}" for c, n in s["channels"].items()) or "-"
        suggested = "-" if s["suggested_max_age_ms"] is None else f"{s['suggested_max_age_ms']:.0f}"
        lines.append(f"{item.message} ({item.frame}) -> {', '.join(item.signals)}")
        lines.append(
            f"  frames {s['frames']}, rate {rate}, period {_ms(s['period_ms'])}, largest gap "
            f"{_ms(s['largest_gap_ms'])}"
            + ("" if s["largest_gap_at_s"] is None else f" at {s['largest_gap_at_s']:.3f} s")
        )
        lines.append(f"  lengths {lengths}; channels {channels}" + (f" (profile reads {item.bus})" if item.bus else ""))
        lines.append(f"  max_age_ms {s['max_age_ms']:.0f} in the profile, {suggested} suggested")
        if s["frames"] == 0:
            warnings.append(
                f"{item.message} ({item.frame}): no frames in this log: {', '.join(item.signals)} never known"
            )
        elif s["stale_gaps"]:
            warnings.append(
                f"{item.message} ({item.frame}): max_age_ms {s['max_age_ms']:.0f} is shorter than "
                f"{s['stale_gaps']} gap(s) of this log's traffic (largest {s['largest_gap_ms']:.1f} ms): "
                f"{', '.join(item.signals)} would go stale; {suggested} suggested"
            )
    return "\n".join(lines), warnings
