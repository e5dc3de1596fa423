"""``drivegate explain`` and ``safety.decide.explain``: every rule, the deciding leaf, the combination, the decision."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, ROOT, SPEED_BANDS_POLICY, DemoCar, request

from safety import Engine, load_policy
from safety.decide.constraints import split_met
from safety.decide.pipeline import DecisionPipeline
from safety.model.decision import Outcome
from safety.policy import CompiledPolicy

TINY = """version: 1
name: tiny
default: deny
state:
  workload:
    high_when: [{signal: gear, in: [R]}]
rules:
  - id: parked-ok
    ref: "test"
    when: {driving_state: parked}
    outcome: allow
  - id: short-text
    ref: "test"
    when:
      driving_state: {ne: parked}
      any:
        - {content: none}
        - {content: text, text_length: {le: 30}}
      not: {workload: high}
    outcome: allow
  - id: critical
    ref: "test"
    when: {priority: critical}
    exception: true
    outcome: degrade
    constraints: {modality: voice}
"""
TEXT = {"kind": "notification", "category": "message", "modality": "visual", "content": "text", "priority": "normal"}


def explain_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", "explain", *args], capture_output=True, text=True, check=False, cwd=cwd
    )


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def test_explain_text_names_every_rule_its_deciding_leaves_and_the_combination(tiny: Path) -> None:
    result = explain_cli(
        tiny,
        "tiny.yaml",
        "--state",
        '{"speed": 45, "gear": "D", "steering_angle": 0}',
        "--request",
        json.dumps({**TEXT, "text_length": 80}),
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"policy tiny (tiny.yaml, hash {load_policy(tiny / 'tiny.yaml').hash}) at t=1 s",
        "state: speed=45, gear=D, steering_angle=0, steering_rate=unknown, parking_brake=unknown, "
        "turn_signal=unknown, brake_pressed=unknown, accelerator_pedal=unknown, eyes_on_road=unknown, "
        "driving_state=moving, workload=low",
        "  unknown: steering_rate, parking_brake, turn_signal, brake_pressed, accelerator_pedal, eyes_on_road "
        "(never received)",
        "request: kind=notification, category=message, modality=visual, content=text, priority=normal, text_length=80",
        "rules, in policy order:",
        "  parked-ok: does not hold -> allow  [tiny.yaml:8:5]",
        "      driving_state == parked: false (driving_state is moving)  [tiny.yaml:10:12]",
        "  short-text: does not hold -> allow  [tiny.yaml:12:5]",
        "      content == none: false (content is text)  [tiny.yaml:17:12]",
        "      text_length <= 30: false (text_length is 80)  [tiny.yaml:18:41]",
        "  critical: does not hold -> degrade (exception)  [tiny.yaml:21:5]",
        "      priority == critical: false (priority is normal)  [tiny.yaml:23:12]",
        "combination:",
        "  contributing: none",
        "  no rule holds: the default deny applies",
        "  most restrictive: deny",
        "decision: deny",
        "  rules: (none: the default)",
        "  reason: no rule matched; the policy's default is deny",
    ]


def test_explain_unknown_state_shows_the_worlds_and_the_exception(tiny: Path) -> None:
    result = explain_cli(
        tiny,
        "tiny.yaml",
        "--state",
        '{"speed": 45, "gear": "D", "stale": ["gear"]}',
        "--request",
        json.dumps({**TEXT, "priority": "critical", "content": "video", "text_length": 10}),
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "  unknown: gear (stale: last frame 1.000 s ago (max 0.300 s))" in lines
    start = lines.index("rules, in policy order:")
    assert lines[start:] == [
        "rules, in policy order:",
        "  parked-ok: unknown (may hold) -> allow  [tiny.yaml:8:5]",
        "      driving_state == parked: unknown (driving_state is unknown)  [tiny.yaml:10:12]",
        "  short-text: does not hold -> allow  [tiny.yaml:12:5]",
        "      content == none: false (content is video)  [tiny.yaml:17:12]",
        "      content == text: false (content is video)  [tiny.yaml:18:12]",
        "  critical: holds -> degrade (exception)  [tiny.yaml:21:5]",
        "      priority == critical: true (priority is critical)  [tiny.yaml:23:12]",
        "unknown fields: driving_state in {parked, stationary, moving}; workload in {low, high}",
        "  6 worlds evaluated, the most restrictive wins:",
        "  * degrade in 4 world(s) by critical; e.g. driving_state=stationary, workload=low",
        "        contributing: none",
        "        no rule holds: the default deny applies",
        "        most restrictive: deny",
        "        exception critical caps deny at degrade",
        "    allow in 2 world(s) by parked-ok; e.g. driving_state=parked, workload=low",
        "        contributing: parked-ok (allow)",
        "        a rule holds (parked-ok): the default is not used",
        "        most restrictive: allow",
        "        exception critical (degrade) caps nothing: allow is less restrictive",
        "decision: degrade",
        "  rules: critical",
        "  constraints: modality=voice",
        "  reason: rule critical (instead of deny) [unknown: driving_state, workload; treated as the most "
        "demanding driving]",
    ]


def test_explain_json(tiny: Path) -> None:
    result = explain_cli(
        tiny,
        "tiny.yaml",
        "--state",
        '{"speed": 4, "gear": "R"}',
        "--request",
        json.dumps({**TEXT, "content": "none", "text_length": 5}),
        "--format",
        "json",
    )
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["policy"] == {"name": "tiny", "file": "tiny.yaml", "hash": load_policy(tiny / "tiny.yaml").hash}
    assert data["state"]["driving_state"] == "moving" and data["state"]["workload"] == "high"
    short = data["rules"][1]
    assert (short["id"], short["result"], short["location"]) == ("short-text", False, "tiny.yaml:12:5")
    # The `not` decided: workload == high holds, so the rule, which needs it not to, does not.
    assert short["decided_by"] == [
        {
            "test": "workload == high",
            "field": "workload",
            "op": "eq",
            "value": "high",
            "actual": "high",
            "result": True,
            "negated": True,
            "location": "tiny.yaml:19:13",
        }
    ]
    assert data["worlds"] is None
    assert data["combination"]["default_used"] is True
    assert data["decision"] == {
        "outcome": "deny",
        "rules": [],
        "constraints": {},
        "reason": "no rule matched; the policy's default is deny",
    }
    assert data["request_problem"] is None


def test_an_invalid_request_is_explained_as_the_engine_denies_it(tiny: Path) -> None:
    result = explain_cli(
        tiny, "tiny.yaml", "--state", '{"speed": 0, "gear": "P"}', "--request", json.dumps({**TEXT, "content": "gif"})
    )
    assert result.returncode == 2  # explained, and still unusable input (#9: was 0)
    assert result.stdout.splitlines()[-5:] == [
        "invalid request: unknown content 'gif'; expected one of: text, image, video, list, keyboard, none",
        "decision: deny",
        "  rules: request-invalid",
        "  constraints: field=content",
        "  reason: invalid request: unknown content 'gif'; expected one of: text, image, video, list, keyboard, none",
    ]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            '{"speed": 45, "gear": "D",}',
            "--state: bad-json: invalid JSON: Expecting property name enclosed in double quotes (line 1 column 27)",
        ),
        (
            '{"sped": 45}',
            "--state: unknown-signal: unknown signal 'sped' in --state; expected one of: speed, gear, "
            "steering_angle, steering_rate, parking_brake, turn_signal, brake_pressed, accelerator_pedal, eyes_on_road, "
            "stale, unknown, missing",
        ),
        (
            '{"workload": "high"}',
            "--state: derived-field: --state: 'workload' cannot be set: it comes from the "
            "policy's workload signals (steering, gear, indicators) and hold; set those signals",
        ),
        (
            '{"gear": "drive"}',
            "--state: unknown-value: --state.gear: str 'drive' is not a value of this signal; "
            "expected one of: P, R, N, D",
        ),
        (
            '{"stale": ["speed"]}',
            "--state: bad-state: --state: stale signal 'speed' was never sent; give the last "
            "value received (e.g. speed: 0), or list it under missing",
        ),
        ("[1, 2]", "--state: expected-type: --state must be a mapping of signal values"),
    ],
    ids=["json", "unknown-signal", "derived", "bad-value", "stale-without-value", "not-a-mapping"],
)
def test_state_argument_errors(tiny: Path, state: str, message: str) -> None:
    result = explain_cli(tiny, "tiny.yaml", "--state", state, "--request", json.dumps(TEXT))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")


def test_explain_with_a_vehicle_profile(tiny: Path) -> None:
    vehicle = str(ROOT / "dbc" / "demo_sedan.yaml")
    bad = explain_cli(
        tiny, "tiny.yaml", "--vehicle", vehicle, "--state", '{"eyes_on_road": true}', "--request", json.dumps(TEXT)
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "--state: not-provided: --state: signal 'eyes_on_road' is not provided by the test vehicle; the vehicle "
        "provides: speed, gear, steering_angle, steering_rate, parking_brake, turn_signal, brake_pressed\n"
    )
    good = explain_cli(
        tiny, "tiny.yaml", "--vehicle", vehicle, "--state", '{"speed": 0, "gear": "P"}', "--request", json.dumps(TEXT)
    )
    assert good.returncode == 0
    # Signals the vehicle lacks are not in the state at all, not "never received".
    assert "eyes_on_road" not in good.stdout.splitlines()[2]
    assert good.stdout.splitlines()[-3:] == ["decision: allow", "  rules: parked-ok", "  reason: rule parked-ok"]


# ---------------------------------------------------------------------- agreement with the evaluator
def after_met(
    outcome: Outcome, rules: tuple[str, ...], constraints: Mapping[str, Any], req: Mapping[str, Any]
) -> tuple[Outcome, tuple[str, ...], dict[str, Any]]:
    """The combination's result after the pipeline drops the constraints the request already meets."""
    if outcome is not Outcome.DEGRADE:
        return outcome, rules, dict(constraints)
    remaining, _ = split_met(constraints, req)
    return (Outcome.DEGRADE if remaining else Outcome.ALLOW), rules, remaining



