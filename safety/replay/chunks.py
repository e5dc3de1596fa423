"""One long log replayed as chunks (on several workers at once), spliced so that no border shows.

A chunk owns a range of the log's frames, by position (``[start, next chunk's start)``; time is
no order a log guarantees).  A frame's position is the index of its line in a candump log
(a chunk reads the text before its warm-up without parsing it: a few times cheaper) and its
index among the log's frames in other formats (read and left out).  It replays from ``begin``,
a warm-up of ``overlap`` positions before its start, and on past its end by ``overlap``.  In the ``2 * overlap`` frames two
neighbours share, both take a *fingerprint* every ``every`` frames: everything the replay
holds that decides what it writes from there on (the vehicle state, the decoder's clock, each
message's latest time and end-to-end checker, the frame selector's and the timeline loop's own
state), with the counters left out.  The splice is the first checkpoint at which the two
fingerprints are equal: from there both replays hold the same state and see the same frames,
so they write the same lines; the earlier chunk's lines before it and the later chunk's from
it on are, together, the whole log's timeline line for line.  Where no checkpoint agrees (a
signal that never comes again within the overlap, a hysteresis band held throughout) the
chunks cannot be spliced and :func:`splice` says so (``None``): the caller replays the log
whole, so the answer is the same either way, only slower.

Times summed per outcome are summed again from the spliced accounts in their order, so they
are the whole replay's to the last bit; frames read and decoded add up from the counts at the
splices; the log's bad lines are each chunk's own, in its part.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safety.engine.engine import Engine
from safety.errors import LogFormatError
from safety.io.blf import frames_in_header
from safety.io.columns import FrameColumns, read_columns
from safety.io.logs import format_from_suffix
from safety.replay.columnar import FrameSelector
from safety.replay.timeline import Timeline
from safety.vehicle.state import _Signal

#: Defaults of ``drivegate fleet``: a log longer than this many frames is cut into chunks.
DEFAULT_CHUNK_FRAMES = 4_000_000
#: Frames of warm-up before a chunk's start and of run-on after its end (a few minutes of a bus).
DEFAULT_OVERLAP_FRAMES = 400_000
#: Frames between fingerprints in an overlap (each costs about a millisecond).
DEFAULT_EVERY_FRAMES = 20_000

# What of each object a fingerprint holds, and what it leaves out and why (a test holds every
# attribute of these classes to one of the two lists, so a new attribute must be placed).
VEHICLE_STATE_FIELDS = (
    "_agree",
    "_signals",
    "_rate_ref",
    "latest_time",
    "_standstill",
    "_trigger_active",
    "_high_until",
    "_band",
    "_gear",
    "_speed_time",
    "_still_since",
    "_band_since",
    "_cells",
    "_derived_sig",
    "_expired",
    "_hold_pending",
    "next_expiry",
)
VEHICLE_STATE_NOT_STATE = {
    "config": "the profile's and policy's settings: the same in every chunk",
    "_cross": "settings",
    "_cross_by_name": "settings",
    "_resolution": "settings",
    "derive_rate": "settings",
    "_edges": "settings",
    "_watch": "settings",
    "_watch_values": "settings",
    "_triggers_of": "settings",
    "_rate_source": "settings",
    "fast_repeats": "settings",
    "counters": "counts only add up",
    "changes": "a count; the loop's own state says whether it moved since the last decision",
}
SELECTOR_FIELDS = ("_now", "_times", "_next_sample", "_streaming", "_held")
SELECTOR_NOT_STATE = {
    # Instants at which something may expire and the frame after one: they only make the
    # selector hand over more frames than it must, which changes no line (the streaming replay
    # hands over every frame).  Every instant the state in the fingerprint can expire at is
    # among them in both chunks: the samples it holds were seen by both.
    "_expiries": "a superset of the instants the fingerprinted state can expire at",
    "_after": "as _expiries",
    "_handlers": "the decoder's, compared there",
    "_resolve": "the decoder's",
    "_clock": "the decoder's, compared there",
    "_channel": "settings",
    "_sample_every": "settings",
    "_limits": "settings",
    "_mapped": "a memo of which ids the profile maps",
    "left_out": "counts only add up",
    "left_out_skipped": "counts only add up",
}
DECODER_NOT_STATE = {
    "profile": "settings",
    "frames_decoded": "counts only add up",
    "frames_short": "counts only add up",
    "rejected": "counts only add up",
    "e2e": "compared checker by checker",
    "_latest": "compared message by message",
    "_on_rebase": "settings",
    "clock": "compared on its own",
    "_pgn_groups": "settings",
    "_sink": "settings",
    "handlers": "built from the profile (a J1939 one on its first frame, with nothing seen yet)",
    "_misses": "a memo of 29-bit ids that match no PGN",
    "resolve": "settings",
}
CLOCK_FIELDS = ("time", "_pending", "_pending_count")
E2E_FIELDS = ("last_counter", "repeats", "trusted", "since_failure")


@dataclass(frozen=True)
class ChunkSpec:
    """Which frames one chunk reads, which it owns, and where it takes fingerprints."""

    index: int
    start: int  # the first frame it owns
    begin: int  # the first frame it reads (its warm-up starts here)
    stop: int | None  # the frame it stops before (None: the end of the log)
    checkpoints: tuple[int, ...]


def plan_chunks(
    frames: int,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overlap: int = DEFAULT_OVERLAP_FRAMES,
    every: int = DEFAULT_EVERY_FRAMES,
) -> list[ChunkSpec]:
    """Chunks of about ``chunk_frames`` frames for a log of about ``frames`` frames (one chunk
    when it is not half as long again).  The last chunk reads to the end, however long the log
    really is."""
    if chunk_frames < 1 or overlap < 1 or every < 1:
        raise ValueError("chunk_frames, overlap and every must be at least 1")
    if 2 * overlap >= chunk_frames:
        raise ValueError(f"the overlap ({overlap} frames) must be under half a chunk ({chunk_frames} frames)")
    # The nearest whole number of chunks: the frame count is an estimate, and a last chunk of a
    # few frames would read (parse) the whole log before it for almost nothing.
    count = max(1, math.floor(frames / chunk_frames + 0.5))
    starts = [k * chunk_frames for k in range(count)]
    borders = [range(b - overlap + every, b + overlap + 1, every) for b in starts[1:]]
    specs = []
    for k, start in enumerate(starts):
        head = borders[k - 1] if k > 0 else range(0)
        tail = borders[k] if k < count - 1 else range(0)
        stop = starts[k + 1] + overlap if k < count - 1 else None
        specs.append(ChunkSpec(k, start, max(0, start - overlap), stop, (*head, *tail)))
    return specs


def estimate_frames(path: str | Path, sample_bytes: int = 1 << 20) -> int:
    """About how many frames a log holds: a candump log's from the size of its first lines, a
    BLF log's from its header (0 for a BLF without one: it cannot be planned)."""
    if format_from_suffix(path) == "blf":
        return frames_in_header(path) or 0
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    lines = head.count(b"\n")
    whole = head.rfind(b"\n") + 1  # the bytes of the whole lines read
    return size if lines == 0 else math.ceil(size * lines / whole)


