"""Rule combination where several rules meet (#13): survivors of mutation testing, killed.

Each test names the mutant it was written against; each was checked to fail with that mutant
applied by hand before it was kept (tools/mutation.py finds the rest).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.decide.evaluate import Evaluator, Verdict
from safety.model.decision import Outcome
from safety.policy import load_policy

CRITICAL_CALL_VIDEO = {
    "kind": "notification",
    "category": "call",
    "modality": "visual",
    "content": "video",
    "priority": "critical",
}
KNOWN = {"driving_state": "moving", "workload": "low"}
TEXT = {"kind": "notification", "category": "message", "modality": "visual", "content": "text", "priority": "normal"}


def evaluate(tmp_path: Path, text: str, state: dict[str, object], request: dict[str, object]) -> Verdict:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nname: combination\n" + text, encoding="utf-8")
    return Evaluator(load_policy(path)).evaluate(state, request)


def test_the_most_restrictive_of_two_holding_exceptions_caps(tmp_path: Path) -> None:
    """Mutant: ``cap_rank = max(...)`` -> ``min``: the least restrictive exception would win."""
    policy = """\
default: {outcome: deny, reason: default deny}
rules:
  - {ref: test, id: lock-video, reason: video locked, when: {content: video}, outcome: deny}
  - id: critical-voice
    ref: test
    reason: critical by voice
    when: {priority: critical}
    outcome: degrade
    exception: true
    constraints: {modality: voice}
  - id: calls-wait
    ref: test
    reason: calls wait
    when: {category: call}
    outcome: defer
    exception: true
    constraints: {retry_after_ms: 2000}
"""
    v = evaluate(tmp_path, policy, KNOWN, CRITICAL_CALL_VIDEO)
    assert (v.outcome, v.rules, dict(v.constraints)) == (Outcome.DEFER, ("calls-wait",), {"retry_after_ms": 2000})
    assert v.reason == "calls wait (instead of deny)"


def test_several_defer_rules_take_the_longest_wait_and_every_until(tmp_path: Path) -> None:
    """Mutants in ``_merge_dicts``: ``max`` -> ``min`` for retry_after_ms, the ``until`` join."""
    policy = """\
default: {outcome: allow, reason: default allow}
rules:
  - {ref: test, id: short, reason: wait a little, when: {content: text}, outcome: defer,
     constraints: {retry_after_ms: 1000, until: stopped}}
  - {ref: test, id: long, reason: wait longer, when: {category: message}, outcome: defer,
     constraints: {retry_after_ms: 5000, until: low workload}}
  - {ref: test, id: again, reason: wait again, when: {priority: normal}, outcome: defer,
     constraints: {retry_after_ms: 3000, until: stopped}}
"""
    v = evaluate(tmp_path, policy, KNOWN, TEXT)
    assert (v.outcome, v.rules) == (Outcome.DEFER, ("short", "long", "again"))
    assert dict(v.constraints) == {"retry_after_ms": 5000, "until": "stopped; low workload"}
    assert v.reason == "wait a little; wait longer; wait again"
    # Found by this test: with the state unknown, each world's joined "until" was joined again
    # ("stopped; low workload; stopped; low workload; ..." once per world).
    unknown = evaluate(tmp_path, policy, {}, TEXT)
    assert dict(unknown.constraints) == {"retry_after_ms": 5000, "until": "stopped; low workload"}


def test_several_degrade_rules_merge_to_the_strictest(tmp_path: Path) -> None:
    """Mutants in ``_merge_dicts``: ``min`` -> ``max`` for lengths and items, voice over audio."""
    policy = """\
default: {outcome: allow, reason: default allow}
rules:
  - {ref: test, id: cut, reason: cut, when: {content: text}, outcome: degrade,
     constraints: {max_text_length: 120, max_list_items: 3, modality: audio}}
  - {ref: test, id: cut-more, reason: cut more, when: {category: message}, outcome: degrade,
     constraints: {max_text_length: 40, max_list_items: 6, modality: voice}}
  - {ref: test, id: cut-some, reason: cut some, when: {priority: normal}, outcome: degrade,
     constraints: {max_text_length: 80, modality: audio}}
"""
    v = evaluate(tmp_path, policy, KNOWN, TEXT)
    assert v.outcome is Outcome.DEGRADE
    assert dict(v.constraints) == {"max_text_length": 40, "max_list_items": 3, "modality": "voice"}


def test_an_exception_at_the_deciding_rank_adds_its_rule_reason_and_constraints(tmp_path: Path) -> None:
    """Mutants of the ``cap_rank == rank`` branch: the exception caps nothing but still counts."""
    policy = """\
default: {outcome: allow, reason: default allow}
rules:
  - {ref: test, id: cut, reason: text is cut, when: {content: text}, outcome: degrade, constraints: {max_text_length: 100}}
  - {ref: test, id: by-voice, reason: read it aloud, when: {category: message}, outcome: degrade, exception: true,
     constraints: {modality: voice}}
"""
    v = evaluate(tmp_path, policy, KNOWN, TEXT)
    assert (v.outcome, v.rules) == (Outcome.DEGRADE, ("cut", "by-voice"))
    assert dict(v.constraints) == {"max_text_length": 100, "modality": "voice"}
    assert v.reason == "text is cut; read it aloud"


ALLOW_DEFAULT = """\
default: {outcome: allow, reason: nothing here forbids it}
rules:
  - {ref: test, id: no-video-moving, reason: no video while moving, when: {driving_state: {ne: parked}, content: video},
     outcome: deny}
"""


@pytest.mark.parametrize(
    ("state", "request_fields", "expected"),
    [
        (KNOWN, TEXT, (Outcome.ALLOW, (), "nothing here forbids it")),
        (
            {**KNOWN, "driving_state": "parked"},
            {**TEXT, "content": "video"},
            (Outcome.ALLOW, (), "nothing here forbids it"),
        ),
        (KNOWN, {**TEXT, "content": "video"}, (Outcome.DENY, ("no-video-moving",), None)),
        # Unknown driving state: the most demanding world (moving) decides, not the allow default.
        ({}, {**TEXT, "content": "video"}, (Outcome.DENY, ("no-video-moving",), None)),
    ],
)
def test_a_policy_whose_default_is_allow(
    tmp_path: Path, state: dict[str, object], request_fields: dict[str, object], expected: tuple[object, ...]
) -> None:
    """Mutants of ``use_default`` and the default's rank: no test had a policy defaulting to allow."""
    v = evaluate(tmp_path, ALLOW_DEFAULT, state, request_fields)
    outcome, rules, reason = expected
    assert (v.outcome, v.rules) == (outcome, rules)
    if reason is not None:
        assert v.reason.startswith(reason)


def test_unknown_state_names_every_rule_that_decides_in_some_world(tmp_path: Path) -> None:
    """Mutant in ``_evaluate_worlds``: ``rank >`` -> ``>=``: only the last of the equally bad worlds."""
    policy = """\
default: {outcome: allow, reason: default allow}
rules:
  - {ref: test, id: not-moving, reason: not while moving, when: {driving_state: moving, content: video}, outcome: deny}
  - {ref: test, id: not-stopped, reason: not while stopped in gear, when: {driving_state: stationary, content: video},
     outcome: deny}
"""
    v = evaluate(tmp_path, policy, {"workload": "low"}, {**TEXT, "content": "video"})
    assert v.outcome is Outcome.DENY
    assert sorted(v.rules) == ["not-moving", "not-stopped"]
    assert set(v.reason.split(" [unknown")[0].split("; ")) == {"not while moving", "not while stopped in gear"}