def _cells(policy: CompiledPolicy) -> tuple[list[str], list[tuple[Any, ...]]]:
    names = [n for n, _ in policy.state_cells] + [n for n, _ in policy.request_cells]
    return names, [policy.representatives[n] for n in names]


def _split(policy: CompiledPolicy, names: list[str], combo: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    state_names = {n for n, _ in policy.state_cells}
    state = {n: v for n, v in zip(names, combo, strict=True) if n in state_names}
    req = {**TEXT, **{n: v for n, v in zip(names, combo, strict=True) if n not in state_names}}
    for name in ("text_length", "list_items"):
        if name in req:
            req[name] = int(req[name])  # requests carry whole numbers; representatives are floats
    return state, req


@pytest.mark.parametrize(("path", "every"), [(DEFAULT_POLICY, 1), (SPEED_BANDS_POLICY, 37)], ids=["default", "bands"])
def test_the_combination_narrative_matches_the_evaluator_on_every_cell(path: Path, every: int) -> None:
    """With every field known, the explanation's own combination gives the evaluator's decision."""
    policy = load_policy(path)
    explainer = DecisionPipeline(policy)
    names, reps = _cells(policy)
    checked = 0
    for i, combo in enumerate(itertools.product(*reps)):
        if i % every:
            continue
        state, req = _split(policy, names, combo)
        e = explainer.explain(state, req)
        assert not e.request_problem
        assert e.worlds is None and e.combination is not None
        c, d = e.combination, e.decision
        assert after_met(c.outcome, c.rules, c.constraints, req) == (d.outcome, d.rules, dict(d.constraints)), (
            state,
            req,
        )
        for rule in e.rules:
            assert rule.decided_by or rule.result is True
            assert all(leaf.result is not None for leaf in rule.decided_by)
        checked += 1
    assert checked > 5000


def test_worlds_agree_with_the_evaluator_when_the_state_is_unknown() -> None:
    """The most restrictive world groups are the decision: their outcome, and together their rules."""
    policy = load_policy(DEFAULT_POLICY)
    explainer = DecisionPipeline(policy)
    for modality, content, priority in itertools.product(
        ("visual", "voice", "manual"), ("text", "video", "list", "keyboard", "none"), ("critical", "normal")
    ):
        req = {**TEXT, "modality": modality, "content": content, "priority": priority}
        e = explainer.explain({"driving_state": None, "workload": None}, req)
        assert e.worlds is not None and not e.worlds.three_valued
        worst = e.worlds.groups[0].outcome
        top = [g for g in e.worlds.groups if g.outcome is worst]
        merged = {k: v for g in top for k, v in g.constraints.items()}
        assert after_met(worst, (), merged, req)[0] is e.decision.outcome
        assert set(e.decision.rules) == {r for g in top for r in g.rules}
        assert sum(g.count for g in e.worlds.groups) == e.worlds.count == 3 * 2 * 3 * 3


# ---------------------------------------------------------------------- agreement with the Engine
@pytest.mark.parametrize(
    ("state", "fields"),
    [
        ({"speed": 45.0, "gear": "D", "parking_brake": "RELEASED"}, {"text_length": 80}),
        ({"speed": 15.0, "gear": "D", "angle": 200.0}, {"modality": "voice"}),
        ({"speed": 15.0, "gear": "D", "angle": 200.0}, {"priority": "critical", "content": "video"}),
        ({"speed": 0.0, "gear": "P"}, {"content": "video"}),
        ({"speed": 4.0, "gear": "R"}, {"content": "list", "list_items": 9, "text_length": None}),
    ],
)
def test_the_explanation_is_the_engines_decision(
    engine: Engine, car: DemoCar, state: dict[str, Any], fields: dict[str, Any]
) -> None:
    car.hold(0.0, 1.0, **state)
    req = request(**fields)
    snapshot = engine.state()
    e = DecisionPipeline(engine.policy).explain(snapshot.values, req, time=snapshot.time, why_unknown=snapshot.unknown)
    d = engine.decide(req)
    assert (e.decision.outcome, e.decision.rules, dict(e.decision.constraints), e.decision.reason) == (
        d.outcome,
        d.rules,
        dict(d.constraints),
        d.reason,
    )
    # decide(explain=True) carries the same structured explanation after the reason, naming the
    # policy file without its directories (#11 item 9: replies reveal no paths).
    explained = engine.decide(req, explain=True).reason
    assert explained.splitlines()[0] == d.reason
    policy_file = engine.policy.file
    assert "/" in policy_file and policy_file not in explained
    assert explained.split("\n", 1)[1] == e.render().replace(policy_file, Path(policy_file).name)


def test_past_max_worlds_the_explanation_is_the_three_valued_evaluation(tmp_path: Path) -> None:
    """61 x 61 x 6 cells of unknowns exceed MAX_WORLDS: one three-valued evaluation, as the evaluator does."""
    rules = "".join(
        f"  - {{id: text-{i}, ref: t, when: {{text_length: {{gt: {i}}}}}, outcome: degrade, "
        f"constraints: {{max_text_length: {i}}}}}\n"
        f"  - {{id: list-{i}, ref: t, when: {{list_items: {{gt: {i}}}}}, outcome: degrade, "
        f"constraints: {{max_list_items: {i}}}}}\n"
        for i in range(30)
    )
    path = tmp_path / "many.yaml"
    path.write_text(f"version: 1\nname: many\ndefault: allow\nrules:\n{rules}")
    policy = load_policy(path)
    e = DecisionPipeline(policy).explain({"driving_state": None, "workload": None}, TEXT)
    assert e.worlds is not None and e.worlds.three_valued and e.worlds.groups == ()
    assert e.worlds.count == 61 * 61 * 6
    assert e.combination is not None
    c, d = e.combination, e.decision
    assert (c.outcome, c.rules, dict(c.constraints)) == (d.outcome, d.rules, dict(d.constraints))
    assert dict(d.constraints) == {"max_text_length": 0, "max_list_items": 0}
    assert "  22326 worlds exceed 4096: one three-valued evaluation instead" in e.render()
