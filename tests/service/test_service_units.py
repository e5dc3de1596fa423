"""The service's parts in process: live clock, input lag, bus specs, token bucket, fallbacks, responses."""

from __future__ import annotations

import time
from collections import deque

import can
import pytest
from conftest import DemoCar

from safety import Engine
from safety.client.client import Fallback, decision_from_response
from safety.client.protocol import check_envelope, error_line, parse_message
from safety.errors import ServiceError
from safety.model.decision import Outcome
from safety.service.clock import LiveClock
from safety.service.inputs import BusReader, LagEstimator, parse_bus_spec
from safety.service.server import TokenBucket

# One frame of each message of the demo sedan, parked (see conftest.DemoCar.state).
PARKED = [
    ("VEHICLE_SPEED", {"VehicleSpeed": 0.0}),
    ("TRANSMISSION", {"GearPosition": "PARK"}),
    ("STEERING", {"SteeringAngle": 0.0, "SteeringAngleFine": 0.0, "SteeringRate": 0.0}),
    ("BODY_STATUS", {"BodyMux": 0, "ParkingBrake": "ENGAGED", "TurnSignal": "OFF"}),
    ("BRAKE", {"BrakePressed": 0}),
]


class Ticks:
    """A monotonic clock the test moves by hand (injected, as Engine takes ids= and clock_ns=)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_live_clock_advances_between_frames_and_never_steps_back() -> None:
    ticks = Ticks()
    clock = LiveClock(ticks)
    assert clock.now() is None  # before the first frame: no time, every decision fails closed
    clock.mark(1000.0)
    assert clock.now() == 1000.0
    ticks.t += 0.25  # a quarter second of silence
    assert clock.now() == pytest.approx(1000.25)
    clock.mark(1000.1)  # a late frame stamped before the time already given out
    assert clock.now() == pytest.approx(1000.25)
    ticks.t += 0.2
    assert clock.now() == pytest.approx(1000.3)
    assert clock.last_frame_time == 1000.1


def test_bus_spec() -> None:
    spec = parse_bus_spec("pcan:PCAN_USBBUS1,bitrate=500000,fd=true,data_bitrate=0x1E8480,name=x")
    assert (spec.interface, spec.channel) == ("pcan", "PCAN_USBBUS1")
    assert spec.options == {"bitrate": 500000, "fd": True, "data_bitrate": 2_000_000, "name": "x"}
    assert str(parse_bus_spec("socketcan:can0")) == "socketcan:can0"
    for bad in ("can0", ":can0", "socketcan:", "socketcan:can0,bitrate"):
        with pytest.raises(ServiceError, match=r"INTERFACE:CHANNEL|key=value"):
            parse_bus_spec(bad)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() > 0.5  # empty: about a second until the next token
    assert TokenBucket(rate=0, burst=1).take() == 0.0  # 0 = unlimited


def test_fallback_never_allows() -> None:
    with pytest.raises(ValueError, match="must not allow"):
        Fallback(Outcome.ALLOW)
    decision = Fallback(Outcome.DEGRADE, {"modality": "voice"}).decision({"id": "m1"}, "no answer")
    assert decision.outcome is Outcome.DEGRADE and decision.rules == ("client-fallback",)
    assert decision.constraints == {"modality": "voice"} and decision.request_id == "m1"
    assert "no answer" in decision.reason
    assert Fallback().decision(None, "x").outcome is Outcome.DENY


def test_responses_that_are_not_decisions_are_rejected() -> None:
    good = {
        "v": 1,
        "ok": True,
        "op": "decide",
        "id": 1,
        "outcome": "degrade",
        "rules": ["r"],
        "reason": "why",
        "constraints": {"modality": "voice"},
        "policy_hash": "h",
        "state_time": 1.5,
        "request_id": None,
    }
    assert decision_from_response(good).outcome is Outcome.DEGRADE
    for bad in (
        {**good, "outcome": "maybe"},
        {**good, "rules": "r"},
        {**good, "state_time": "now"},
        {k: v for k, v in good.items() if k != "reason"},
        {"ok": "yes"},
    ):
        with pytest.raises(ServiceError):
            decision_from_response(bad)
    with pytest.raises(ServiceError, match="rate"):
        decision_from_response({"ok": False, "error": {"code": "rate-limited", "message": "rate"}})


def test_envelope_checks() -> None:
    assert check_envelope(parse_message(b'{"op": "ping", "id": "a"}')) == ("ping", "a")
    assert check_envelope(parse_message(b'{"v": 1, "op": "decide"}')) == ("decide", None)
    for line, code in (
        (b"nope", "bad-json"),
        (b'"a string"', "bad-json"),
        (b'{"v": true, "op": "ping"}', "unsupported-version"),
        (b'{"v": 1, "op": 3}', "bad-request"),
        (b'{"v": 1, "op": "ping", "id": {}}', "bad-request"),
    ):
        with pytest.raises(ServiceError) as info:
            check_envelope(parse_message(line))
        assert info.value.code == code
    assert error_line("refused", "no").endswith(b"\n")


def test_lag_estimator_sees_late_frames_whatever_the_clock_epoch() -> None:
    lag = LagEstimator(rate=1.0)
    epoch = 5000.0  # the frames' clock and the monotonic clock differ by any constant
    assert lag.observe(epoch + 0.0, 10.0) == 0.0
    assert lag.observe(epoch + 0.1, 10.1) == pytest.approx(0.0)
    assert lag.observe(epoch + 0.2, 10.45) == pytest.approx(0.25)  # read 250 ms late
    assert lag.observe(epoch + 0.5, 10.5) == pytest.approx(0.0)
    replay = LagEstimator(rate=20.0)  # a replay's frames run 20x faster than real time
    assert replay.observe(100.0, 1.0) == 0.0
    assert replay.observe(102.0, 1.1) == pytest.approx(0.0)
    assert replay.observe(104.0, 1.5) == pytest.approx(0.3)


@pytest.mark.parametrize("late_s", [0.0, 0.5])
def test_a_reader_that_falls_behind_ages_the_state_and_fails_closed(engine: Engine, late_s: float) -> None:
    """Frames put on a real virtual bus, taken by the BusReader thread: when they reach it half a
    second after they were sent, the state is half a second old (stale), not fresh."""
    car = DemoCar(engine)
    clock = LiveClock()
    tx = can.Bus(interface="virtual", channel=f"lag-{late_s}", preserve_timestamps=True)
    rx = can.Bus(interface="virtual", channel=f"lag-{late_s}")
    sent: deque[float] = deque()
    reader = BusReader(rx, engine, clock, sent_at=sent)
    messages = [car.frame(name, 1000.0, **values) for name, values in PARKED]
    for msg in messages:
        sent.append(time.monotonic() - late_s)
        tx.send(msg)
    reader.start()
    try:
        deadline = time.monotonic() + 5
        while reader.frames < len(messages):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        reader.stop()
        tx.shutdown()
    state = engine.state(clock.now())
    assert reader.max_lag >= late_s
    if late_s:
        assert state.driving_state == "unknown"
        assert state.unknown["gear"].startswith("stale")
    else:
        assert state.driving_state == "parked"
