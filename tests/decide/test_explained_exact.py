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
