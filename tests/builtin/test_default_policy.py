"""Every rule of policies/default.yaml, through real frames decoded with the demo DBC."""

from __future__ import annotations

import pytest
from conftest import DemoCar, request

from safety import Engine, Outcome

PARKED = {"speed": 0.0, "gear": "P"}
CITY = {"speed": 45.0, "gear": "D", "parking_brake": "RELEASED"}
RED_LIGHT = {"speed": 0.0, "gear": "D", "parking_brake": "RELEASED", "brake": 1}


def at(car: DemoCar, **state: object) -> float:
    car.hold(0.0, 1.0, **state)  # type: ignore[arg-type]
    return 1.0


def test_parked_allows_everything(engine: Engine, car: DemoCar) -> None:
    at(car, **PARKED)
    assert engine.state().driving_state == "parked"
    for content in ("text", "image", "video", "list", "keyboard", "none"):
        d = engine.decide(request(content=content, list_items=40, text_length=500))
        assert d.outcome is Outcome.ALLOW, content
        assert d.rules[0] == "parked-allow"


@pytest.mark.parametrize("state", [CITY, RED_LIGHT], ids=["moving", "stationary-in-D"])
def test_lockouts_apply_whenever_not_parked(engine: Engine, car: DemoCar, state: dict[str, object]) -> None:
    at(car, **state)
    video = engine.decide(request(kind="interaction", category="media", content="video"))
    assert (video.outcome, video.rules) == (Outcome.DENY, ("lockout-video",))
    assert "NHTSA §V.F(a)" in video.reason
    image = engine.decide(request(content="image"))
    assert (image.outcome, image.rules) == (Outcome.DENY, ("lockout-image",))
    keyboard = engine.decide(request(kind="interaction", modality="manual", content="keyboard"))
    assert (keyboard.outcome, keyboard.rules, dict(keyboard.constraints)) == (
        Outcome.DEGRADE,
        ("lockout-text-entry",),
        {"input": "voice"},
    )


def test_long_text_is_read_aloud_short_text_shown(engine: Engine, car: DemoCar) -> None:
    at(car, **CITY)
    long_text = engine.decide(request(text_length=31))
    assert (long_text.outcome, long_text.rules, dict(long_text.constraints)) == (
        Outcome.DEGRADE,
        ("lockout-reading-text",),
        {"modality": "voice"},
    )
    short = engine.decide(request(text_length=30))
    assert (short.outcome, short.rules) == (Outcome.ALLOW, ("glanceable-visual",))
    # Without a length the text may be long: fail closed to voice.
    unknown_length = engine.decide(request(text_length=None))
    assert unknown_length.outcome is Outcome.DEGRADE
    assert dict(unknown_length.constraints) == {"modality": "voice"}


def test_lists_are_cut(engine: Engine, car: DemoCar) -> None:
    at(car, **CITY)
    d = engine.decide(request(content="list", list_items=12, text_length=None))
    assert (d.outcome, d.rules, dict(d.constraints)) == (Outcome.DEGRADE, ("limit-list",), {"max_list_items": 6})
    assert engine.decide(request(content="list", list_items=6, text_length=None)).outcome is Outcome.ALLOW


def test_voice_and_simple_manual_allowed_at_low_workload(engine: Engine, car: DemoCar) -> None:
    at(car, **CITY)
    assert engine.state().workload == "low"
    voice = engine.decide(request(modality="voice"))
    assert (voice.outcome, voice.rules) == (Outcome.ALLOW, ("voice-low-workload",))
    chime = engine.decide(request(modality="audio", content="none", category="system"))
    assert chime.outcome is Outcome.ALLOW
    button = engine.decide(request(kind="interaction", modality="manual", content="none", category="call"))
    assert (button.outcome, button.rules) == (Outcome.ALLOW, ("manual-simple",))
    status = engine.decide(request(content="none"))
    assert (status.outcome, status.rules) == (Outcome.ALLOW, ("glanceable-visual",))


def test_default_denies_what_no_rule_permits(engine: Engine, car: DemoCar) -> None:
    at(car, **CITY)
    d = engine.decide(request(modality="manual", content="text"))
    assert d.outcome is Outcome.DENY
    assert d.rules == ()
    assert d.reason == "no rule permits this request in this state (default deny)"


@pytest.mark.parametrize(
    "state",
    [
        {**CITY, "speed": 15.0, "angle": 200.0},  # sharp turn
        {**CITY, "speed": 15.0, "angle": 20.0, "rate": 250.0},  # fast steering input
        {"speed": 4.0, "gear": "R", "parking_brake": "RELEASED"},  # reversing
        {**CITY, "turn": "LEFT"},  # indicating: turning or changing lanes
    ],
    ids=["sharp-angle", "fast-rate", "reverse", "indicator"],
)
def test_high_workload_defers_non_critical_notifications(
    engine: Engine, car: DemoCar, state: dict[str, object]
) -> None:
    at(car, **state)
    assert engine.state().workload == "high"
    d = engine.decide(request(modality="voice"))
    assert (d.outcome, d.rules) == (Outcome.DEFER, ("hold-high-workload",))
    assert dict(d.constraints) == {"retry_after_ms": 1000, "until": "workload low"}
    critical = engine.decide(request(priority="critical", text_length=20))
    assert (critical.outcome, critical.rules, dict(critical.constraints)) == (
        Outcome.DEGRADE,
        ("critical-by-voice",),
        {"modality": "voice"},
    )


def test_workload_hold_then_release(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 1.0, **{**CITY, "angle": 200.0})
    car.hold(1.01, 3.9, **CITY)  # straight again: IDIS still holds for 3 s after the turn
    assert engine.decide(request(modality="voice")).outcome is Outcome.DEFER
    car.hold(3.91, 4.2, **CITY)
    assert engine.state().workload == "low"
    assert engine.decide(request(modality="voice")).outcome is Outcome.ALLOW


def test_critical_always_gets_through_by_voice(engine: Engine, car: DemoCar) -> None:
    # Before any frame: state unknown, yet critical information goes out by voice.
    d = engine.decide(request(priority="critical", content="video"))
    assert (d.outcome, dict(d.constraints)) == (Outcome.DEGRADE, {"modality": "voice"})
    at(car, **CITY)
    d = engine.decide(request(priority="critical", content="video"))
    assert (d.outcome, d.rules) == (Outcome.DEGRADE, ("critical-by-voice",))
    # Parked: the exception only caps; it does not restrict what was allowed.  (Parked once the
    # standstill has lasted the policy's dwell.)
    car.hold(1.01, 3.0, **PARKED)
    assert engine.decide(request(priority="critical", content="video")).outcome is Outcome.ALLOW


def test_unknown_state_is_the_most_demanding(engine: Engine, car: DemoCar) -> None:
    assert engine.state().driving_state == "unknown"
    assert engine.decide(request(content="video")).outcome is Outcome.DENY
    assert engine.decide(request(text_length=10)).outcome is Outcome.DEFER  # workload unknown: may be high
    at(car, **PARKED)
    assert engine.decide(request(content="video")).outcome is Outcome.ALLOW
    # The bus falls silent: 300 ms later speed and gear are stale, and parked no longer counts.
    assert engine.decide(request(content="video"), now=1.29).outcome is Outcome.ALLOW
    late = engine.decide(request(content="video"), now=1.31)
    assert late.outcome is Outcome.DENY
    assert "unknown: driving_state, workload" in late.reason
    assert late.state_time == 1.31
