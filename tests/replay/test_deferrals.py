"""Deferrals over a replayed drive, exactly as the engine's deferral queue orders them."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT

from safety.decide.budgets import QUEUED
from safety.engine.engine import Engine
from safety.replay.columnar import replay_columnar
from safety.replay.deferrals import DEFAULT_TTL_S, Deferrals, deferrals, probe_ttl_s
from safety.replay.timeline import BUILTIN_PROBES


def timeline(*steps: tuple[float, str]) -> list[dict[str, object]]:
    return [{"t": t, "decisions": {"p": outcome}} for t, outcome in steps]


def test_released_at_the_first_permitted_change_before_the_deadline() -> None:
    lines = timeline((0.0, "allow"), (1.0, "defer"), (2.0, "deny"), (3.5, "degrade"), (4.0, "defer"), (5.0, "allow"))
    # Queued at 1 (deny at 2 keeps it queued), released at 3.5; queued at 4, released at 5.
    assert deferrals(lines, "p", ttl_s=10.0) == Deferrals(queued=2, released=2, waits=[2.5, 1.0])
    assert deferrals(lines, "p", ttl_s=10.0).median_wait == 1.75


def test_a_release_due_at_the_deadline_is_an_expiry() -> None:
    lines = timeline((0.0, "defer"), (2.0, "allow"))
    assert deferrals(lines, "p", ttl_s=2.0) == Deferrals(queued=1, expired=1)
    assert deferrals(lines, "p", ttl_s=2.000001) == Deferrals(queued=1, released=1, waits=[2.0])


def test_a_defer_past_the_deadline_queues_again_and_one_queued_at_the_end_is_pending() -> None:
    lines = timeline((0.0, "defer"), (1.0, "defer"), (5.0, "defer"), (6.0, "allow"), (7.0, "defer"))
    # 0: queued; 1: still queued (nothing new); 5: expired (deadline 3), queued again; 6: released.
    assert deferrals(lines, "p", ttl_s=3.0, end=8.0) == Deferrals(queued=3, released=1, expired=1, pending=1, waits=[1.0])
    # With the drive going on past the last deadline, the last one expired too.
    assert deferrals(lines, "p", ttl_s=3.0, end=10.0) == Deferrals(queued=3, released=1, expired=2, waits=[1.0])


def test_never_deferred_is_nothing() -> None:
    assert deferrals(timeline((0.0, "allow"), (1.0, "deny")), "p", ttl_s=1.0) == Deferrals()
    assert Deferrals().median_wait is None


def test_a_probe_queues_with_its_ttl_else_a_minute() -> None:
    assert probe_ttl_s({"id": "p", "ttl_ms": 2_500}) == 2.5
    assert probe_ttl_s({"id": "p", "ttl_ms": 0}) == 0.0
    assert probe_ttl_s({"id": "p"}) == DEFAULT_TTL_S == 60.0


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


@pytest.mark.parametrize("ttl_ms", [5_000, 20_000])
def test_on_the_demo_drive_the_counts_are_what_the_engines_queue_does(drive_log: Path, ttl_ms: int) -> None:
    """An assistant asking each probe at every change, with the real Engine's deferral queue."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    probes = [{**p, "ttl_ms": ttl_ms} for p in BUILTIN_PROBES]
    events: dict[str, Counter[str]] = {p["id"]: Counter() for p in probes}

    def at_each_change(line: dict[str, object]) -> None:
        t = float(line["t"])  # type: ignore[arg-type]
        for event in engine.release_deferred(t):
            events[event.request_id][event.kind] += 1
        decided = line["decisions"]
        assert isinstance(decided, dict)
        for probe in probes:
            if decided[probe["id"]] == "defer" and (None, probe["id"]) not in engine.deferred.pending:
                decision = engine.decide(probe, now=t)
                assert decision.outcome.value == "defer" and decision.reason.endswith(QUEUED)
                events[probe["id"]]["queued"] += 1

    lines: list[dict[str, object]] = []
    summary = replay_columnar(engine, drive_log, probes, None, on_line=lambda line: (lines.append(line), at_each_change(line)))
    assert summary.last_time is not None
    for event in engine.release_deferred(round(summary.last_time, 6)):
        events[event.request_id][event.kind] += 1
    pending = Counter(request_id for _, request_id in engine.deferred.pending)
    total = Deferrals()
    for probe in probes:
        found = deferrals(lines, probe["id"], probe_ttl_s(probe), round(summary.last_time, 6))  # type: ignore[arg-type]
        seen = events[probe["id"]]
        assert (found.queued, found.released, found.expired, found.pending) == (
            seen["queued"],
            seen["deliverable"],
            seen["expired"],
            pending[probe["id"]],
        ), probe["id"]
        total.queued += found.queued
        total.released += found.released
        total.expired += found.expired
    # The drive defers often enough for both endings to happen.
    assert total.queued > 10 and total.released > 0
    assert (total.expired > 0) == (ttl_ms == 5_000)
