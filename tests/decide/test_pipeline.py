"""The one decision pipeline: every part of DriveGate that decides goes through it, and fails closed the same way."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import DecisionPipeline, Engine, LoadError, Outcome, load_policy
from safety.cli.gen_drive import candump_lines
from safety.decide.evaluate import Evaluator
from safety.model.rules import RESERVED_RULE_IDS
from safety.replay.timeline import BUILTIN_PROBES, replay_file
from safety.workflow.simcar import Signal, SimCar, SimVehicle, case_timeline


def test_reserved_rule_ids_are_a_load_error_at_their_place(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: t\ndefault: deny\nrules:\n"
        "  - id: ok-rule\n    ref: NHTSA-2013\n    outcome: allow\n"
        "  - id: internal-error\n    ref: NHTSA-2013\n    outcome: allow\n"
        "  - {id: budget-glance, ref: NHTSA-2013, outcome: allow}\n"
    )
    with pytest.raises(LoadError) as info:
        load_policy(path)
    reserved = ", ".join(sorted(RESERVED_RULE_IDS))
    assert [str(e).replace(str(path), "p.yaml") for e in info.value.errors] == [
        f"p.yaml:8:9: reserved-id: rule id 'internal-error' is reserved: DriveGate itself puts it in decisions "
        f"({reserved}); choose another id",
        f"p.yaml:11:10: reserved-id: rule id 'budget-glance' is reserved: DriveGate itself puts it in decisions "
        f"({reserved}); choose another id",
    ]
    assert {
        "request-invalid",
        "internal-error",
        "budget-glance",
        "budget-task",
        "budget-rate",
        "client-fallback",
    } == RESERVED_RULE_IDS


def _moving_engine() -> tuple[Engine, DemoCar]:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    car = DemoCar(engine)
    car.hold(0.0, 1.0, speed=45.0, gear="D", parking_brake="RELEASED")
    return engine, car


def test_every_deciding_path_gives_the_same_decision() -> None:
    engine, _ = _moving_engine()
    req = request(id="m-1")
    snapshot = engine.state()
    decided = engine.decide(req)
    pipeline = DecisionPipeline(engine.policy)
    direct = pipeline.decide(snapshot.values, req, snapshot.time).decision
    assert decided == engine.verdict(req) == engine.view().verdict(req) == direct
    assert decided.outcome is Outcome.DEGRADE and decided.request_id == "m-1"
    explained = pipeline.explain(snapshot.values, req, time=snapshot.time).decision
    assert (explained.outcome, explained.rules, explained.reason) == (decided.outcome, decided.rules, decided.reason)
    # The simulated car of policy tests, at the same state, decides the same.
    signals = {
        "speed": Signal("value", 45.0),
        "gear": Signal("value", "D"),
        "parking_brake": Signal("value", "RELEASED"),
    }
    signals |= {name: Signal("value", 0.0) for name in ("steering_angle", "steering_rate")}
    signals |= {"turn_signal": Signal("value", "none"), "brake_pressed": Signal("value", False)}
    vehicle = SimVehicle()
    step, at = case_timeline(signals, frozenset(), vehicle)
    car = SimCar(engine.policy, vehicle, [step], at)
    got = car.decide(req, at)
    assert (got.outcome, got.rules, got.reason) == (decided.outcome, decided.rules, decided.reason)


def test_invalid_requests_are_denied_the_same_way_everywhere() -> None:
    engine, _ = _moving_engine()
    bad = {"id": "b-1", "kind": "notification", "category": "message", "modality": "smell"}
    decision = engine.decide(bad)
    assert decision.outcome is Outcome.DENY and decision.rules == ("request-invalid",)
    assert decision.constraints == {"field": "modality"}
    assert engine.verdict(bad) == engine.view().verdict(bad) == decision
    explanation = engine.explain(bad)
    assert explanation.request_problem and explanation.decision.rules == ("request-invalid",)
    assert explanation.decision.reason == decision.reason


def test_an_error_inside_evaluation_is_a_deny_on_every_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fault injection: the evaluator raises.  Nothing that decides may turn that into an allow."""
    engine, _ = _moving_engine()

    def broken(self: Evaluator, state: object, req: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(Evaluator, "verdict", broken)
    req = request(id="m-2", modality="voice")
    for decision in (
        engine.decide(req),
        engine.verdict(req),
        engine.view().verdict(req),
        engine.decide(req, explain=True),
    ):
        assert decision.outcome is Outcome.DENY
        assert decision.rules == ("internal-error",)
        assert decision.reason == "internal error while deciding (RuntimeError('injected')); denied"
        assert decision.request_id == "m-2"
    log = tmp_path / "drive.log"
    log.write_text("".join(candump_lines(start_time=0.0, channel="can0", frames=2000)))
    timeline = io.StringIO()
    replay_file(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY), log, BUILTIN_PROBES, timeline)
    lines = timeline.getvalue().splitlines()
    assert lines and all('"allow"' not in line and '"degrade"' not in line for line in lines)
