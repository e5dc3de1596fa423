"""Engine.verdict and Engine.view: what the rules decide, with none of decide()'s side effects."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, SPEED_BANDS_POLICY, DemoCar, request

from safety import Decision, Engine, Outcome
from safety.audit.decisionlog import read_lines
from safety.decide.evaluate import Evaluator
from safety.replay.timeline import BUILTIN_PROBES
from safety.service.events import Watcher
from safety.vehicle.state import VehicleState

QUEUED = " (queued until deliverable or expired)"
DRIVING: dict[str, Any] = {"gear": "D", "parking_brake": "RELEASED"}


def gear_sna(car: DemoCar) -> None:
    car.hold(0.0, 1.0, speed=45.0, **DRIVING)
    car.send("TRANSMISSION", 1.01, GearPosition="SNA")


# name -> (what the car sends, the ``now`` asked at): parked, driving, high workload, unknown.
STATES: dict[str, tuple[Callable[[DemoCar], None], float | None]] = {
    "no-frames": (lambda car: None, None),
    "parked": (lambda car: car.hold(0.0, 1.0), None),
    "moving": (lambda car: car.hold(0.0, 1.0, speed=45.0, **DRIVING), None),
    "stationary-in-drive": (lambda car: car.hold(0.0, 1.0, speed=0.0, **DRIVING), None),
    "reversing": (lambda car: car.hold(0.0, 1.0, speed=3.0, gear="R", parking_brake="RELEASED"), None),
    "sharp-steering": (lambda car: car.hold(0.0, 1.0, speed=30.0, angle=90.0, rate=200.0, **DRIVING), None),
    "stale": (lambda car: car.hold(0.0, 1.0, speed=45.0, **DRIVING), 5.0),
    "gear-not-available": (gear_sna, None),
}


def spread() -> list[dict[str, Any]]:
    """The built-in probes and every combination of the enum fields (no glance: budgets apart)."""
    requests = [dict(p) for p in BUILTIN_PROBES]
    combos = itertools.product(
        ("notification", "interaction"),
        ("message", "call", "navigation"),
        ("visual", "audio", "voice", "manual"),
        ("text", "image", "video", "list", "keyboard", "none"),
        ("critical", "high", "normal", "low"),
    )
    for i, (kind, category, modality, content, priority) in enumerate(combos):
        fields: dict[str, Any] = {
            "kind": kind,
            "category": category,
            "modality": modality,
            "content": content,
            "priority": priority,
        }
        fields["text_length"] = (None, 12, 80)[i % 3]
        fields["list_items"] = (None, 3, 20)[i % 2]
        if i % 5 == 0:
            fields.update(id=f"r{i}", ttl_ms=30_000)  # decide() queues these when it defers
        requests.append(request(**fields))
    return requests


def same_but_side_effects(verdict: Decision, decided: Decision) -> None:
    """decide() = verdict, but for the note decide() adds when it queues a deferral."""
    assert decided.reason in (verdict.reason, verdict.reason + QUEUED)
    assert verdict == replace(decided, reason=verdict.reason)


@pytest.mark.parametrize("state", sorted(STATES))
def test_verdict_is_what_decide_decides(state: str) -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    drive, now = STATES[state]
    drive(DemoCar(engine))
    outcomes = set()
    for req in spread():
        before = engine.verdict(req, now)
        decided = engine.decide(req, now)
        same_but_side_effects(before, decided)
        assert engine.verdict(req, now) == before  # deciding changed nothing a verdict sees
        outcomes.add(before.outcome)
    if state == "moving":  # the spread reaches every outcome the default policy has but defer
        assert outcomes == {Outcome.ALLOW, Outcome.DEGRADE, Outcome.DENY}
    if state == "reversing":
        assert Outcome.DEFER in outcomes


def test_invalid_requests_get_decides_deny(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.5, speed=45.0, **DRIVING)
    for bad in (
        request(colour="red"),
        request(content="hologram", id="bad-1"),
        request(priority=None),
        request(text_length=-3),
        request(glance_ms="long", task_id="t"),
        "show me",
        None,
    ):
        verdict = engine.verdict(bad)  # type: ignore[arg-type]
        assert verdict.outcome is Outcome.DENY and verdict.rules == ("request-invalid",)
        assert verdict == engine.decide(bad)  # type: ignore[arg-type]


def test_verdict_consumes_no_glance_budget(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 1.0, speed=45.0, **DRIVING)  # moving: short text is allowed on screen, budgets apply
    step = request(text_length=20, glance_ms=1500, task_id="inbox")
    fresh = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(fresh).hold(0.0, 1.0, speed=45.0, **DRIVING)
    for _ in range(50):  # 75 s of glances, if verdicts counted
        assert engine.verdict(step).rules == ("glanceable-visual",)
    after_verdicts = [engine.decide(step) for _ in range(10)]
    untouched = [fresh.decide(step) for _ in range(10)]
    assert after_verdicts == untouched
    # 8 x 1.5 s fill the 12 s task budget; the 9th step is read aloud instead.
    assert [d.rules for d in untouched[:8]] == [("glanceable-visual",)] * 8
    assert untouched[8].rules == ("glanceable-visual", "budget-task")
    assert untouched[8].constraints == {"modality": "voice"}


def test_verdict_applies_no_budget(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 1.0, speed=45.0, **DRIVING)
    long_glance = request(text_length=20, glance_ms=2500)
    assert engine.verdict(long_glance).rules == ("glanceable-visual",)
    assert engine.decide(long_glance).rules == ("glanceable-visual", "budget-glance")


def test_verdict_queues_nothing(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 1.0, speed=3.0, gear="R", parking_brake="RELEASED")  # reversing: workload high
    held = request(id="m-1", ttl_ms=5000)
    for _ in range(3):
        verdict = engine.verdict(held)
        assert verdict.outcome is Outcome.DEFER and not verdict.reason.endswith(QUEUED)
    assert engine.deferred.pending == {} and engine.counters["deferred_pending"] == 0
    assert engine.release_deferred() == []
    assert engine.decide(held).reason == verdict.reason + QUEUED
    assert list(engine.deferred.pending) == [(None, "m-1")]  # (owner, id): in process the owner is None


def test_verdict_writes_no_decision_log(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=log)
    DemoCar(engine).hold(0.0, 1.0, speed=45.0, **DRIVING)
    for req in [*spread()[:50], request(colour="red"), request(id="q", ttl_ms=100)]:
        engine.verdict(req)
    watcher = Watcher(engine)  # the service's subscriber events ask verdicts too
    watcher.check(0.5)
    DemoCar(engine).hold(1.01, 3.0)  # parked (after the standstill dwell): every probe's restriction changes
    assert [e["event"] for e in watcher.check(3.0) if e["event"] == "restrictions"] == ["restrictions"]
    assert read_lines(log) == []
    assert engine.log_errors == 0
    engine.decide(request())
    assert len(read_lines(log)) == 1


def test_verdict_never_raises(engine: Engine, car: DemoCar, monkeypatch: pytest.MonkeyPatch) -> None:
    car.hold(0.0, 0.5)

    def broken(*args: object) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Evaluator, "verdict", broken)
    verdict = engine.verdict(request(id="x"))
    assert verdict == engine.decide(request(id="x"))
    assert (verdict.outcome, verdict.rules, verdict.request_id) == (Outcome.DENY, ("internal-error",), "x")
    assert "RuntimeError('boom')" in verdict.reason
    monkeypatch.setattr(VehicleState, "snapshot", broken)  # the read of the state fails
    verdict = engine.verdict(request(id="y"), now=0.7)
    assert verdict == engine.decide(request(id="y"), now=0.7)
    assert verdict.rules == ("internal-error",) and verdict.policy_hash == engine.policy.hash


def test_view_is_one_read_and_tells_what_changed(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 1.0)
    parked = engine.view()
    assert parked.time == 1.0 and parked.policy is engine.policy
    assert parked.values["driving_state"] == "parked"
    with pytest.raises(TypeError):
        parked.values["driving_state"] = "moving"  # type: ignore[index]
    car.hold(1.01, 1.5)  # more of the same: nothing a decision can see changed
    still = engine.view()
    assert still.time == 1.5 and still.unchanged_since(parked) and not still.unchanged_since(None)
    car.hold(1.51, 2.0, speed=45.0, **DRIVING)
    moving = engine.view()
    assert not moving.unchanged_since(still)
    video = request(content="video")
    assert (parked.verdict(video).outcome, moving.verdict(video).outcome) == (Outcome.ALLOW, Outcome.DENY)
    # A reload after the read: the view keeps answering with the state and policy it read.
    old_hash = engine.policy.hash
    assert engine.reload(SPEED_BANDS_POLICY, checks=[]) == "active"
    assert engine.policy.hash != old_hash
    assert moving.verdict(video).policy_hash == old_hash
    reloaded = engine.view()
    assert not reloaded.unchanged_since(moving)
    assert reloaded.verdict(video).policy_hash == engine.policy.hash == engine.verdict(video).policy_hash
