"""policies/speed-bands.yaml: Android Automotive style restrictions by speed band, with hysteresis."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import DEMO_VEHICLE, ROOT, SPEED_BANDS_POLICY, DemoCar, request

from safety import Engine, Outcome


@pytest.fixture
def bands() -> tuple[Engine, DemoCar]:
    engine = Engine.load(DEMO_VEHICLE, SPEED_BANDS_POLICY)
    return engine, DemoCar(engine)


def ramp(car: DemoCar, t0: float, speeds: list[float], step: float = 0.02) -> float:
    """Drive through ``speeds``, sending frames every ``step`` s, never faster than 1 km/h per frame."""
    t = t0
    current = speeds[0]
    for target in speeds:
        n = max(1, int(abs(target - current)) + 1)
        for i in range(1, n + 1):
            car.state(t, speed=current + (target - current) * i / n, gear="D", parking_brake="RELEASED")
            t += step
        current = target
    return t


def test_parked_and_idling(bands: tuple[Engine, DemoCar]) -> None:
    engine, car = bands
    car.hold(0.0, 0.3, speed=0.0, gear="P")
    assert engine.decide(request(content="video")).rules == ("parked",)
    car.hold(0.31, 0.6, speed=0.0, gear="D", parking_brake="RELEASED")
    assert engine.state().driving_state == "stationary"
    idle_text = engine.decide(request(text_length=500))
    assert (idle_text.outcome, idle_text.rules) == (Outcome.ALLOW, ("idling-allow",))
    assert engine.decide(request(content="video")).outcome is Outcome.DENY
    kb = engine.decide(request(content="keyboard", modality="manual"))
    assert (kb.outcome, dict(kb.constraints)) == (Outcome.DEGRADE, {"input": "voice"})


def test_band_rules(bands: tuple[Engine, DemoCar]) -> None:
    engine, car = bands
    t = ramp(car, 0.0, [0.0, 3.0, 6.0])
    assert engine.state().values["speed_band"] == "crawl"
    crawl = engine.decide(request(text_length=200))
    assert (crawl.outcome, crawl.rules, dict(crawl.constraints)) == (
        Outcome.DEGRADE,
        ("limit-string-length",),
        {"max_text_length": 120},
    )
    t = ramp(car, t, [8.0, 10.0, 14.0, 20.0, 30.0])
    city = engine.decide(request(text_length=200))
    assert (city.outcome, city.rules, dict(city.constraints)) == (
        Outcome.DEGRADE,
        ("limit-string-length", "city-no-text-message"),
        {"max_text_length": 120, "modality": "voice"},
    )
    long_list = engine.decide(request(category="approval", content="list", list_items=30, text_length=None))
    assert dict(long_list.constraints) == {"max_list_items": 21}
    t = ramp(car, t, [40.0, 50.0, 58.0, 60.0, 70.0])
    assert engine.state().values["speed_band"] == "highway"
    highway_list = engine.decide(request(category="approval", content="list", list_items=30, text_length=None))
    assert (highway_list.rules, dict(highway_list.constraints)) == (
        ("limit-content", "highway-short-lists"),
        {"max_list_items": 6},
    )


def test_moving_voice_visual_and_critical(bands: tuple[Engine, DemoCar]) -> None:
    engine, car = bands
    ramp(car, 0.0, [0.0, 20.0])
    voice = engine.decide(request(modality="voice", text_length=500))
    assert (voice.outcome, voice.rules) == (Outcome.ALLOW, ("moving-voice",))
    status = engine.decide(request(category="navigation", text_length=40))
    assert (status.outcome, status.rules) == (Outcome.ALLOW, ("moving-visual",))
    critical = engine.decide(request(priority="critical", content="video"))
    assert (critical.outcome, critical.rules, dict(critical.constraints)) == (
        Outcome.DEGRADE,
        ("critical", "city-no-text-message"),  # a degrade that holds at the capped rank still counts
        {"modality": "voice"},
    )


def test_band_edges_do_not_flap(bands: tuple[Engine, DemoCar]) -> None:
    engine, car = bands
    t = ramp(car, 0.0, [0.0, 3.0, 6.0, 9.0, 10.5])
    assert engine.state().values["speed_band"] == "city"
    seen = set()
    for v in [9.5, 8.5, 10.2, 8.1, 9.9, 8.05] * 5:  # hovering below the edge, within the 2 km/h hysteresis
        t = ramp(car, t, [v])
        seen.add(engine.state().values["speed_band"])
    assert seen == {"city"}
    t = ramp(car, t, [7.5])
    assert engine.state().values["speed_band"] == "city"  # a band down only after the dwell
    car.hold(t, t + 1.6, speed=7.5, gear="D", parking_brake="RELEASED")
    assert engine.state().values["speed_band"] == "crawl"


def test_reverse_holds_and_unknown_speed_denies(bands: tuple[Engine, DemoCar]) -> None:
    engine, car = bands
    car.hold(0.0, 0.3, speed=3.0, gear="R", parking_brake="RELEASED")
    d = engine.decide(request(modality="voice"))
    assert (d.outcome, d.rules) == (Outcome.DEFER, ("reversing-hold",))
    # The bus goes silent: restricted as the most demanding state could be (Android
    # Automotive restricts fully on a NaN speed); voice is held, never allowed.
    assert engine.decide(request(modality="voice"), now=1.0).outcome is Outcome.DEFER
    assert engine.decide(request(content="video"), now=1.0).outcome is Outcome.DENY


def test_demo_command_runs(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safety.cli", "demo"],
        capture_output=True,
        text=True,
        check=False,
        env={"DRIVEGATE_DEMO_SPEED": "200", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for phase in ("parked", "sharp left turn", "reversing into spot", "parked again"):
        assert phase in out
    assert "moving     high" in out and "DENY" in out
