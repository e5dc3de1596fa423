"""Decisions mean what they say (#10, item 6): a degrade whose constraints the request already
meets is an allow, keeping the deciding rules and reason; constraints only ever name a change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine
from safety.model.decision import Outcome

SHARP_TURN = {"speed": 15.0, "gear": "D", "angle": 200.0, "parking_brake": "RELEASED"}
MET = " (the request already meets the constraints)"


@pytest.fixture
def turning() -> Engine:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).hold(0.0, 1.0, **SHARP_TURN)
    return engine


def test_critical_voice_in_a_sharp_turn_is_allow(turning: Engine) -> None:
    """The finding: critical + voice during a sharp turn came back degrade {modality: voice}."""
    d = turning.decide(request(priority="critical", modality="voice"))
    assert (d.outcome, d.rules, dict(d.constraints)) == (Outcome.ALLOW, ("critical-by-voice",), {})
    assert d.reason == "critical information is always delivered, read aloud (instead of deny)" + MET
    assert d.permitted


def test_critical_visual_in_a_sharp_turn_is_still_degraded_to_voice(turning: Engine) -> None:
    d = turning.decide(request(priority="critical", modality="visual"))
    assert (d.outcome, dict(d.constraints)) == (Outcome.DEGRADE, {"modality": "voice"})


CUT_POLICY = """\
version: 1
name: cut
default: {outcome: deny, reason: default deny}
rules:
  - id: cut-and-read
    ref: "AAOS LIMIT_STRING_LENGTH"
    reason: text is cut to 120 characters and read aloud while moving
    when: {driving_state: moving, content: text}
    outcome: degrade
    constraints: {max_text_length: 120, modality: voice}
"""


def test_only_the_constraints_not_yet_met_are_named(tmp_path: Path) -> None:
    policy = tmp_path / "cut.yaml"
    policy.write_text(CUT_POLICY)
    engine = Engine.load(DEMO_VEHICLE, policy)
    DemoCar(engine).hold(0.0, 1.0, speed=30.0, gear="D", parking_brake="RELEASED")
    both = engine.decide(request(text_length=200))
    assert (both.outcome, dict(both.constraints)) == (Outcome.DEGRADE, {"max_text_length": 120, "modality": "voice"})
    voice_only = engine.decide(request(text_length=100))
    assert (voice_only.outcome, dict(voice_only.constraints)) == (Outcome.DEGRADE, {"modality": "voice"})
    met = engine.decide(request(text_length=100, modality="voice"))
    assert (met.outcome, met.rules, dict(met.constraints)) == (Outcome.ALLOW, ("cut-and-read",), {})
    assert met.reason == "text is cut to 120 characters and read aloud while moving" + MET
    # Without a length nobody can know the text fits: the limit stays.
    unknown = engine.decide(request(text_length=None, modality="voice"))
    assert (unknown.outcome, dict(unknown.constraints)) == (Outcome.DEGRADE, {"max_text_length": 120})


def test_voice_input_is_met_by_a_voice_request_without_a_keyboard(tmp_path: Path) -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).hold(0.0, 1.0, speed=30.0, gear="D", parking_brake="RELEASED")
    typed = engine.decide(request(kind="interaction", modality="manual", content="keyboard"))
    assert (typed.outcome, dict(typed.constraints)) == (Outcome.DEGRADE, {"input": "voice"})
    spoken = engine.decide(request(kind="interaction", modality="voice", content="keyboard"))
    assert (spoken.outcome, dict(spoken.constraints)) == (Outcome.DEGRADE, {"input": "voice"})


def test_the_verdict_and_the_explanation_say_the_same(turning: Engine) -> None:
    req = request(priority="critical", modality="voice")
    assert turning.verdict(req).outcome is Outcome.ALLOW
    explanation = turning.explain(req)
    assert explanation.decision.outcome is Outcome.ALLOW
    assert "the request already meets the constraints (modality voice): allow" in explanation.render()
