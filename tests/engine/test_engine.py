"""The Engine's API: requests (valid and not), a real virtual bus, threads, determinism."""

from __future__ import annotations

import threading
import time

import can
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import REQUEST_FIELDS, Engine, Outcome, validate_request


def test_invalid_requests_are_denied_naming_the_field(engine: Engine) -> None:
    cases = {
        "unknown field 'colour'": request(colour="red"),
        "unknown content 'hologram'": request(content="hologram"),
        "missing required field 'priority'": request(priority=None),
        "text_length must be a whole number >= 0, got -3": request(text_length=-3),
        "a request must be a mapping of fields, got str": "show me",
    }
    for expected, req in cases.items():
        d = engine.decide(req)  # type: ignore[arg-type]
        assert d.outcome is Outcome.DENY
        assert d.rules == ("request-invalid",)
        assert expected in d.reason, (expected, d.reason)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*REQUEST_FIELDS, "x", ""]),
        st.one_of(
            st.none(),
            st.text(max_size=8),
            st.integers(-5, 500),
            st.lists(st.integers(), max_size=2),
            st.sampled_from(["text", "video", "voice", "critical", "notification", "message"]),
        ),
    )
)
def test_decide_never_raises_and_never_allows_invalid(req: dict[str, object]) -> None:
    engine = _ENGINE
    d = engine.decide(req)
    if validate_request(req) is not None:
        assert d.outcome is Outcome.DENY
    assert d.policy_hash == engine.policy.hash


_ENGINE = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)


def test_decision_fields(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.5, speed=45.0, gear="D", parking_brake="RELEASED")
    d = engine.decide(request(id="req-7", content="video"))
    assert d.to_dict() == {
        "outcome": "deny",
        "rules": ["lockout-video"],
        "reason": "video is locked out unless parked (NHTSA §V.F(a))",
        "constraints": {},
        "policy_hash": engine.policy.hash,
        "state_time": 0.5,
        "request_id": "req-7",
    }
    explained = engine.decide(request(content="video"), explain=True)
    assert "lockout-video: holds -> deny" in explained.reason
    assert "parked-allow: does not hold -> allow" in explained.reason


def test_listens_on_a_real_virtual_bus() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    car = DemoCar(engine)
    with (
        can.Bus(interface="virtual", channel="engine-test", preserve_timestamps=True) as tx,
        can.Bus(interface="virtual", channel="engine-test") as rx,
    ):
        notifier = can.Notifier(rx, [engine.on_frame])
        try:
            for i in range(50):
                t = i * 0.01
                for name, values in (
                    ("VEHICLE_SPEED", {"VehicleSpeed": 80.0}),
                    ("TRANSMISSION", {"GearPosition": "DRIVE"}),
                    ("STEERING", {}),
                    ("BODY_STATUS", {"BodyMux": 0}),
                ):
                    tx.send(car.frame(name, t, **values))
            deadline = time.monotonic() + 5
            while engine.frames_seen < 200 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            notifier.stop()
    assert engine.frames_seen == 200
    snap = engine.state()
    assert snap.time == 0.49  # the frames' own time, kept by the bus
    assert (snap.driving_state, snap.values["speed"], snap.values["gear"]) == ("moving", 80.0, "D")
    assert engine.decide(request(content="video")).outcome is Outcome.DENY


def test_frames_on_one_thread_decisions_on_others(engine: Engine, car: DemoCar) -> None:
    frames = []
    for i in range(2000):
        frames += [
            car.frame("VEHICLE_SPEED", i * 0.01, VehicleSpeed=50.0),
            car.frame("TRANSMISSION", i * 0.01, GearPosition="DRIVE"),
            car.frame("STEERING", i * 0.01),
        ]
    errors: list[BaseException] = []
    outcomes: set[Outcome] = set()

    def feed() -> None:
        for msg in frames:
            engine.on_frame(msg)

    def ask() -> None:
        try:
            for _ in range(3000):
                outcomes.add(engine.decide(request(content="video")).outcome)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=feed)] + [threading.Thread(target=ask) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert outcomes == {Outcome.DENY}  # video: unknown or moving, never allowed
    assert engine.frames_seen == len(frames)


def test_bad_frames_never_crash(engine: Engine) -> None:
    engine.on_frame(can.Message(arbitration_id=0x0B4, data=b"\x01", timestamp=1.0))  # too short
    engine.on_frame(can.Message(arbitration_id=0x0B4, is_error_frame=True, timestamp=1.0))
    engine.on_frame(can.Message(arbitration_id=0x7FF, data=b"", timestamp=1.0))
    assert engine.state().values["speed"] is None
    assert engine.counters["frames_ignored"] == 1


def test_sna_makes_the_signal_unknown(engine: Engine, car: DemoCar) -> None:
    car.hold(0.0, 0.2, speed=50.0, gear="D")
    car.send("TRANSMISSION", 0.21, GearPosition="SNA")
    snap = engine.state()
    assert snap.values["gear"] is None and snap.driving_state == "unknown"
    assert engine.counters["invalid"] == {"gear": 1}
