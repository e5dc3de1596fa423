"""The explanation's account of how rules combined, in-process (#13).

``drivegate explain`` tests run the command in a child process, where mutation testing cannot
reach; these hold ``DecisionPipeline.explain`` itself to each note: a rule that holds, the
default used beside rules that may hold, an exception capping with the constraints of the
rules at its rank, an exception at the deciding rank, one that caps nothing; and two rules'
modalities merged.
"""

from __future__ import annotations

from typing import Any

import pytest

from safety import load_policy
from safety.decide.pipeline import DecisionPipeline
from safety.model.decision import Outcome

POLICY = """version: 1
name: notes
default: deny
rules:
  - id: parked-ok
    ref: "test"
    when: {driving_state: parked}
    outcome: allow
  - id: moving-voice
    ref: "test"
    when: {driving_state: moving, content: text}
    outcome: degrade
    constraints: {modality: audio, max_text_length: 40}
  - id: moving-audio
    ref: "test"
    when: {driving_state: moving, category: message}
    outcome: degrade
    constraints: {modality: audio}
  - id: critical
    ref: "test"
    when: {priority: critical}
    exception: true
    outcome: degrade
    constraints: {modality: voice}
  - id: keyboard-stopped
    ref: "test"
    when: {driving_state: stationary, content: keyboard}
    outcome: deny
  - id: keyboard-voice
    ref: "test"
    when: {driving_state: stationary, content: keyboard, priority: critical}
    outcome: degrade
    constraints: {max_text_length: 10}
"""
TEXT = {"kind": "notification", "category": "message", "modality": "visual", "content": "text", "priority": "normal", "text_length": 80}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> DecisionPipeline:
    path = tmp_path_factory.mktemp("notes") / "notes.yaml"
    path.write_text(POLICY)
    return DecisionPipeline(load_policy(path))


def state(driving: str | None, **more: Any) -> dict[str, Any]:
    return {"driving_state": driving, "workload": "low", "speed": 0.0 if driving == "parked" else 40.0, "gear": "P" if driving == "parked" else "D", **more}


def test_a_rule_that_holds_and_no_exception(pipeline: DecisionPipeline) -> None:
    c = pipeline.explain(state("parked"), TEXT).combination
    assert c is not None
    assert (c.default_note, c.cap_note, c.outcome) == ("a rule holds (parked-ok): the default is not used", "", Outcome.ALLOW)
    assert c.default_used is False and c.contributing == (("parked-ok", Outcome.ALLOW, True),)


def test_two_rules_audio_stays_audio_and_an_exception_that_matches_merges_in(pipeline: DecisionPipeline) -> None:
    c = pipeline.explain(state("moving"), TEXT).combination
    assert c is not None
    assert (c.outcome, c.rules, dict(c.constraints)) == (Outcome.DEGRADE, ("moving-voice", "moving-audio"), {"modality": "audio", "max_text_length": 40})
    c = pipeline.explain(state("moving"), {**TEXT, "priority": "critical"}).combination
    assert c is not None
    assert c.cap_note == "exception critical matches degrade: its constraints merge in"
    assert dict(c.constraints) == {"modality": "voice", "max_text_length": 40}


def test_an_exception_that_caps_keeps_the_constraints_at_its_rank(pipeline: DecisionPipeline) -> None:
    keyboard = {**TEXT, "content": "keyboard", "priority": "critical"}
    c = pipeline.explain(state("stationary"), keyboard).combination
    assert c is not None
    assert c.before_cap is Outcome.DENY and c.outcome is Outcome.DEGRADE
    assert c.cap_note == "exception critical caps deny at degrade; the constraints of keyboard-voice still apply"
    assert c.rules == ("critical", "keyboard-voice")
    assert dict(c.constraints) == {"modality": "voice", "max_text_length": 10}


def test_an_exception_that_caps_nothing_and_the_default_beside_unknown_rules(pipeline: DecisionPipeline) -> None:
    c = pipeline.explain(state("parked"), {**TEXT, "priority": "critical"}).combination
    assert c is not None
    assert c.cap_note == "exception critical (degrade) caps nothing: allow is less restrictive"
    # Unknown fields are decided world by world; the three-valued combination is in each world's
    # narrative: with the driving state unknown, the deny default stands beside rules that may hold.
    explained = pipeline.explain(state(None), {**TEXT, "category": "calendar"})
    assert explained.worlds is not None
    notes = {g.combination.default_note for g in explained.worlds.groups}
    assert "no rule holds: the default deny applies" in notes
