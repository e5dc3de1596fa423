"""The stream clock decided exactly at its limits: the jump limit, the confirmation window and count."""

from __future__ import annotations

import math

from safety.vehicle.clock import CONFIRM_WINDOW_S, TIME_JUMP, TIME_NOT_FINITE, StreamClock


def clock() -> tuple[StreamClock, dict[str, int], list[float]]:
    rejected: dict[str, int] = {}
    rebased: list[float] = []
    return StreamClock(rejected, rebased.append, max_jump_s=10.0, confirm=3), rejected, rebased


def test_the_first_time_is_taken_and_held() -> None:
    c, rejected, _ = clock()
    assert c.admit(100.0) == 100.0
    assert c.time == 100.0
    assert c.admit(200.0) is None  # 100 s after the first: a jump, not a new first time
    assert rejected == {TIME_JUMP: 1}


def test_exactly_at_the_jump_limit_is_believed_either_way() -> None:
    c, rejected, _ = clock()
    c.admit(100.0)
    assert c.admit(110.0) == 110.0  # exactly +10 s
    assert c.admit(100.0) == 110.0  # exactly -10 s: believed (the time stays)
    assert c.admit(math.nextafter(120.0, math.inf)) is None  # just past +10 s
    assert c.admit(math.nextafter(100.0, 0.0)) is None  # just past -10 s
    assert rejected == {TIME_JUMP: 2}


def test_every_time_that_is_not_finite_is_counted() -> None:
    c, rejected, _ = clock()
    for bad in (math.nan, math.inf, -math.inf):
        assert c.admit(bad) is None
    assert rejected == {TIME_NOT_FINITE: 3}
    assert c.time is None


def test_a_new_time_base_takes_exactly_three_agreeing_frames() -> None:
    c, rejected, rebased = clock()
    c.admit(100.0)
    assert c.admit(1000.0) is None
    assert c.admit(1000.0 + CONFIRM_WINDOW_S) is None  # exactly the window from the one before: agrees
    assert not c.settled
    assert c.admit(1000.0 + 2 * CONFIRM_WINDOW_S) == 1002.0  # the third: the new base
    assert rebased == [1002.0] and c.settled and rejected == {TIME_JUMP: 2}


def test_frames_further_apart_than_the_window_start_the_count_again() -> None:
    c, _, rebased = clock()
    c.admit(100.0)
    c.admit(1000.0)
    c.admit(math.nextafter(1000.0 + CONFIRM_WINDOW_S, math.inf))  # just past the window: count 1 again
    assert c.admit(1001.5) is None  # count 2
    assert rebased == []
    assert c.admit(1002.0) == 1002.0 and rebased == [1002.0]


def test_a_believable_frame_drops_a_pending_jump() -> None:
    c, _, rebased = clock()
    c.admit(100.0)
    c.admit(1000.0)
    c.admit(1000.5)
    assert c.admit(101.0) == 101.0  # back in range: the two agreeing jumps are forgotten
    assert c.admit(1001.0) is None and c.admit(1001.5) is None
    assert rebased == []
