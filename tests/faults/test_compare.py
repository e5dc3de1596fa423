"""compare_timelines on timelines written by hand: each line holds until the next."""

from __future__ import annotations

from typing import Any

from safety.faults.compare import Loosening, compare_timelines


def line(t: float, *, state: str = "moving", **decisions: str) -> dict[str, Any]:
    return {"t": t, "driving_state": state, "workload": "low", "decisions": decisions}


def test_equal_timelines_never_differ() -> None:
    clean = [line(0.0, video="deny"), line(2.0, state="parked", video="allow")]
    result = compare_timelines(clean, list(clean))
    assert (result.looser, result.first_difference, result.equal_again, result.stricter_seconds) == ([], None, None, {})


def test_stricter_for_a_while_then_equal_again() -> None:
    clean = [line(0.0, video="allow", chime="allow"), line(10.0, video="allow", chime="allow")]
    # The faulty one is stricter on video from 1 s to 4 s (lines of either timeline cut the time).
    faulty = [line(0.0, video="allow", chime="allow"), line(1.0, video="deny", chime="allow"), line(4.0, video="allow", chime="allow")]
    result = compare_timelines(clean, faulty)
    assert result.looser == []
    assert result.first_difference == 1.0
    assert result.equal_again == 4.0
    assert result.stricter_seconds == {"video": 3.0}


def test_looser_is_listed_at_every_time_it_holds_and_still_different_at_the_end() -> None:
    clean = [line(0.0, video="deny"), line(5.0, video="deny")]
    faulty = [line(1.0, video="defer"), line(3.0, video="allow")]
    result = compare_timelines(clean, faulty)
    # From 1 s, when both timelines have begun; the last time has no span after it.
    assert result.looser == [
        Loosening(1.0, "video", "deny", "defer"),
        Loosening(3.0, "video", "deny", "allow"),
        Loosening(5.0, "video", "deny", "allow"),
    ]
    assert result.first_difference == 1.0
    assert result.equal_again == float("inf")  # never equal again
    assert result.stricter_seconds == {}


def test_a_state_difference_counts_as_a_difference_and_unknown_probes_are_left_out() -> None:
    clean = [line(0.0, video="deny", only_clean="allow")]
    faulty = [line(0.0, state="unknown", video="deny")]
    result = compare_timelines(clean, faulty)
    assert (result.looser, result.first_difference, result.equal_again) == ([], 0.0, float("inf"))
