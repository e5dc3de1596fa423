"""How a request's bad value is shown in an error: never failing, never flooding (``safety.model.request.shown``)."""

from __future__ import annotations

from safety.model.request import shown


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_big_integers_are_described_by_their_size_from_65_bits() -> None:
    assert shown(2**64 - 1) == "18446744073709551615"  # 64 bits: shown
    assert shown(2**64) == "an integer of 65 bits"
    assert shown(-(2**100)) == "an integer of 101 bits"
    assert shown(True) == "True"  # a bool is not an int here


def test_a_value_whose_repr_fails_is_named_by_its_type() -> None:
    assert shown(Hostile()) == "a Hostile that cannot be shown"


def test_long_values_are_cut_to_80_characters() -> None:
    exactly = "x" * 78  # repr adds the quotes: 80
    assert shown(exactly) == repr(exactly)
    longer = "x" * 79
    assert shown(longer) == repr(longer)[:77] + "..."
    assert len(shown("y" * 10_000)) == 80
