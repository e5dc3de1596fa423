"""Engine at run time: hot reload, decision log, glance and rate budgets, the deferral queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, SPEED_BANDS_POLICY, DemoCar, killed_after, request

from safety import Engine, LoadError, Outcome
from safety.audit.decisionlog import DecisionLog, read_lines
from safety.errors import PolicyCheckError

CITY = {"speed": 45.0, "gear": "D", "parking_brake": "RELEASED"}


# ------------------------------------------------------------------ hot reload
def test_reload_swaps_atomically_and_keeps_state(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.5, **CITY)
    old_hash = engine.policy.hash
    assert engine.decide(request(text_length=200)).rules == ("lockout-reading-text",)
    assert engine.reload(SPEED_BANDS_POLICY) == "active"
    assert engine.policy.hash != old_hash
    # The vehicle state carried over: no frame since, yet the state is known.
    d = engine.decide(request(category="calendar", text_length=200))
    assert d.policy_hash == engine.policy.hash
    assert d.rules == ("limit-string-length",)
    assert engine.state().driving_state == "moving"


def test_reload_failure_keeps_the_old_policy(engine: Engine, car: DemoCar, tmp_path: Path) -> None:
    car.hold(0.0, 0.5, **CITY)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: x\ndefault: allow\nrules: [{id: a, ref: r, outcome: maybe}]\n")
    old_hash = engine.policy.hash
    with pytest.raises(LoadError) as info:
        engine.reload(broken)
    assert "outcome must be one of" in str(info.value)
    with pytest.raises(PolicyCheckError) as check:
        engine.reload(SPEED_BANDS_POLICY, checks=[lambda policy: ["tests failed: 2 of 9"]])
    assert str(check.value).endswith("policy-check: tests failed: 2 of 9")
    assert engine.policy.hash == old_hash
    assert engine.decide(request(content="video")).rules == ("lockout-video",)


def test_policy_requiring_park_waits_until_parked(engine: Engine, car: DemoCar, tmp_path: Path) -> None:
    staged = tmp_path / "staged.yaml"
    staged.write_text(SPEED_BANDS_POLICY.read_text() + "activation: {require_parked: true}\n")
    car.hold(0.0, 0.5, **CITY)
    old_hash = engine.policy.hash
    assert engine.reload(staged) == "pending"
    assert engine.pending_policy is not None and engine.policy.hash == old_hash
    car.hold(0.51, 1.0, speed=0.0, gear="D", parking_brake="RELEASED")
    assert engine.policy.hash == old_hash  # standing still is not parked
    car.hold(1.01, 2.2, speed=0.0, gear="P")  # parked once standing still for the dwell (1.5 s)
    assert engine.pending_policy is None and engine.policy.hash != old_hash


# ------------------------------------------------------------------ decision log
def test_decision_log_records(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    ids = iter(["a1", "a2"])
    engine = Engine(
        Engine.load(DEMO_VEHICLE, DEFAULT_POLICY).profile,
        Engine.load(DEMO_VEHICLE, DEFAULT_POLICY).policy,
        decision_log=DecisionLog(path),
        ids=lambda: next(ids),
        clock_ns=iter([0, 12_000, 20_000, 25_500]).__next__,
    )
    DemoCar(engine).hold(0.0, 0.2, **CITY)
    engine.decide(request(id="m1", text="Meet at 10 in room 4", text_length=20))
    engine.decide({"kind": "nonsense"})
    first, second = (json.loads(line) for line in read_lines(path))
    assert first["v"] == 1 and first["decision_id"] == "a1"
    assert first["request"]["text"] == "***" and first["request"]["id"] == "m1"
    assert (first["outcome"], first["rules"], first["eval_us"]) == ("allow", ["glanceable-visual"], 12.0)
    assert first["state"]["speed"] == 45.0 and first["ages"]["speed"] == 0.0
    assert first["state"]["driving_state"] == "moving" and first["state"]["workload"] == "low"
    assert first["policy_hash"] == engine.policy.hash and first["time"] == 0.2
    assert (second["decision_id"], second["outcome"], second["rules"], second["eval_us"]) == (
        "a2",
        "deny",
        ["request-invalid"],
        5.5,
    )


def test_decision_log_follows_the_state_and_odd_requests(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=DecisionLog(path))
    car = DemoCar(engine)
    car.hold(0.0, 0.2, **CITY)
    engine.decide(request(id="a"))
    engine.decide(request(id="b"))
    car.hold(0.2, 0.4, speed=0.0, gear="P")
    engine.decide(request(id="c"))
    engine.decide({1: "not a field name", "kind": ["x"]})
    records = [json.loads(line) for line in read_lines(path)]
    assert [(r["request"].get("id"), r["state"]["speed"], r["state"]["gear"]) for r in records[:3]] == [
        ("a", 45.0, "D"),
        ("b", 45.0, "D"),
        ("c", 0.0, "P"),
    ]
    assert records[3]["request"] == {"1": "not a field name", "kind": ["x"]}
    assert (records[3]["outcome"], records[3]["rules"]) == ("deny", ["request-invalid"])


def test_decision_log_rotates(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=DecisionLog(path, max_bytes=4000, backups=2))
    for i in range(40):
        engine.decide(request(id=f"r{i}"))
    engine.close()  # a mapped log is padded past its last record until closed
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]
    assert all(p.stat().st_size <= 4000 for p in tmp_path.iterdir())


def test_nothing_written_is_lost_when_the_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    script = (
        "import os, sys\n"
        "from safety import Engine\n"
        "from safety.audit.decisionlog import DecisionLog, read_lines\n"
        f"e = Engine.load({str(DEMO_VEHICLE)!r}, {str(DEFAULT_POLICY)!r}, decision_log=DecisionLog({str(path)!r}))\n"
        "for i in range(50):\n"
        "    e.decide({'id': f'r{i}', 'kind': 'notification', 'category': 'message', 'modality': 'voice',"
        " 'content': 'text', 'priority': 'normal'})\n"
    )
    killed_after(script)
    records = [json.loads(line) for line in read_lines(path)]
    assert [r["request"]["id"] for r in records] == [f"r{i}" for i in range(50)]


def test_log_summary_cli(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=path)
    DemoCar(engine).hold(0.0, 0.2, **CITY)
    for content in ("video", "video", "text"):
        engine.decide(request(content=content, text_length=10))
    result = subprocess.run(
        [sys.executable, "-m", "safety.cli", "log-summary", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "records: 3 (bad lines: 0)" in result.stdout
    assert "outcomes: deny 2, allow 1" in result.stdout
    assert "rules: lockout-video 2, glanceable-visual 1" in result.stdout


# ------------------------------------------------------------------ budgets
def test_glance_budgets(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.2, **CITY)
    long_glance = engine.decide(request(text_length=20, glance_ms=2500))
    assert (long_glance.outcome, long_glance.rules[-1], dict(long_glance.constraints)) == (
        Outcome.DEGRADE,
        "budget-glance",
        {"modality": "voice"},
    )
    for _ in range(7):  # 7 x 1.5 s = 10.5 s of the 12 s task budget
        assert engine.decide(request(text_length=20, glance_ms=1500, task_id="reply")).outcome is Outcome.ALLOW
    over = engine.decide(request(text_length=20, glance_ms=1600, task_id="reply"))
    assert (over.outcome, over.rules[-1]) == (Outcome.DEGRADE, "budget-task")
    assert "task 'reply' would take 12.1 s of eyes-off-road time, over the budget of 12 s" in over.reason
    assert engine.decide(request(text_length=20, glance_ms=1500, task_id="other")).outcome is Outcome.ALLOW
    car.hold(0.21, 0.4, speed=0.0, gear="P")
    engine.decide(request(text_length=20, glance_ms=1000, task_id="reply"))  # parked: budget resets
    car.hold(0.41, 0.6, **CITY)
    assert engine.decide(request(text_length=20, glance_ms=1500, task_id="reply")).outcome is Outcome.ALLOW


def test_notification_rate_budget(tmp_path: Path) -> None:
    policy = tmp_path / "rate.yaml"
    policy.write_text(
        DEFAULT_POLICY.read_text().replace(
            "budgets:\n", "budgets:\n  notifications: {max: 2, window_s: 10, ref: test}\n"
        )
    )
    engine = Engine.load(DEMO_VEHICLE, policy)
    car = DemoCar(engine)
    car.hold(0.0, 0.2, **CITY)
    voice = request(modality="voice")
    assert [engine.decide(voice, now=0.2).outcome for _ in range(2)] == [Outcome.ALLOW, Outcome.ALLOW]
    third = engine.decide(voice, now=0.2)
    assert (third.outcome, third.rules[-1], third.constraints["retry_after_ms"]) == (
        Outcome.DEFER,
        "budget-rate",
        10000,
    )
    assert engine.decide(request(modality="voice", priority="critical"), now=0.2).outcome is Outcome.ALLOW  # exempt


# ------------------------------------------------------------------ deferral queue
def test_deferred_requests_are_released_or_expire(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.5, **{**CITY, "speed": 15.0, "angle": 200.0})  # sharp turn: workload high
    held = engine.decide(request(id="msg-1", modality="voice", ttl_ms=10_000))
    short = engine.decide(request(id="msg-2", modality="voice", ttl_ms=1_000))
    anonymous = engine.decide(request(modality="voice", ttl_ms=10_000))
    assert held.outcome is Outcome.DEFER and "queued" in held.reason and "queued" not in anonymous.reason
    assert short.outcome is Outcome.DEFER
    assert engine.release_deferred() == []  # still turning
    car.hold(0.51, 5.0, **{**CITY, "speed": 15.0})  # straight again; IDIS hold of 3 s runs out at 3.5 s
    events = engine.release_deferred()
    assert [(e.request_id, e.kind) for e in events] == [("msg-2", "expired"), ("msg-1", "deliverable")]
    assert events[1].decision is not None and events[1].decision.outcome is Outcome.ALLOW
    counters = engine.counters
    assert (counters["deferred_pending"], counters["deferred_expired"], counters["deferred_delivered"]) == (0, 1, 1)


def test_reload_lints_and_runs_the_policy_tests(engine: Engine, car: DemoCar, tmp_path: Path) -> None:
    car.hold(0.0, 0.5, **CITY)
    old_hash = engine.policy.hash
    # A suite that the new policy fails: the reload is refused, the old policy stays.
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "version: 1\ndefaults: {request: {kind: notification, category: message, modality: visual, "
        "content: text, priority: normal}}\ncases:\n  - name: video is allowed while moving\n"
        "    state: {speed: 45, gear: D, steering_angle: 0, steering_rate: 0, turn_signal: none}\n"
        "    request: {content: video}\n    expect: {outcome: allow}\n"
    )
    with pytest.raises(PolicyCheckError) as info:
        engine.reload(SPEED_BANDS_POLICY, tests=[suite])
    assert "test 'video is allowed while moving' failed: expected allow, got deny" in str(info.value)
    assert engine.policy.hash == old_hash
    # A policy with a lint error (a rule that can never fire) is refused too.
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(
        DEFAULT_POLICY.read_text()
        + "  - id: never\n    ref: a contradiction\n    when: {speed: {gt: 50, lt: 10}}\n    outcome: deny\n"
    )
    with pytest.raises(PolicyCheckError) as lint_info:
        engine.reload(unreachable)
    assert "unreachable-rule" in str(lint_info.value)
    assert engine.policy.hash == old_hash
    # The shipped policy with its shipped suite passes both.
    assert (
        engine.reload(SPEED_BANDS_POLICY, tests=[ROOT / "policies" / "tests" / "speed-bands.yaml"], min_coverage=100)
        == "active"
    )


@pytest.mark.parametrize(
    ("budgets", "asked", "rule"),
    [
        ('  glance: {single_ms: 2000, ref: "NHTSA-VM §VI"}\n', {"glance_ms": 2500}, "budget-glance"),
        ('  glance: {task_ms: 12000, ref: "NHTSA-VM §VI"}\n', {"glance_ms": 12500, "task_id": "reply"}, "budget-task"),
        ("  notifications: {max: 1, window_s: 10, ref: test}\n", {"modality": "voice"}, "budget-rate"),
    ],
    ids=["single-glance-only", "task-only", "rate-only"],
)
def test_each_budget_applies_on_its_own(tmp_path: Path, budgets: str, asked: dict[str, object], rule: str) -> None:
    """A policy with only one of the budgets applies it (the pipeline checks budgets when any is set)."""
    policy = tmp_path / "one-budget.yaml"
    text = DEFAULT_POLICY.read_text()
    glance = '  glance: {single_ms: 2000, task_ms: 12000, ref: "NHTSA-VM §VI (2 s single glance, 12 s total per task)"}\n'
    assert glance in text
    policy.write_text(text.replace(glance, budgets))
    engine = Engine.load(DEMO_VEHICLE, policy)
    car = DemoCar(engine)
    car.hold(0.0, 0.2, **CITY)
    kwargs: dict[str, object] = {"text_length": 20, **asked}
    if rule == "budget-rate":
        assert engine.decide(request(**kwargs), now=0.2).outcome is Outcome.ALLOW  # the one of the window
    decided = engine.decide(request(**kwargs), now=0.2)
    assert decided.rules[-1] == rule and decided.outcome in (Outcome.DEGRADE, Outcome.DEFER)
