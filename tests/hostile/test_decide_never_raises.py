"""#11 item 8: ``decide`` never raises, for any argument whatsoever.

Reproduced first: a Mapping whose ``get`` raises made ``decide`` raise (the request id was read
outside the guard).  Here hypothesis throws everything at ``decide``, ``verdict`` and ``explain``
arguments: mappings whose every method raises, keys that cannot be hashed or compared, numbers
past every range, ``now`` of any type; the answer is always a Decision, and never an allow for
what is not a valid request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, DemoCar, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Decision, Engine, Outcome, validate_request


class Boom(Exception):
    pass


class RaisingMapping(Mapping[str, Any]):
    """A Mapping whose chosen methods raise (``Mapping`` derives the rest from them)."""

    def __init__(self, data: dict[str, Any], raising: frozenset[str]) -> None:
        self.data, self.raising = data, raising

    def _maybe(self, name: str) -> None:
        if name in self.raising:
            raise Boom(name)

    def __getitem__(self, key: str) -> Any:
        self._maybe("getitem")
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        self._maybe("iter")
        return iter(self.data)

    def __len__(self) -> int:
        self._maybe("len")
        return len(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        self._maybe("get")
        return self.data.get(key, default)

    def keys(self) -> Any:
        self._maybe("keys")
        return self.data.keys()

    def __contains__(self, key: object) -> bool:
        self._maybe("contains")
        return key in self.data

    def __repr__(self) -> str:
        self._maybe("repr")
        return f"RaisingMapping({self.data!r})"


class Weird:
    """A value whose comparisons, hash and str raise."""

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __str__(self) -> str:
        raise Boom("str")

    __repr__ = __str__

    def __lt__(self, other: object) -> bool:
        raise Boom("lt")


WEIRD = "<weird>"  # replaced after generation: hypothesis reprs what it generates
METHODS = ("getitem", "iter", "len", "get", "keys", "contains", "repr")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**400), max_value=2**400),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.just(WEIRD),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)
fields = st.sampled_from(
    [
        "id",
        "kind",
        "category",
        "modality",
        "content",
        "priority",
        "text_length",
        "list_items",
        "text",
        "task_id",
        "glance_ms",
        "ttl_ms",
        "app",
        "extra",
    ]
)
request_dicts = st.builds(
    lambda base, extra: {**(request() if base else {}), **extra},
    st.booleans(),
    st.dictionaries(fields, values, max_size=5),
)
requests = st.one_of(
    request_dicts,
    st.tuples(request_dicts, st.frozensets(st.sampled_from(METHODS), max_size=3)).map(lambda t: ("raising", *t)),
    values,
)


def realise(value: Any) -> Any:
    if value == WEIRD:
        return Weird()
    if isinstance(value, tuple) and value and value[0] == "raising":
        return RaisingMapping(realise(value[1]), value[2])
    if isinstance(value, dict):
        return {k: realise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [realise(v) for v in value]
    return value


ENGINE = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
DemoCar(ENGINE).hold(0.0, 1.0, speed=0.0, gear="P", parking_brake="ENGAGED")  # parked: allows are possible


def _valid(candidate: Any) -> bool:
    try:
        return isinstance(candidate, Mapping) and validate_request(candidate) is None
    except Exception:
        return False


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests, st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3), st.just(WEIRD)), st.booleans())
def test_decide_verdict_and_explain_always_answer(generated: Any, now: Any, explain: bool) -> None:
    hostile, at = realise(generated), realise(now)
    answers = [
        ENGINE.decide(hostile, at, explain=explain),
        ENGINE.verdict(hostile, at),
        ENGINE.decide(hostile, at, explain=explain, owner=Weird()),
    ]
    for decision in answers:
        assert isinstance(decision, Decision) and isinstance(decision.outcome, Outcome)
        if not _valid(hostile):
            assert decision.outcome is Outcome.DENY, decision


def test_a_now_whose_repr_raises_is_an_invalid_call_not_an_exception() -> None:
    """Found by the property above: ``verdict(request, now)`` raised from the message of the
    invalid ``now`` (its repr raised), outside any guard."""
    for decision in (ENGINE.verdict(request(), Weird()), ENGINE.decide(request(), Weird())):
        assert (decision.outcome, decision.rules) == (Outcome.DENY, ("request-invalid",))
        assert (
            decision.reason
            == "invalid request: now must be a finite number of seconds, got a Weird that cannot be shown"
        )
