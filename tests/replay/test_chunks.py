"""A long log replayed as chunks and spliced is the whole replay, line for line and second for second.

On the demo drive, on the real logs of ../shared/data (skipped when absent) and on random
drives (hypothesis, chunks of a few frames cut anywhere); where neighbours never agree the
splice says so rather than guess.  The fingerprint's lists name every attribute of the
objects it reads, so a new attribute cannot be left out unnoticed.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_columnar import SPEED_BANDS, drives

from safety import Engine
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay import chunks
from safety.replay.chunks import ChunkSpec, estimate_frames, fingerprint, plan_chunks, replay_chunk, splice
from safety.replay.columnar import FrameSelector, timeline_lines
from safety.replay.timeline import BUILTIN_PROBES, Timeline
from safety.vehicle.clock import StreamClock
from safety.vehicle.e2e import E2EChecker
from safety.vehicle.state import _Signal

RAV4_TSS2 = ROOT / "tests" / "profiles" / "rav4_tss2.yaml"


def whole_and_spliced(
    log: Path, plan: list[ChunkSpec], vehicle: Path | str = DEMO_VEHICLE, policy: Path | str = DEFAULT_POLICY
) -> tuple[Any, Any]:
    lines, summary = timeline_lines(Engine.load(vehicle, policy), log, BUILTIN_PROBES, rules=True)
    runs = [replay_chunk(Engine.load(vehicle, policy), log, BUILTIN_PROBES, spec, rules=True) for spec in plan]
    return (lines, summary), splice(runs)


def assert_same(whole: Any, spliced: Any) -> None:
    lines, summary = whole
    assert spliced.lines == lines
    assert spliced.outcome_seconds == summary.outcome_seconds  # to the last bit, in the same key order
    assert list(spliced.outcome_seconds) == list(summary.outcome_seconds)
    assert (spliced.frames_read, spliced.frames_decoded) == (summary.frames_read, summary.frames_decoded)
    assert (spliced.first_time, spliced.last_time) == (summary.first_time, summary.last_time)
    assert [str(e) for e in spliced.errors] == [str(e) for e in summary.log_errors]


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


# ------------------------------------------------------------------ the plan
def test_a_plan_owns_every_frame_once_with_its_overlaps() -> None:
    assert plan_chunks(25, 10, 3, 2) == [
        ChunkSpec(0, 0, 0, 13, (9, 11, 13)),
        ChunkSpec(1, 10, 7, 23, (9, 11, 13, 19, 21, 23)),
        ChunkSpec(2, 20, 17, None, (19, 21, 23)),
    ]
    assert plan_chunks(10, 10, 3, 2) == [ChunkSpec(0, 0, 0, None, ())]
    assert plan_chunks(0, 10, 3, 2) == [ChunkSpec(0, 0, 0, None, ())]


def test_a_plan_refuses_what_cannot_splice() -> None:
    with pytest.raises(ValueError, match=r"^the overlap \(5 frames\) must be under half a chunk \(10 frames\)$"):
        plan_chunks(100, 10, 5, 1)
    with pytest.raises(ValueError, match=r"^chunk_frames, overlap and every must be at least 1$"):
        plan_chunks(100, 10, 0, 1)


def test_the_frames_of_a_candump_log_are_estimated_from_its_first_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("(1.000000) can0 123#00\n" * 1000)
    assert estimate_frames(log) == 1000
    assert estimate_frames(log, sample_bytes=240) == 1000  # ten whole lines of 23 bytes, and part of one
    (tmp_path / "b.log").write_bytes(b"")
    assert estimate_frames(tmp_path / "b.log") == 0


def test_the_frames_of_a_blf_log_are_estimated_from_its_header(drive_log: Path, tmp_path: Path) -> None:
    blf = tmp_path / "drive.blf"
    frames = write_frames(blf, read_log(drive_log))
    assert estimate_frames(blf) == frames == 51952  # the header counts the objects python-can wrote
    # A header without a count (0): the frames its uncompressed size can hold, 48 bytes each.
    raw = bytearray(blf.read_bytes())
    raw[32:36] = bytes(4)  # the object count, after the signature, header size, versions and two sizes
    blf.write_bytes(bytes(raw))
    assert 51952 <= estimate_frames(blf) <= 51952 * 1.01


# ------------------------------------------------------------------ spliced = whole
@pytest.mark.parametrize(("chunk_frames", "overlap", "every"), [(20_000, 8_000, 200), (15_000, 6_000, 100), (12_000, 5_000, 7)])
def test_the_demo_drive_spliced_is_the_whole_replay(drive_log: Path, chunk_frames: int, overlap: int, every: int) -> None:
    plan = plan_chunks(51_952, chunk_frames, overlap, every)
    whole, spliced = whole_and_spliced(drive_log, plan)
    # The first chunk that reads to the end of the log is the last one used.
    used = next(i for i, spec in enumerate(plan) if spec.stop is None or spec.stop > 51_952) + 1
    assert spliced is not None and len(spliced.splices) == used - 1
    for border, at in zip(plan[1:used], spliced.splices, strict=True):
        assert border.start - overlap < at <= border.start + overlap
    assert_same(whole, spliced)


def test_the_demo_drive_under_another_policy(drive_log: Path) -> None:
    whole, spliced = whole_and_spliced(drive_log, plan_chunks(51_952, 20_000, 8_000, 200), policy=SPEED_BANDS)
    assert spliced is not None
    assert_same(whole, spliced)


def test_a_blf_drive_spliced_is_the_whole_replay(drive_log: Path, tmp_path: Path) -> None:
    blf = tmp_path / "drive.blf"
    write_frames(blf, read_log(drive_log))
    plan = plan_chunks(estimate_frames(blf), 15_000, 6_000, 100)
    assert len(plan) == 3  # 51,952 frames: the nearest whole number of chunks
    whole, spliced = whole_and_spliced(blf, plan)
    assert spliced is not None and spliced.splices
    assert_same(whole, spliced)


def test_a_plan_shorter_than_the_log_reads_it_to_the_end(drive_log: Path) -> None:
    """The plan comes from an estimate: the last chunk reads on to the end, a chunk past the end is empty."""
    whole, spliced = whole_and_spliced(drive_log, plan_chunks(30_000, 15_000, 6_000, 100))
    assert spliced is not None and spliced.frames_read == 51_952
    assert_same(whole, spliced)
    whole, spliced = whole_and_spliced(drive_log, plan_chunks(90_000, 30_000, 8_000, 100))  # a third chunk past the end
    assert spliced is not None
    assert_same(whole, spliced)


def test_a_first_chunk_with_nothing_to_decide_is_spliced_to_the_first_line(drive_log: Path, tmp_path: Path) -> None:
    """Only remote frames (skipped) before the drive: the first chunks write no line, and the
    first interval is timed from the later chunk's first line, as the whole replay times it."""
    drive = drive_log.read_text().splitlines(keepends=True)[:3_000]
    stamp = drive[0].split()[0]
    log = tmp_path / "late.log"
    log.write_text(f"{stamp} can0 123#R\n" * 45 + "".join(drive))
    plan = plan_chunks(60, 30, 6, 1)  # [0, 36) and [24, the end): the first sees no frame to decide
    whole, spliced = whole_and_spliced(log, plan)
    assert spliced is not None and spliced.splices == [25]
    assert_same(whole, spliced)


