"""The decisions the pipeline gives when it cannot decide: every field, exactly."""

from __future__ import annotations

import math
from typing import Any

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request

from safety import Engine


def test_an_invalid_request_is_denied_naming_the_field_with_the_state_time_and_id() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).state(12.0)
    bad = request(id="r-7", text_length=-3)
    decision = engine.decide(bad, now=12.25)
    assert decision.to_dict() == {
        "outcome": "deny",
        "rules": ["request-invalid"],
        "reason": decision.reason,
        "constraints": {"field": "text_length"},
        "policy_hash": engine.policy.hash,
        "state_time": 12.25,
        "request_id": "r-7",
    }
    assert decision.reason.startswith("invalid request: ")
    assert engine.verdict(bad, now=12.25).to_dict() == decision.to_dict()


def test_a_now_that_is_not_a_number_is_an_invalid_call() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    DemoCar(engine).state(12.0)
    for now, text in ((math.nan, "nan"), (math.inf, "inf"), ("soon", "'soon'")):
        decision = engine.decide(request(id="r-8"), now=now)  # type: ignore[arg-type]
        assert decision.to_dict() == {
            "outcome": "deny",
            "rules": ["request-invalid"],
            "reason": f"invalid request: now must be a finite number of seconds, got {text}",
            "constraints": {"field": "now"},
            "policy_hash": engine.policy.hash,
            "state_time": None,
            "request_id": "r-8",
        }


def test_an_error_while_deciding_is_a_deny_with_the_error() -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)

    class Exploding(dict[str, Any]):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def items(self) -> Any:
            raise RuntimeError("boom")

    decision = engine.decide(Exploding(request(id="r-9")))
    assert decision.to_dict() == {
        "outcome": "deny",
        "rules": ["internal-error"],
        "reason": "internal error while deciding (RuntimeError('boom')); denied",
        "constraints": {},
        "policy_hash": engine.policy.hash,
        "state_time": None,
        "request_id": None,  # the request's id could not be read either
    }
