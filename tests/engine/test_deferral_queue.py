"""#11 items 1 and 2: deferred requests belong to whoever queued them, and the queue is bounded.

Reproduced first on the engine with the real demo DBC: a second caller's request with the
victim's id replaced the victim's queued visual request and its release ("deliverable allow")
was the attacker's; the queue took any number of entries and any ttl_ms (10**15); re-deciding
it while still deferred re-queued each entry with a fresh deadline (so ttl_ms never ran out
while the state kept changing) and wrote a decision record per entry per change.
"""

from __future__ import annotations

from pathlib import Path

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine, Outcome
from safety.audit.decisionlog import read_lines
from safety.decide.budgets import DeferralLimits, DeferralQueue

TURNING = {"speed": 15.0, "gear": "D", "parking_brake": "RELEASED", "angle": 200.0}  # workload high
STRAIGHT = {"speed": 15.0, "gear": "D", "parking_brake": "RELEASED"}
QUEUED = " (queued until deliverable or expired)"


def turning(engine: Engine) -> DemoCar:
    car = DemoCar(engine)
    car.hold(0.0, 0.5, **TURNING)
    return car


def test_one_callers_id_never_touches_anothers_queued_request(engine: Engine) -> None:
    car = turning(engine)
    victim = engine.decide(request(id="msg-1", ttl_ms=10_000), owner="victim")
    attacker = engine.decide(request(id="msg-1", modality="voice", ttl_ms=10_000), owner="attacker")
    assert victim.outcome is attacker.outcome is Outcome.DEFER
    assert victim.reason.endswith(QUEUED) and attacker.reason.endswith(QUEUED)
    assert sorted(engine.deferred.pending) == [("attacker", "msg-1"), ("victim", "msg-1")]
    car.hold(0.51, 5.0, **STRAIGHT)  # the IDIS hold of 3 s runs out
    events = {e.owner: e for e in engine.release_deferred()}
    assert sorted(events) == ["attacker", "victim"]
    assert all(e.request_id == "msg-1" and e.kind == "deliverable" for e in events.values())
    victim_release, attacker_release = events["victim"].decision, events["attacker"].decision
    assert victim_release is not None and attacker_release is not None
    assert (victim_release.outcome, dict(victim_release.constraints)) == (Outcome.DEGRADE, {"modality": "voice"})
    assert attacker_release.outcome is Outcome.ALLOW
    assert "owner" not in events["victim"].to_dict()  # who queued it is not sent to anyone


def test_the_same_caller_resending_an_id_replaces_its_own_entry(engine: Engine) -> None:
    turning(engine)
    engine.decide(request(id="m", ttl_ms=10_000), owner="a")
    engine.decide(request(id="m", modality="voice", ttl_ms=10_000), owner="a")
    assert list(engine.deferred.pending) == [("a", "m")]
    assert engine.deferred.pending[("a", "m")][0]["modality"] == "voice"


def test_past_each_limit_a_request_is_decided_without_being_queued() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    engine.deferred = DeferralQueue(DeferralLimits(per_owner=2, total=3, max_ttl_ms=60_000, max_text_chars=100))
    turning(engine)

    def reason(owner: str, **fields: object) -> str:
        decision = engine.decide(request(**fields), owner=owner)
        assert decision.outcome is Outcome.DEFER
        return decision.reason[decision.reason.rindex(" (") :]

    assert reason("a", id="1", ttl_ms=60_000) == QUEUED
    assert reason("a", id="2", ttl_ms=1) == QUEUED
    assert reason("a", id="3", ttl_ms=1) == " (not queued: this client has 2 requests queued, its limit)"
    assert reason("a", id="2", ttl_ms=5) == QUEUED  # replacing its own entry is not a new one
    assert reason("b", id="1", ttl_ms=1) == QUEUED
    assert reason("c", id="1", ttl_ms=1) == " (not queued: the queue holds 3 requests, its limit)"
    assert reason("c", id="9", ttl_ms=60_001) == (
        " (not queued: ttl_ms 60001 is over the 60000 ms a request may be queued)"
    )
    assert reason("c", id="9", ttl_ms=1, text="x" * 100) == (
        " (not queued: the request holds 101 characters of text; at most 100 are queued)"
    )
    assert engine.counters["deferred_refused"] == 4
    assert engine.counters["deferred_pending"] == 3


def test_the_default_limits_refuse_a_ttl_of_10_to_the_15(engine: Engine) -> None:
    turning(engine)
    decision = engine.decide(request(id="m", ttl_ms=10**15))
    assert decision.reason.endswith(
        " (not queued: ttl_ms 1000000000000000 is over the 600000 ms a request may be queued)"
    )
    assert engine.deferred.pending == {}


def test_a_request_still_deferred_keeps_its_deadline(engine: Engine) -> None:
    car = turning(engine)
    engine.decide(request(id="m", ttl_ms=1_000))  # queued at 0.5 s: expires at 1.5 s
    car.hold(0.51, 1.2, **TURNING)
    assert engine.release_deferred() == []  # re-decided: still deferred
    car.hold(1.21, 1.6, **TURNING)
    assert [(e.request_id, e.kind) for e in engine.release_deferred()] == [("m", "expired")]


def test_re_deciding_a_queue_that_stays_deferred_writes_no_records(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY, decision_log=log)
    car = turning(engine)
    for i in range(50):
        engine.decide(request(id=f"m{i}", ttl_ms=60_000), owner=i)
    for step in range(20):
        car.state(0.51 + step * 0.01, **TURNING)
        assert engine.release_deferred() == []
    car.hold(0.8, 5.0, **STRAIGHT)
    delivered = engine.release_deferred()
    engine.close()
    assert len(delivered) == 50
    records = read_lines(log)
    assert len(records) == 100  # 50 deferred when asked, 50 delivered: nothing per re-decision


def test_a_large_queue_of_two_cells_is_released_by_cell(engine: Engine) -> None:
    """1,000 queued requests in two request cells (visual text, voice) are each released with
    their own cell's decision (one verdict per cell lets them go, each then decided for real)."""
    car = turning(engine)
    for i in range(1000):
        fields = {"modality": "voice"} if i % 2 else {}
        decision = engine.decide(request(id=f"m{i}", ttl_ms=60_000, **fields), owner=i % 20)
        assert decision.outcome is Outcome.DEFER and decision.reason.endswith(QUEUED)
    car.hold(0.51, 5.0, **STRAIGHT)
    events = engine.release_deferred()
    assert len(events) == 1000 and engine.deferred.pending == {}
    outcomes = {(int(e.request_id[1:]) % 2, e.decision.outcome) for e in events if e.decision is not None}
    assert outcomes == {(0, Outcome.DEGRADE), (1, Outcome.ALLOW)}