def test_neighbours_that_never_agree_are_not_spliced(drive_log: Path) -> None:
    """Overlaps of 4,000 frames (a few seconds): a workload hold seen by one chunk and not by the
    other keeps their states apart, and the splice says so instead of joining them."""
    plan = plan_chunks(51_952, 10_000, 4_000, 100)
    runs = [replay_chunk(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY), drive_log, BUILTIN_PROBES, spec, rules=True) for spec in plan]
    assert splice(runs) is None
    third, fourth = runs[2], runs[3]
    shared_marks = set(third.marks) & set(fourth.marks)
    assert shared_marks and all(third.marks[c][0] != fourth.marks[c][0] for c in shared_marks)


REAL = [
    (("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz"), 68_178, 10_000, 3_000),
    (("verifiedcan_rav4_tss2", "rav4_2020-03-02_steering.log.gz"), 42_867, 10_000, 3_000),
    (("verifiedcan_rav4_tss2", "2020-02-03-14-31-11-510096__CAN_Message_.csv"), 68_178, 20_000, 6_000),
]


@pytest.mark.parametrize(("log", "frames", "chunk_frames", "overlap"), REAL, ids=[parts[1] for parts, *_ in REAL])
def test_real_logs_spliced_are_the_whole_replay(log: tuple[str, str], frames: int, chunk_frames: int, overlap: int) -> None:
    path = shared(*log)
    plan = plan_chunks(frames, chunk_frames, overlap, 100)
    for policy in (DEFAULT_POLICY, SPEED_BANDS):
        whole, spliced = whole_and_spliced(path, plan, RAV4_TSS2, policy)
        assert spliced is not None and spliced.splices
        assert_same(whole, spliced)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drives(), st.integers(4, 30), st.data())
