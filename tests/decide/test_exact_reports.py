"""Exact reasons, fields and codes where mutation testing found them unchecked (#13).

Each was a surviving mutant (a string or a field changed, and no test noticed): a caller that
reads ``constraints.field`` or the reason to tell the user what was wrong depends on them.
"""

from __future__ import annotations

import math

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine, validate_request
from safety.vehicle.clock import StreamClock


def test_a_decision_at_a_now_that_is_not_a_number_names_the_field() -> None:
    """Mutants of ``pipeline.bad_now``: ``Location(field="now")`` and its message."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    d = engine.decide(request(), now=math.nan)
    assert d.to_dict() | {"policy_hash": ""} == {
        "outcome": "deny",
        "rules": ["request-invalid"],
        "reason": "invalid request: now must be a finite number of seconds, got nan",
        "constraints": {"field": "now"},
        "policy_hash": "",
        "state_time": None,
        "request_id": None,
    }


def test_request_errors_name_their_field_and_code() -> None:
    """Mutants of ``validate_request``: the field of each error, an unhashable value."""
    base = request()
    for fields, expected in (
        (
            {"zzz": 1},
            "field 'zzz': bad-request: unknown field 'zzz'; expected one of: id, app, kind, category, modality, "
            "content, priority, text_length, list_items, text, task_id, glance_ms, ttl_ms",
        ),
        ({"text_length": -1}, "field 'text_length': bad-request: text_length must be a whole number >= 0, got -1"),
        (
            {"content": ["x"]},
            "field 'content': bad-request: unknown content ['x']; expected one of: text, image, video, list, "
            "keyboard, none",
        ),
    ):
        error = validate_request({**base, **fields})
        assert error is not None and str(error) == expected
        assert error.location.field == next(iter(fields))


def test_unknown_reasons_are_exact() -> None:
    """Mutants of ``snapshot`` and ``_driving_state``: the reason strings and the ages of unknowns."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    bad = engine.state(now=math.nan)
    assert bad.unknown["speed"] == "no valid time: now is nan" and bad.ages["speed"] is None
    never = engine.state(now=1.0)
    assert never.unknown["speed"] == "never received" and never.ages["speed"] is None
    assert never.unknown["driving_state"] == "speed and gear unknown"
    DemoCar(engine).send("TRANSMISSION", 1.0, GearPosition="DRIVE")
    assert engine.state(now=1.0).unknown["driving_state"] == "speed unknown"


def test_a_new_time_base_needs_exactly_confirm_frames() -> None:
    """Mutant of ``StreamClock._jump``: ``_pending_count < confirm`` -> ``<=``."""
    rejected: dict[str, int] = {}
    clock = StreamClock(rejected)
    assert clock.admit(100.0) == 100.0
    far = 100.0 + 3600.0
    answers = [clock.admit(far + k * 0.01) for k in range(clock.confirm)]
    assert answers[:-1] == [None] * (clock.confirm - 1)
    assert answers[-1] == far + (clock.confirm - 1) * 0.01
    assert rejected == {"time-jump": clock.confirm - 1}


def test_a_reload_keeps_the_sample_counts() -> None:
    """Mutant of ``VehicleState.carry_over``: ``fresh.counters = None`` (the counts of invalid,
    implausible and integrity-failing samples lost, and the engine's counters broken, on reload)."""
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    car = DemoCar(engine)
    car.send("VEHICLE_SPEED", 1.0, VehicleSpeed=655.35)  # the DBC's SNA
    assert engine.counters["invalid"] == {"speed": 1}
    engine.reload(DEFAULT_POLICY)
    car.send("VEHICLE_SPEED", 1.1, VehicleSpeed=655.35)
    assert engine.counters["invalid"] == {"speed": 2}


def test_a_request_whose_get_raises_is_denied_not_raised() -> None:
    """#11 item 8: ``decide`` raised when given a Mapping whose ``get`` raises: the request id was
    read outside the guard (and again in the handler of the error it caused)."""
    from collections.abc import Iterator, Mapping
    from typing import Any

    from safety import Outcome

    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            return iter(["kind"])

        def __len__(self) -> int:
            return 1

        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    for now in (1.0, math.nan):
        d = engine.decide(Hostile(), now=now)
        assert d.outcome is Outcome.DENY and d.request_id is None
        assert d.rules in (("internal-error",), ("request-invalid",))
    assert engine.verdict(Hostile()).outcome is Outcome.DENY
