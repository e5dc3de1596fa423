"""Deciding with unknown request fields, exactly: every world up to MAX_WORLDS, then one
three-valued evaluation; the worst worlds' rules and reasons joined without repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.decide.evaluate import MAX_WORLDS, Evaluator, Verdict
from safety.model.decision import Outcome
from safety.policy import load_policy
from safety.policy.compile import CompiledPolicy

# A text notification with no text_length or list_items: both unknown, every value possible.
REQUEST = {"kind": "notification", "category": "message", "modality": "visual", "content": "text", "priority": "normal"}
MOVING = {"driving_state": "moving", "workload": "low"}


def policy(tmp_path: Path, default: str, rules: str) -> CompiledPolicy:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nname: worlds\ndefault: {default}\nrules:\n{rules}")
    return load_policy(path)


def test_one_worst_world_decides(tmp_path: Path) -> None:
    # Worlds: text_length 99, 100, 101; only 101 is denied.
    p = policy(tmp_path, "allow", "  - {id: long, ref: t, when: {text_length: {gt: 100}}, outcome: deny, reason: too long}\n")
    assert p.representatives["text_length"] == (99.0, 100, 101)
    assert Evaluator(p).evaluate(MOVING, REQUEST) == Verdict(Outcome.DENY, ("long",), "too long", {})


def test_the_worst_worlds_reasons_are_joined_without_repeats(tmp_path: Path) -> None:
    # Worlds 15 and 20 are denied by a, world 21 by a and b ("over ten; over twenty").
    rules = (
        "  - {id: a, ref: t, when: {text_length: {gt: 10}}, outcome: deny, reason: over ten}\n"
        "  - {id: b, ref: t, when: {text_length: {gt: 20}}, outcome: deny, reason: over twenty}\n"
    )
    verdict = Evaluator(policy(tmp_path, "allow", rules)).evaluate(MOVING, REQUEST)
    assert verdict == Verdict(Outcome.DENY, ("a", "b"), "over ten; over twenty", {})


def _crowded(tmp_path: Path, text_cuts: int, list_cuts: int, default: str = "allow") -> CompiledPolicy:
    """Allow rules that only make cells (2k + 1 worlds per field), and a deny rule no world satisfies."""
    rules = "".join(f"  - {{id: text-{i}, ref: t, when: {{text_length: {{gt: {i}}}}}, outcome: allow}}\n" for i in range(text_cuts))
    rules += "".join(f"  - {{id: list-{i}, ref: t, when: {{list_items: {{gt: {i}}}}}, outcome: allow}}\n" for i in range(list_cuts))
    rules += "  - {id: never, ref: t, when: {all: [{text_length: {gt: 5}}, {text_length: {le: 5}}]}, outcome: deny, reason: no world}\n"
    return policy(tmp_path, default, rules)


def test_up_to_max_worlds_each_world_is_decided_and_past_it_one_three_valued_evaluation(tmp_path: Path) -> None:
    under = _crowded(tmp_path, 31, 32)  # 63 x 65 = 4095 worlds
    assert len(under.representatives["text_length"]) * len(under.representatives["list_items"]) == MAX_WORLDS - 1
    decided = Evaluator(under).evaluate(MOVING, REQUEST)
    # No world satisfies 'never': every world is allowed.
    assert (decided.outcome, "never" in decided.rules) == (Outcome.ALLOW, False)
    over = _crowded(tmp_path, 8, 120)  # 17 x 241 = 4097 worlds
    assert len(over.representatives["text_length"]) * len(over.representatives["list_items"]) == MAX_WORLDS + 1
    # Three-valued, 'never' may hold (text_length unknown on both sides): fail closed.
    assert Evaluator(over).evaluate(MOVING, REQUEST) == Verdict(Outcome.DENY, ("never",), "no world", {})


def test_a_rule_that_may_hold_at_the_defaults_rank_is_decided_with_the_default(tmp_path: Path) -> None:
    # Past MAX_WORLDS, 'never' only may hold; the default (deny) is as restrictive: both decide.
    verdict = Evaluator(_crowded(tmp_path, 8, 120, default="deny")).evaluate(MOVING, REQUEST)
    assert verdict == Verdict(Outcome.DENY, ("never",), "no world; no rule matched; the policy's default is deny", {})


def test_the_verdict_cache_never_holds_more_than_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limit made small (it is 65,536): every distinct cell of a text length is a new entry.
    from safety.decide import evaluate

    monkeypatch.setattr(evaluate, "_MAX_CACHE", 4)
    rules = "".join(f"  - {{id: over-{i}, ref: t, when: {{text_length: {{gt: {i}}}}}, outcome: deny}}\n" for i in range(10))
    evaluator = Evaluator(policy(tmp_path, "allow", rules))
    sizes = []
    for length in range(11):  # 0 to 9 each a threshold of its own, 10 above them all
        verdict = evaluator.verdict(MOVING, {**REQUEST, "text_length": length})
        assert verdict.outcome is (Outcome.DENY if length > 0 else Outcome.ALLOW)
        sizes.append(len(evaluator._cache))
    # Full at 4: cleared before the fifth entry, so never more than 4.
    assert sizes == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]


NEVER_IN_ANY_WORLD = "  - {id: never, ref: t, when: {all: [{workload: high}, {workload: low}]}, outcome: deny, reason: no world}\n"
WORKLOAD_UNKNOWN = {"driving_state": "moving", "workload": None}


def test_two_worlds_are_each_decided(tmp_path: Path) -> None:
    # The workload unknown: low or high, and no world has both.
    p = policy(tmp_path, "allow", NEVER_IN_ANY_WORLD)
    assert p.representatives["workload"] == ("low", "high")
    verdict = Evaluator(p).evaluate(WORKLOAD_UNKNOWN, {**REQUEST, "text_length": 10})
    assert verdict == Verdict(
        Outcome.ALLOW,
        (),
        "no rule matched; the policy's default is allow [unknown: workload; treated as the most demanding driving]",
        {},
    )


def test_exactly_max_worlds_are_each_decided(tmp_path: Path) -> None:
    # 2 workloads x 2,048 apps (2,047 named, and any other) = 4,096 worlds, the most decided one by one.
    apps = ", ".join(f"app-{i}" for i in range(2047))
    p = policy(tmp_path, "allow", f"  - {{id: apps, ref: t, when: {{app: {{in: [{apps}]}}}}, outcome: allow}}\n{NEVER_IN_ANY_WORLD}")
    assert len(p.representatives["app"]) * len(p.representatives["workload"]) == MAX_WORLDS
    request = {k: v for k, v in REQUEST.items() if k != "app"} | {"text_length": 10}
    assert Evaluator(p).evaluate(WORKLOAD_UNKNOWN, request).outcome is Outcome.ALLOW
