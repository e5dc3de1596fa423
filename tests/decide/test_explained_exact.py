"""An explained decision (``decide(..., explain=True)``) says when, why each signal is unknown,
and what a run-time budget changed: the parts the pipeline hands the explainer."""

from __future__ import annotations

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine


def test_the_explanation_names_the_time_and_why_each_signal_is_unknown() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    lines = engine.decide(request(id="a"), now=5.0, explain=True).reason.splitlines()
    assert lines[1] == f"policy default (default.yaml, hash {engine.policy.hash}) at t=5 s"
    assert "  unknown: speed, gear, steering_angle, steering_rate, parking_brake, turn_signal, brake_pressed (never received)" in lines
    assert "  unknown: driving_state (speed and gear unknown)" in lines


def test_the_explanation_says_what_a_budget_changed() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).state(10.0, speed=50.0, gear="D")
    glance = request(id="b", modality="visual", content="text", text_length=20, glance_ms=2500, task_id="t1")
    decision = engine.decide(glance, now=10.0, explain=True)
    assert decision.rules == ("glanceable-visual", "budget-glance")
    lines = decision.reason.splitlines()
    assert (
        "budget: a 2.5 s glance exceeds the single-glance budget of 2 s; read aloud instead "
        "(NHTSA-VM §VI (2 s single glance, 12 s total per task)): allow -> degrade (budget-glance)"
    ) in lines
    assert "decision: degrade" in lines and "  constraints: modality=voice" in lines


def test_an_explained_decision_carries_what_the_plain_one_carries() -> None:
    """``decide(explain=True)`` adds the explanation to the reason and changes nothing else:
    the budget's adjustment and the constraints met are those of the plain decision."""
    from safety.decide.pipeline import DecisionPipeline

    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).hold(9.0, 10.0, speed=15.0, gear="D", angle=200.0, parking_brake="RELEASED")  # a sharp turn
    values = engine.state(now=10.0).values
    glance = request(id="b", modality="visual", content="text", text_length=20, glance_ms=2500, task_id="t1")
    voice = request(priority="critical", modality="voice")  # degraded to voice: already met
    for asked in (glance, voice):
        plain = DecisionPipeline(engine.policy).decide(values, asked, 10.0, budgets=True)
        explained = DecisionPipeline(engine.policy).decide(values, asked, 10.0, budgets=True, explain=True)
        assert (explained.problem, explained.adjustment, explained.met) == (plain.problem, plain.adjustment, plain.met)
        mine, theirs = explained.decision.to_dict(), plain.decision.to_dict()
        assert mine.pop("reason").startswith(theirs.pop("reason") + "\n")
        assert mine == theirs  # outcome, rules, constraints, policy hash, state time, request id
        assert theirs["state_time"] == 10.0 and theirs["request_id"] == asked.get("id")
    assert plain.met == {"modality": "voice"}
    DemoCar(engine).hold(10.0, 14.0, speed=50.0, gear="D", angle=0.0, parking_brake="RELEASED")  # straight on, past the hold
    values = engine.state(now=14.0).values
    plain = DecisionPipeline(engine.policy).decide(values, glance, 14.0, budgets=True)
    explained = DecisionPipeline(engine.policy).decide(values, glance, 14.0, budgets=True, explain=True)
    assert plain.adjustment is not None and plain.adjustment.rule == "budget-glance"
    assert explained.adjustment == plain.adjustment
