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


def test_each_refusal_names_its_field_and_what_was_expected() -> None:
    def refused(asked: object) -> tuple[str | None, str]:
        problem = validate_request(asked)  # type: ignore[arg-type]
        assert problem is not None
        return problem.location.field, problem.message

    assert refused(["not", "a", "mapping"]) == ("", "a request must be a mapping of fields, got list")
    missing = request(kind=None)
    assert refused(missing) == ("kind", "missing required field 'kind'; expected one of: notification, interaction")
    assert refused(request(kind=["notification"])) == ("kind", "unknown kind ['notification']; expected one of: notification, interaction")
    assert refused(request(text_length=2**53)) == ("text_length", "text_length must be at most 9007199254740991 (2**53 - 1), got 9007199254740992")
    assert refused(request(text_length=-1)) == ("text_length", "text_length must be a whole number >= 0, got -1")


@pytest.mark.parametrize("value", [0, 1, 2**53 - 1])
def test_numbers_from_zero_to_the_largest_exact_one_are_fine(value: int) -> None:
    assert validate_request(request(text_length=value, list_items=value, glance_ms=value, ttl_ms=value)) is None