# ---------------------------------------------------------------------- fingerprints
def _plain(value: Any) -> Any:
    """``value`` as nested tuples of plain values, the same for equal states whatever the
    order things were inserted in (its ``repr`` is compared)."""
    if isinstance(value, Mapping):
        return tuple(sorted(((repr(k), _plain(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, set | frozenset):
        return tuple(sorted(repr(v) for v in value))
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, list | tuple | deque):
        return tuple(_plain(v) for v in value)
    if isinstance(value, _Signal):
        # The anchor's time counts only with an anchor, the pending level's with one pending.
        anchored, pending = value.anchor is not None, value.pending is not None
        return (
            value.max_age,
            _plain(value.value),
            value.time,
            value.why_unknown,
            value.anchor,
            value.anchor_time if anchored else None,
            value.pending,
            (value.pending_time, value.pending_count) if pending else None,
            value.rejected,
        )
    if is_dataclass(value) and not isinstance(value, type):
        return tuple(_plain(getattr(value, f.name)) for f in fields(value))
    return value


def fingerprint(engine: Engine, selector: FrameSelector, timeline: Timeline) -> str:
    """A digest of everything that decides the lines a replay writes from here on."""
    state, decoder = engine._state, engine._decoder
    latest = {key: times[0] for key, times in zip(decoder.handlers, decoder._latest, strict=True) if times[0] != -math.inf}
    parts = (
        tuple(_plain(getattr(state, name)) for name in VEHICLE_STATE_FIELDS),
        # The clock times frames only while the selector streams (it is given the time then).
        tuple(getattr(decoder.clock, name) for name in CLOCK_FIELDS) if selector._streaming else (),
        _plain(latest),
        _plain({label: tuple(getattr(c, name) for name in E2E_FIELDS) for label, c in decoder.e2e.items()}),
        tuple(_plain(getattr(selector, name)) for name in SELECTOR_FIELDS),
        _plain(timeline.run_state()),
    )
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------- one chunk
@dataclass
class ChunkRun:
    """One chunk's replay: its lines and accounts tagged with the position they came at, and its
    fingerprints (with the frames decoded and read so far) at each checkpoint."""

    spec: ChunkSpec
    lines: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    accounts: list[tuple[int, dict[str, str], float, float]] = field(default_factory=list)  # (at, outcomes, since, until)
    marks: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # position -> (fingerprint, decoded, read)
    # The log's bad lines and frames it read, each at its position (None: the error names no
    # line, in a format whose positions are not lines).
    errors: list[tuple[int | None, LogFormatError]] = field(default_factory=list)
    lined: bool = False  # positions are line indices (a candump log)
    frames_decoded: int = 0
    frames_read: int = 0
    end: int = 0  # the position after the last frame read
    reached_end: bool = False  # it read to the end of the log
    first_time: float | None = None
    last_time: float | None = None


class _ChunkTimeline(Timeline):
    """A timeline that also keeps each accounted interval, tagged with the frame it came at."""

    def __init__(self, run: ChunkRun, at: list[int], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run, self._at = run, at

    def _account(self, driving: str, outcomes: Mapping[str, str], since: float, until: float) -> None:
        self._run.accounts.append((self._at[0], dict(outcomes), since, until))
        super()._account(driving, outcomes, since, until)


def replay_chunk(
    engine: Engine, log: str | Path, probes: Iterable[Mapping[str, Any]], spec: ChunkSpec, *, rules: bool = False
) -> ChunkRun:
    """Replay the frames of ``log`` that ``spec`` reads, with the columnar replay."""
    run = ChunkRun(spec)
    at = [spec.begin]  # the position of the frames being replayed
    timeline = _ChunkTimeline(run, at, engine, probes, None, on_line=lambda line: run.lines.append((at[0], line)), rules=rules)
    selector = FrameSelector(engine, timeline.channel, timeline.sample_every)

    def mark(position: int) -> None:
        read = run.frames_read
        run.marks[position] = (fingerprint(engine, selector, timeline), engine._decoder.frames_decoded, read)

    def error(problem: LogFormatError) -> None:
        line = problem.location.line
        run.errors.append((line - 1 if line is not None else None, problem))

    run.lined = format_from_suffix(log) == "candump"
    batches = _chunk_batches(read_columns(log, on_error=error, start=spec.begin), spec, at, mark, run)
    timeline.run(selector.frames(batches), admit=selector.admit)
    run.frames_decoded = engine._decoder.frames_decoded
    run.first_time, run.last_time = timeline.summary.first_time, timeline.summary.last_time
    return run


def _chunk_batches(
    batches: Iterable[FrameColumns], spec: ChunkSpec, at: list[int], mark: Callable[[int], None], run: ChunkRun
) -> Iterator[FrameColumns]:
    """The batches of frames ``spec`` reads, cut at its checkpoints; ``mark(position)`` is
    called at each, when every frame before it has been replayed (and no later one)."""
    checkpoints = sorted(c for c in spec.checkpoints if c > spec.begin)
    next_mark = 0
    end = spec.begin  # the position after the last frame read
    exhausted = True
    for batch in batches:
        assert batch.positions is not None  # read_columns gives every batch its positions
        positions = batch.positions
        n = len(batch)
        high = n if spec.stop is None else int(np.searchsorted(positions, spec.stop))
        low = 0
        while low < high:
            here = int(positions[low])
            while next_mark < len(checkpoints) and checkpoints[next_mark] <= here:
                mark(checkpoints[next_mark])
                next_mark += 1
            cut = high
            if next_mark < len(checkpoints):
                cut = min(high, int(np.searchsorted(positions, checkpoints[next_mark])))
            at[0] = here
            run.frames_read += cut - low
            yield batch if low == 0 and cut == n else batch.rows(low, cut)
            low = cut
        if high:
            end = int(positions[high - 1]) + 1
        if high < n:
            exhausted = False
            break
    # Checkpoints after the last frame read: every frame before them has been replayed.
    limit = math.inf if exhausted or spec.stop is None else spec.stop
    while next_mark < len(checkpoints) and checkpoints[next_mark] <= limit:
        mark(checkpoints[next_mark])
        next_mark += 1
    at[0] = end
    run.end = end
    run.reached_end = exhausted


# ---------------------------------------------------------------------- the splice
@dataclass
class Spliced:
    """The chunks of one log joined: its whole timeline, accounts and counts."""

    lines: list[dict[str, Any]]
    outcome_seconds: dict[str, dict[str, float]]
    frames_read: int
    frames_decoded: int
    first_time: float | None
    last_time: float | None
    splices: list[int]  # the position of each splice
    errors: list[LogFormatError] = field(default_factory=list)  # the log's bad lines and frames, in order


def splice(runs: list[ChunkRun]) -> Spliced | None:
    """The chunks of one log (every one of its plan, in order) joined, or None where two
    neighbours never agree (replay the log whole)."""
    runs = sorted(runs, key=lambda r: r.spec.index)
    lines: list[dict[str, Any]] = []
    accounts: list[tuple[dict[str, str], float, float]] = []
    decoded = read = 0
    errors: list[LogFormatError] = []
    cut = 0  # where the current chunk's part begins
    splices: list[int] = []
    last: ChunkRun | None = None
    first_time: float | None = None
    for k, run in enumerate(runs):
        if first_time is None:
            # The first line's time.  A chunk whose part had none agreed at its splice with a
            # neighbour that had none either: the first line is a later chunk's.
            first_time = run.first_time
        _, decoded_base, read_base = run.marks[cut] if k > 0 else ("", 0, 0)
        if run.reached_end or k == len(runs) - 1:
            if not run.reached_end:
                return None  # cannot happen with a plan's chunks: the last reads to the end
            upto, decoded_upto, read_upto, last = math.inf, run.frames_decoded, run.frames_read, run
        else:
            following = runs[k + 1]
            shared = sorted(set(run.marks) & set(following.marks))
            agreed = [c for c in shared if c >= cut and run.marks[c][0] == following.marks[c][0]]
            if not agreed:
                return None
            upto = agreed[0]
            _, decoded_upto, read_upto = run.marks[upto]
            splices.append(upto)
        lines += [line for at, line in run.lines if cut <= at < upto]
        accounts += [(outcomes, since, until) for at, outcomes, since, until in run.accounts if cut <= at < upto]
        decoded += decoded_upto - decoded_base
        read += read_upto - read_base
        # A candump chunk reports the bad lines it parses, from its warm-up on; other formats
        # are read from their start by every chunk, so the last one has them all.
        if run.lined:
            # (One naming no line, none does in candump, would be the last chunk's.)
            errors += [e for at, e in run.errors if (cut <= at < upto if at is not None else last is not None)]
        elif last is not None:
            errors = [e for _, e in run.errors]
        if last is not None:
            break
        cut = int(upto)
    assert last is not None
    outcome_seconds: dict[str, dict[str, float]] = {}
    # The first interval starts at the first line, each one after where the one before ended
    # (a later chunk's own start is a line of its warm-up, not the log's).
    since = first_time if first_time is not None else 0.0
    for outcomes, _, until in accounts:  # as Timeline._account sums them, in the same order
        seconds, since = until - since, until
        for probe_id, outcome in outcomes.items():
            per = outcome_seconds.setdefault(probe_id, {})
            per[outcome] = per.get(outcome, 0.0) + seconds
    return Spliced(lines, outcome_seconds, read, decoded, first_time, last.last_time, splices, errors)
