"""The rule-by-rule search (``analysis.FirstRegions``) against the plain walk it stands for.

``FirstRegions`` does not repeat a sub-walk it has made, but it must answer exactly as the
walk (``space.Walker.walk`` with ``whole=False``) would, down to the number of splits: the
budgets (``analysis-limit``, pairs not checked for conflict) depend on it.  ``Walked`` is
that walk, region by region; every test here runs both and wants the same.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Collection, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import load_policy
from safety.policy import CompiledPolicy
from safety.workflow.analysis import Analysis, FirstRegions, analyze
from safety.workflow.space import BudgetExceeded, Region, Space, Walker

REF = "TEST-DOC §1.2"


class _Done(Exception):
    pass


class Walked(FirstRegions):
    """The reference: ``search`` made by the plain walk, one region at a time."""

    def search(
        self,
        label: Callable[[int], Hashable | None],
        kinds: Collection[Hashable],
        *,
        focus: int | None = None,
        prune: Callable[[int, bool], bool] | None = None,
        memo_mask: int = 0,
    ) -> dict[Hashable, dict[int, Any]]:
        found: dict[Hashable, dict[int, Any]] = {}

        def visit(region: Region) -> None:
            kind = label(region.holds)
            if kind is not None and kind not in found:
                found[kind] = dict(region.assign)
                if all(k in found for k in kinds):
                    raise _Done

        self.steps = 0
        with contextlib.suppress(_Done):
            Walker.walk(self, visit, focus=focus, prune=prune, whole=False)
        return found


@contextlib.contextmanager
def walked() -> Iterator[None]:
    """Analysis with the plain walk in place of ``FirstRegions``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("safety.workflow.analysis.FirstRegions", Walked)
        yield


def shown(result: Analysis) -> list[str]:
    return [f"{f} | {f.example}" for f in result.findings] + result.notes + [f"regions {result.regions}"]


# ---------------------------------------------------------------------- policies
FIELDS: dict[str, Any] = {
    "driving_state": st.sampled_from(["parked", "stationary", "moving", {"ne": "parked"}]),
    "workload": st.sampled_from(["low", "high"]),
    "speed_band": st.sampled_from(["crawl", "city", ["city", "highway"]]),
    "content": st.sampled_from(["text", "video", ["text", "list"], {"not_in": ["video"]}]),
    "modality": st.sampled_from(["visual", "voice", ["voice", "audio"]]),
    "priority": st.sampled_from(["critical", {"ne": "critical"}]),
    "text_length": st.builds(lambda op, n: {op: n}, st.sampled_from(["gt", "le"]), st.sampled_from([10, 30])),
    "speed": st.builds(lambda op, n: {op: n}, st.sampled_from(["gt", "lt"]), st.sampled_from([5, 30, 60])),
    "steering_angle": st.builds(lambda op, n: {op: n}, st.sampled_from(["gt", "lt"]), st.sampled_from([-45, 90])),
    "gear": st.sampled_from(["D", ["R", "N"]]),
}
OUTCOMES = {
    "allow": None,
    "deny": None,
    "degrade": st.sampled_from([{"modality": "voice"}, {"max_text_length": 30}]),
    "defer": st.sampled_from([{"retry_after_ms": 1000}, {"retry_after_ms": 3000, "until": "calm"}]),
}


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    """1 to 3 tests, sometimes with an ``any`` of two fields or a ``not`` (not decided per field)."""
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True))
    when: dict[str, Any] = {name: draw(FIELDS[name]) for name in names}
    extra = draw(st.sampled_from(["", "", "any", "not"]))
    pair = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=2, max_size=2, unique=True))
    if extra == "any":
        when["any"] = [{name: draw(FIELDS[name])} for name in pair]
    elif extra == "not":
        when["not"] = {name: draw(FIELDS[name]) for name in pair}
    return when


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(2, 7))
    rules: list[dict[str, Any]] = []
    for i in range(count):
        outcome = draw(st.sampled_from(sorted(OUTCOMES)))
        rule: dict[str, Any] = {"id": f"r{i}", "ref": REF, "when": draw(conditions()), "outcome": outcome}
        if OUTCOMES[outcome] is not None:
            rule["constraints"] = draw(OUTCOMES[outcome])
        if outcome == "degrade" and draw(st.integers(0, 3)) == 0:
            rule["exception"] = True
        if i and draw(st.integers(0, 4)) == 0:
            rule["overrides"] = [f"r{draw(st.integers(0, i - 1))}"]
        rules.append(rule)
    high_when: list[dict[str, Any]] = [{"signal": "gear", "in": ["R"]}]
    if draw(st.booleans()):
        high_when.append({"signal": "steering_angle", "abs": True, "on_above": 90, "off_below": 45})
    return {
        "version": 1,
        "name": "h",
        "default": draw(st.sampled_from(["deny", "allow"])),
        "state": {
            "standstill": {"on_below": 0.5, "off_above": 2.0},
            "workload": {"hold_ms": draw(st.sampled_from([0, 3000])), "high_when": high_when},
            "speed_bands": {
                "hysteresis": 2.0,
                "bands": [{"name": "crawl", "below": 10}, {"name": "city", "below": 60}, {"name": "highway"}],
            },
        },
        "rules": rules,
    }


def compiled(tmp_path: Path, doc: dict[str, Any]) -> CompiledPolicy:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_policy(path)


# ---------------------------------------------------------------------- the tests
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(doc=policies(), budget=st.sampled_from([12, 60, 400, 50_000]))
def test_rule_by_rule_findings_are_those_of_the_walk(tmp_path: Path, doc: dict[str, Any], budget: int) -> None:
    # Small budgets run some searches out of splits: which ones must not change either.
    p = compiled(tmp_path, doc)
    fast = analyze(p, whole_space=False, rule_budget=budget)
    with walked():
        slow = analyze(p, whole_space=False, rule_budget=budget)
    assert shown(fast) == shown(slow), doc


@SETTINGS
@given(doc=policies(), budget=st.sampled_from([5, 25, 100, 50_000]))
def test_each_pair_search_is_the_walk(tmp_path: Path, doc: dict[str, Any], budget: int) -> None:
    """The first region of each way two rules hold, and the splits, pair by pair."""
    p = compiled(tmp_path, doc)
    space = Space([p])
    rules = [(0, rule) for rule in p.rules]
    for r in range(len(rules)):
        for q in range(r + 1, len(rules)):
            answers = []
            for kind in (FirstRegions, Walked):
                search = kind(space, [rules[r], rules[q]], budget)
                try:
                    answers.append((search.search(lambda holds: holds or None, (1, 2, 3)), search.steps))
                except BudgetExceeded:
                    answers.append(({}, search.steps, "budget"))
            assert answers[0] == answers[1], (r, q, doc)


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_policy_findings_are_those_of_the_walk(tmp_path: Path, seed: int) -> None:
    # A realistic policy (the lint benchmark's), rule by rule as a large policy is analysed.
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from bench_lint import generate_policy
    finally:
        sys.path.remove(str(ROOT / "tools"))
    path = tmp_path / "generated.yaml"
    path.write_text(generate_policy(30, seed))
    p = load_policy(path)
    fast = analyze(p, whole_space=False, rule_budget=2_000)
    with walked():
        slow = analyze(p, whole_space=False, rule_budget=2_000)
    assert shown(fast) == shown(slow)
    assert any(f.code == "conflict" for f in fast.findings)
