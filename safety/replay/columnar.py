"""The columnar replay: a log read as columns, and only the frames that can change a decision decided.

``drivegate replay`` of a file uses it (``--engine columnar``, the default).  The log is read in
batches of columns (:func:`safety.io.columns.read_columns`); each batch is looked at in a few
array operations, and only the frames that can change the timeline go through the streaming
:class:`~safety.replay.timeline.Timeline` with its decoders, vehicle state and decisions.  The
timeline written is the streaming replay's, byte for byte (a property test holds it to that on
random logs, and the tests on the demo drive and the real logs).

Which frames a timeline can see (everything else is counted and left out):

- every frame of a message the vehicle profile maps (decoding, end-to-end checks and the state
  run on each, exactly as streaming);
- the first frame the clock admits, and the last (the timeline's first and last times);
- a frame whose time is exactly when a signal could go stale or a workload hold could end
  (a mapped frame's time plus a staleness limit or the hold), and the frame after it: at that
  instant the streaming replay notes the expiry at the next frame rather than just after the
  limit;
- with ``--sample-every``, the first frame at or after each time a sample is due.

The stream's time after each frame (the running maximum of the frame times, which the
streaming clock computes one frame at a time) is computed for the whole batch and given to the
timeline with the frames.  From a frame whose time the clock would refuse or re-base on (not
finite, a jump of more than ``max_jump_s``) the frames are handed over one by one, timed by the
clock itself, until it is settled again (a new time base confirmed, or the jump refused).
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from safety.engine.engine import Engine
from safety.io.columns import BATCH_FRAMES, F64, FrameColumns, read_columns
from safety.io.frame import Frame
from safety.replay.timeline import ReplaySummary, Timeline, next_sample_after
from safety.vehicle.frames import EXTENDED_KEY


def replay_columnar(
    engine: Engine,
    log: str | Path,
    probes: Iterable[Mapping[str, Any]],
    out: TextIO | None,
    sample_every: float | None = None,
    *,
    reasons: bool = False,
    batch_frames: int = BATCH_FRAMES,
    on_line: Callable[[dict[str, Any]], None] | None = None,
    rules: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Replay a log file with the columnar engine: the same timeline and summary as ``replay_file``.

    ``batch_frames`` frames are looked at at a time (memory stays flat in the log's length);
    where the batches are cut changes nothing in the output.  ``on_line`` gets every timeline
    line as a dict (as ``Timeline`` gives them); with ``rules`` each line also names the rules
    that decided each probe, and a change of them is a line of its own.  ``progress`` hears
    the number of frames read so far, once per batch.
    """
    timeline = Timeline(engine, probes, out, sample_every, on_line=on_line, reasons=reasons, rules=rules)
    selector = FrameSelector(engine, timeline.channel, timeline.sample_every)
    batches = read_columns(log, on_error=timeline.summary.log_errors.append, batch_frames=batch_frames)
    if progress is not None:
        batches = _counted(batches, progress)
    with fewer_collections():
        timeline.run(selector.frames(batches), admit=selector.admit)
    timeline.summary.frames_read += selector.left_out
    timeline.summary.frames_skipped += selector.left_out_skipped
    return timeline.summary