def test_random_drives_spliced_are_the_whole_replay(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[float, str]], chunk_frames: int, data: st.DataObject
) -> None:
    """Chunks of a few frames over random drives (gaps, repeats, SNA values, late frames, time
    jumps, bad lines): wherever a splice is found, it is the whole replay's answer."""
    overlap = data.draw(st.integers(1, (chunk_frames - 1) // 2))
    every = data.draw(st.integers(1, overlap))
    policy = data.draw(st.sampled_from([DEFAULT_POLICY, SPEED_BANDS]))
    path = tmp_path_factory.mktemp("drive") / "random.log"
    path.write_text("".join(line + "\n" for _, line in lines))
    frames = sum(1 for _, line in lines if line.startswith("("))
    whole, spliced = whole_and_spliced(path, plan_chunks(frames, chunk_frames, overlap, every), policy=policy)
    event("not spliced" if spliced is None else f"spliced at {len(spliced.splices)} border(s)")
    if spliced is not None:
        assert_same(whole, spliced)


# ------------------------------------------------------------------ the fingerprint
def _attributes(obj: Any) -> set[str]:
    if hasattr(obj, "__dict__"):
        return set(vars(obj))
    return {name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())}


def test_every_attribute_is_in_the_fingerprint_or_said_not_to_be_state(drive_log: Path) -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    timeline = Timeline(engine, BUILTIN_PROBES, None)
    selector = FrameSelector(engine, timeline.channel, timeline.sample_every)
    state, decoder = engine._state, engine._decoder
    assert _attributes(state) == set(chunks.VEHICLE_STATE_FIELDS) | set(chunks.VEHICLE_STATE_NOT_STATE)
    assert _attributes(selector) == set(chunks.SELECTOR_FIELDS) | set(chunks.SELECTOR_NOT_STATE)
    assert _attributes(decoder) == set(chunks.DECODER_NOT_STATE)
    assert _attributes(decoder.clock) == set(chunks.CLOCK_FIELDS) | {"confirm", "max_jump", "on_rebase", "rejected"}
    checker = next(iter(decoder.e2e.values()))
    assert isinstance(checker, E2EChecker) and isinstance(decoder.clock, StreamClock)
    assert _attributes(checker) == set(chunks.E2E_FIELDS) | {"_read", "counts", "protection"}
    assert {f.name for f in dataclasses.fields(_Signal)} == {
        "max_age", "value", "time", "why_unknown", "anchor", "anchor_time", "pending", "pending_time", "pending_count", "rejected",
    }  # fmt: skip


def test_the_fingerprint_tells_states_apart_and_not_their_counts(drive_log: Path) -> None:
    def replayed() -> tuple[Engine, FrameSelector, Timeline]:
        engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
        timeline = Timeline(engine, BUILTIN_PROBES, None)
        selector = FrameSelector(engine, timeline.channel, timeline.sample_every)
        from safety.io.columns import read_columns

        timeline.run(selector.frames(read_columns(drive_log)), admit=selector.admit)
        return engine, selector, timeline

    a, b = replayed(), replayed()
    assert fingerprint(*a) == fingerprint(*b)
    b[0]._state.counters.implausible["speed"] = 99  # counts only add up
    b[0]._decoder.frames_decoded += 1
    b[1].left_out += 1
    assert fingerprint(*a) == fingerprint(*b)
    for change in (
        lambda e, s, t: setattr(e._state, "_band", 7),
        lambda e, s, t: setattr(e._state, "_high_until", e._state._high_until + 1.0),
        lambda e, s, t: setattr(e._state._signals["speed"], "value", 1234.5),
        lambda e, s, t: setattr(next(iter(e._decoder.e2e.values())), "trusted", False),
        lambda e, s, t: e._decoder._latest[0].__setitem__(0, e._decoder._latest[0][0] + 1.0),
        lambda e, s, t: setattr(s, "_next_sample", 5.0),
    ):
        c = replayed()
        change(*c)
        assert fingerprint(*c) != fingerprint(*a)
    # An anchor's time without an anchor, a pending level's time without one: nothing to tell apart.
    c = replayed()
    gear = c[0]._state._signals["gear"]
    assert gear.anchor is None and gear.pending is None
    gear.anchor_time, gear.pending_time, gear.pending_count = -math.inf, 3.0, 2
    assert fingerprint(*c) == fingerprint(*a)
