"""A request's text fields must be strings: anything else is an invalid request, named exactly."""

from __future__ import annotations

import pytest
from conftest import request

from safety import Engine, Outcome
from safety.model.request import validate_request


@pytest.mark.parametrize("field", ["id", "app", "text", "task_id"])
@pytest.mark.parametrize(("value", "kind"), [(5, "int"), (1.5, "float"), (["a"], "list"), ({"a": 1}, "dict"), (True, "bool")])
def test_a_text_field_that_is_not_a_string_is_refused(engine: Engine, field: str, value: object, kind: str) -> None:
    bad = request(**{field: value})
    problem = validate_request(bad)
    assert problem is not None
    assert (problem.location.field, problem.message) == (field, f"{field} must be a string, got {kind}")
    decision = engine.decide(bad)
    assert (decision.outcome, decision.reason) == (Outcome.DENY, f"invalid request: {field} must be a string, got {kind}")


def test_strings_and_absent_text_fields_are_fine() -> None:
    assert validate_request(request(id="r-1", app="chat", text="hello", task_id="t")) is None
    assert validate_request(request()) is None