@contextlib.contextmanager
def fewer_collections(young: int = 50_000) -> Iterator[None]:
    """The cyclic garbage collector's youngest generation collected every ``young`` allocations
    instead of 700, while the block runs (restored after).

    A batch of a log read frame by frame (BLF, ASC, ...) keeps tens of thousands of frames alive
    while the selector looks at it, and the collector examined them again and again: replaying
    a BLF log took 1.2x the time with the default (300,000 frames: 1.08 s against 0.89 s).  The
    replay makes almost no reference cycles (its objects are freed by reference counting), so
    collecting less often only delays freeing what little there is.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(max(young, thresholds[0]), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def timeline_lines(
    engine: Engine, log: str | Path, probes: Iterable[Mapping[str, Any]], sample_every: float | None = None, **options: Any
) -> tuple[list[dict[str, Any]], ReplaySummary]:
    """The timeline ``drivegate replay`` writes for ``log``, as dicts, and the summary
    (``options``: those of :func:`replay_columnar`, e.g. ``reasons``, ``rules``)."""
    lines: list[dict[str, Any]] = []
    summary = replay_columnar(engine, log, probes, None, sample_every, on_line=lines.append, **options)
    return lines, summary


def _counted(batches: Iterable[FrameColumns], progress: Callable[[int], None]) -> Iterator[FrameColumns]:
    read = 0
    for batch in batches:
        yield batch
        read += len(batch)
        progress(read)


def _frame_keys(batch: FrameColumns, rows: np.ndarray) -> np.ndarray:
    """``frame_key`` of each of ``rows``: the id, with EXTENDED_KEY for a 29-bit one."""
    keys: np.ndarray = batch.ids[rows].astype(np.int64) | np.where(batch.extended[rows], np.int64(EXTENDED_KEY), np.int64(0))
    return keys


class FrameSelector:
    """Picks, batch by batch, the frames a timeline must see, and the stream time after each."""

    def __init__(self, engine: Engine, channel: str | None, sample_every: float | None) -> None:
        decoder = engine._decoder
        self._handlers = decoder.handlers
        self._resolve = decoder.resolve
        self._clock = decoder.clock
        self._channel = channel
        self._sample_every = sample_every
        state = engine._state
        # Every interval after a sample at which something can expire: a staleness limit, the hold.
        limits = {sig.max_age for sig in state._signals.values()}
        if state.config.hold_s > 0:
            limits.add(state.config.hold_s)
        self._limits = np.array(sorted(limits), dtype=np.float64)
        self._mapped: dict[int, bool] = {}
        self._times: deque[float | None] = deque()  # the stream time of each frame handed over, in order
        self._now: float | None = None  # the stream time so far
        self._expiries: F64 = np.empty(0, dtype=np.float64)  # expiry instants not yet passed
        self._next_sample: float | None = None
        self._after: float | None = None  # keep the first frame later than this (an instant was hit)
        self._streaming = False  # the clock judges each frame until it is settled again
        self._held: tuple[Frame, float] | None = None  # the latest admitted frame, kept back in case it is the last
        self.left_out = 0  # frames not handed over (they change nothing)
        self.left_out_skipped = 0  # of those, frames the timeline would have skipped

    def admit(self, stamp: float) -> float | None:
        """The stream time after the next frame handed over (the clock's own, once streaming)."""
        now = self._times.popleft()
        return self._clock.admit(stamp) if now is None else now

    def frames(self, batches: Iterable[FrameColumns]) -> Iterator[Frame]:
        for batch in batches:
            start = 0
            while start < len(batch):
                part = batch if start == 0 else batch.rows(start, len(batch))
                end = 0 if self._streaming else (yield from self._select(part))
                if end < len(part):
                    end = yield from self._stream(part, end)
                start += end
        yield from self._release()

    # ------------------------------------------------------------------ one batch
    def _skipped(self, batch: FrameColumns) -> np.ndarray:
        """Frames the timeline skips without looking at their time: error, remote, another channel."""
        channel = self._channel
        other = np.array(
            [channel is not None and name is not None and name != channel for name in batch.channel_names],
            dtype=np.bool_,
        )
        skipped = other[batch.channels]
        for i in np.flatnonzero(batch.special):
            frame = batch.frame(int(i))
            if frame.is_error_frame or frame.is_remote_frame:
                skipped[i] = True
        return skipped

    def _is_mapped(self, keys: np.ndarray) -> np.ndarray:
        """Whether the profile maps each frame key (J1939 ids resolved once each, in log order)."""
        known = self._mapped
        distinct, first = np.unique(keys, return_index=True)
        for key in distinct[np.argsort(first)].tolist():
            if key not in known:
                handler = self._handlers.get(key)
                if handler is None and key & EXTENDED_KEY and self._resolve is not None:
                    handler = self._resolve(key)
                known[key] = handler is not None
        lookup = np.array([known[k] for k in distinct.tolist()], dtype=np.bool_)
        return lookup[np.searchsorted(distinct, keys)]

    def _select(self, batch: FrameColumns) -> Generator[Frame, None, int]:
        """Hand over the frames of ``batch`` that can change the timeline, up to the first whose
        time the clock must judge itself; the index of that frame (``len(batch)``: none)."""
        skipped = self._skipped(batch)
        admitted = np.flatnonzero(~skipped)
        stamps = batch.stamps[admitted]
        # The clock's times, all at once: the running maximum, valid up to the first frame the
        # clock would refuse or re-base on (from there on the clock judges frame by frame).
        start = -math.inf if self._now is None else self._now
        times = np.maximum.accumulate(np.concatenate(([start], stamps)))
        before = times[:-1]
        jump = self._clock.max_jump
        bad = ~np.isfinite(stamps) | (before - jump > stamps) | (stamps > before + jump)
        if self._now is None and len(stamps) and math.isfinite(stamps[0]):
            bad[0] = False  # the first time is taken as it is
        cut = int(np.argmax(bad)) if bad.any() else len(admitted)
        end = int(admitted[cut]) if cut < len(admitted) else len(batch)
        rows, stamps, times = admitted[:cut], stamps[:cut], times[1 : cut + 1]
        self.left_out_skipped += int(np.count_nonzero(skipped[:end]))
        handed = 0
        if len(rows):
            keys = _frame_keys(batch, rows)
            mapped = self._is_mapped(keys)
            keep = mapped.copy()
            if self._now is None:
                keep[0] = True
            if self._held is not None:
                self.left_out += 1  # a later frame is the last one now
                self._held = None
            keep |= self._at_expiries(stamps[mapped], times)
            if self._sample_every is not None:
                keep[self._sampled(times)] = True
            self._now = float(times[-1])
            hold = not keep[-1]
            if hold:
                keep[-1] = False
            chosen = rows[keep]
            handed = len(chosen)
            self._times.extend(times[keep].tolist())
            yield from batch.frames(chosen.tolist())
            if hold:
                # Handed over only if it turns out to be the log's last admitted frame.
                self._held = (batch.frame(int(rows[-1])), float(times[-1]))
                handed += 1
        self.left_out += end - handed
        return end

    def _release(self) -> Iterator[Frame]:
        if self._held is not None:
            (frame, now), self._held = self._held, None
            self._times.append(now)
            yield frame

    def _stream(self, batch: FrameColumns, start: int) -> Generator[Frame, None, int]:
        """Hand over every frame from ``start`` on, timed by the clock itself, until the clock
        is settled again; the index after the last one handed over."""
        yield from self._release()
        clock = self._clock
        if not self._streaming:
            clock.time = self._now  # where the times computed so far left it (it saw none of them)
            self._streaming = True
        skipped = self._skipped(batch)
        every = self._sample_every
        i = start
        while i < len(batch):
            if not skipped[i]:
                self._times.append(None)
            yield batch.frame(i)  # the timeline has admitted it when this resumes
            i += 1
            now = clock.time
            if every is not None and now is not None:
                due = now if self._next_sample is None else self._next_sample
                self._next_sample = next_sample_after(due, now, every) if now >= due else due
            if clock.settled:
                self._streaming = False
                break
        self._now = clock.time
        # Expiry instants of the mapped frames handed over, and the first frame after them.
        rows = np.flatnonzero(~skipped[start:i]) + start
        if len(rows) and self._now is not None:
            keys = _frame_keys(batch, rows)
            stamps = batch.stamps[rows][self._is_mapped(keys)]
            fresh = self._instants(stamps)
            instants = np.concatenate((self._expiries, fresh[np.isfinite(fresh)]))
            self._expiries = np.unique(instants[instants >= self._now])
            self._after = self._now
        return i

    def _instants(self, stamps: F64) -> F64:
        """Every time at which a sample at one of ``stamps`` could expire (each limit after each)."""
        instants: F64 = (stamps[:, None] + self._limits[None, :]).ravel()
        return instants

    def _at_expiries(self, mapped_stamps: F64, times: F64) -> np.ndarray:
        """Frames at an instant at which something may expire, and the first frame after it.

        At a frame exactly at the instant nothing has expired yet (stale means older than the
        limit); the streaming replay notes the expiry at the frame after it, so both are kept.
        """
        fresh = self._instants(mapped_stamps)
        instants = np.concatenate((self._expiries, fresh))
        hit = np.isin(times, instants)
        after = np.searchsorted(times, times[hit], side="right")
        if self._after is not None:
            after = np.append(after, np.searchsorted(times, self._after, side="right"))
            self._after = None
        if len(after) and after.max() >= len(times):
            self._after = float(times[-1])  # the frame after it is in the next batch
        hit[after[after < len(times)]] = True
        # An instant equal to the batch's last time may also be the next batch's first time.
        self._expiries = np.unique(instants[instants >= times[-1]])
        return hit

    def _sampled(self, times: F64) -> np.ndarray:
        """Frames at which a sample is taken: the first at or after each time one is due."""
        every = self._sample_every
        assert every is not None
        rows = []
        due = self._next_sample
        if due is None:
            due = float(times[0])
        last = float(times[-1])
        while due <= last:
            i = int(np.searchsorted(times, due, side="left"))
            rows.append(i)
            due = next_sample_after(due, float(times[i]), every)
        self._next_sample = due
        return np.array(rows, dtype=np.int64)
