"""#11 items 5 and 8: JSON requests and states with duplicate keys or oversized numbers.

Reproduced first: ``{"speed": 1, "speed": 2}`` was accepted (the last won) over the wire and
in ``explain --state``; a 5,000-digit integer in ``--state`` gave a ValueError traceback and a
400-digit one an OverflowError; ``glance_ms``/``ttl_ms`` of 10**400 were accepted in process.
"""

from __future__ import annotations

import json

import orjson
import pytest
from conftest import request
from hypothesis import given
from hypothesis import strategies as st

from safety import Engine, Outcome
from safety.cli.main import main
from safety.client.protocol import parse_message
from safety.errors import ServiceError
from safety.jsontext import loads_strict, may_hide_duplicates


@pytest.mark.parametrize(
    "line",
    [
        b'{"op":"decide","id":1,"id":2}',
        b'{"op" :"decide","id":1,"id" : 2}',
        b'{"op":"decide","request":{"kind":"a\\"","kind":"b"}}',
        b'{"op":"decide","request":{"kind":"notification","kind":"interaction"}}',
    ],
)
def test_a_protocol_line_with_a_duplicate_key_is_bad_json(line: bytes) -> None:
    with pytest.raises(ServiceError) as info:
        parse_message(line)
    assert info.value.code == "bad-json"
    assert str(info.value).startswith("bad-json: not JSON DriveGate accepts: duplicate key ")


def test_compact_lines_take_the_fast_path_and_escaped_ones_are_still_read() -> None:
    compact = orjson.dumps({"op": "decide", "id": 1, "request": {"kind": "notification", "text_length": 3}})
    assert not may_hide_duplicates(compact, orjson.loads(compact))
    escaped = b'{"op":"decide","id":"a\\":b","request":{}}'
    assert parse_message(escaped) == {"op": "decide", "id": 'a":b', "request": {}}


keys = st.text(alphabet='ab"\\: ', max_size=3)
documents = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab"\\: ,{}', max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(keys, inner), max_size=4),
    max_leaves=12,
)


def _encode(value: object, spaced: bool) -> str:
    """JSON text of ``value``, where a list of pairs is an object that may repeat a key."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        colon = " : " if spaced else ":"
        return "{" + ",".join(json.dumps(k) + colon + _encode(v, spaced) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v, spaced) for v in value) + "]"
    return json.dumps(value)


@given(documents, st.booleans())
def test_the_fast_path_never_lets_a_duplicate_key_through(value: object, spaced: bool) -> None:
    """``may_hide_duplicates`` False is a proof: no line with a repeated key passes it."""
    line = _encode(value, spaced).encode()
    try:
        loads_strict(line)
        duplicated = False
    except json.JSONDecodeError:
        raise
    except ValueError:
        duplicated = True
    if duplicated:
        assert may_hide_duplicates(line, orjson.loads(line))


def test_strict_json_names_the_problem() -> None:
    with pytest.raises(ValueError, match="duplicate key 'speed'"):
        loads_strict('{"speed": 1, "speed": 2}')
    with pytest.raises(ValueError, match="an integer of 5000 digits; at most 40 are read"):
        loads_strict('{"speed": ' + "9" * 5000 + "}")


MOVING = '{"speed": 45, "gear": "D"}'
TEXT = json.dumps(request())


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ('{"speed": 1, "speed": 2}', "--state: bad-json: invalid JSON: duplicate key 'speed'"),
        (
            '{"speed": ' + "9" * 5000 + "}",
            "--state: bad-json: invalid JSON: an integer of 5000 digits; at most 40 are read",
        ),
        (
            '{"speed": ' + "9" * 400 + "}",
            "--state: bad-json: invalid JSON: an integer of 400 digits; at most 40 are read",
        ),
    ],
)
def test_explain_state_refuses_hostile_json_with_exit_2(
    state: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "default", "--state", state, "--request", TEXT]) == 2
    assert capsys.readouterr().err.strip() == message


def test_explain_state_with_a_huge_number_explains_it_as_implausible(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "default", "--state", '{"speed": 1' + "0" * 38 + "}", "--request", TEXT]) == 0
    assert "unknown: speed (implausible value 1e+38 km/h (outside -60..400))" in capsys.readouterr().out


@pytest.mark.parametrize("field", ["glance_ms", "ttl_ms", "text_length", "list_items"])
@pytest.mark.parametrize("value", [10**400, 10**5000, 2**53], ids=["10e400", "10e5000", "2e53"])
def test_oversized_request_numbers_are_invalid_requests(engine: Engine, field: str, value: int) -> None:
    decision = engine.decide(request(**{field: value}))
    assert decision.outcome is Outcome.DENY
    bits = value.bit_length()
    shown = "9007199254740992" if value == 2**53 else f"an integer of {bits} bits"
    assert decision.reason == f"invalid request: {field} must be at most 9007199254740991 (2**53 - 1), got {shown}"


def test_the_largest_exact_number_is_still_a_number(engine: Engine) -> None:
    assert not engine.decide(request(text_length=2**53 - 1)).reason.startswith("invalid request")
