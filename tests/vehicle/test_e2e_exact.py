"""End-to-end checks decided exactly: the general checksum path (several spans, data ids, XOR
with a start value) against the single-span path and catalogue values, the sender's seal, and
the receiver's state machine counted result by result."""

from __future__ import annotations

from typing import Any

import pytest

from safety.vehicle.e2e import DROP, E2EChecker, Protection, seal

CHECK_INPUT = b"123456789"  # CRC catalogue input; XOR of its bytes is 0x31


def protection(algorithm: str, **kw: Any) -> Protection:
    kw.setdefault("spans", ((0, 9),))
    return Protection(message="M", frame_id=1, is_extended=False, counter=kw.pop("counter", None), counter_modulus=16,
                      checksum="C", algorithm=algorithm, **kw)


@pytest.mark.parametrize(
    ("algorithm", "offset", "expected"),
    [
        ("crc8-sae-j1850", 0, 0x4B),
        ("crc8-h2f", 0, 0xDF),
        ("sum", 0, sum(CHECK_INPUT) & 0xFF),
        ("sum", 0xB4 + 8, (sum(CHECK_INPUT) + 0xB4 + 8) & 0xFF),
        ("xor", 0, 0x31),
        ("xor", 0x0F, 0x31 ^ 0x0F),  # the offset is the XOR's start value
    ],
)
def test_a_covered_range_in_two_spans_gives_the_checksum_of_one(algorithm: str, offset: int, expected: int) -> None:
    one = protection(algorithm, offset=offset)
    two = protection(algorithm, offset=offset, spans=((0, 4), (4, 9)))
    three = protection(algorithm, offset=offset, spans=((0, 2), (2, 3), (3, 9)))
    assert one.checksum_of(CHECK_INPUT, None) == two.checksum_of(CHECK_INPUT, None) == three.checksum_of(CHECK_INPUT, None) == expected
    assert two.covered(CHECK_INPUT) == three.covered(CHECK_INPUT) == CHECK_INPUT


def test_spans_leave_out_what_they_do_not_cover() -> None:
    p = protection("sum", spans=((0, 2), (5, 9)))
    assert p.covered(CHECK_INPUT) == b"126789"
    assert p.checksum_of(CHECK_INPUT, None) == sum(b"126789") & 0xFF


def test_data_ids_per_counter_value_and_with_no_counter() -> None:
    two = protection("crc8-h2f", data_ids=(0x10, 0x20))
    first = protection("crc8-h2f", data_ids=(0x10,))
    second = protection("crc8-h2f", data_ids=(0x20,))
    assert two.checksum_of(CHECK_INPUT, None) == first.checksum_of(CHECK_INPUT, None)  # no counter: the first id
    assert two.checksum_of(CHECK_INPUT, 0) == first.checksum_of(CHECK_INPUT, 0)
    assert two.checksum_of(CHECK_INPUT, 1) == second.checksum_of(CHECK_INPUT, 0)
    assert two.checksum_of(CHECK_INPUT, 3) == second.checksum_of(CHECK_INPUT, 0)  # 3 mod 2
    assert first.checksum_of(CHECK_INPUT, 5) == first.checksum_of(CHECK_INPUT, 0)  # one id for every counter
    assert first.checksum_of(CHECK_INPUT, 0) != second.checksum_of(CHECK_INPUT, 0)


# ------------------------------------------------------------------ sender and receiver
# Frame layout: byte 0 the counter (low nibble), bytes 1..6 data, byte 7 the checksum over 1..6.
def layout(**kw: Any) -> Protection:
    return protection(kw.pop("algorithm", "crc8-sae-j1850"), counter="N", spans=((1, 7),), max_delta=2, recover_after=2,
                      frozen_after=3, **kw)


def write(data: bytearray, signal: str, raw: int) -> None:
    data[0 if signal == "N" else 7] = raw


def read(data: bytes) -> tuple[int, int]:
    return data[0] & 0x0F, data[7]


def frame(p: Protection, counter: int, payload: bytes = b"\x01\x02\x03\x04\x05\x06") -> bytes:
    data = bytearray(b"\x00" + payload + b"\x00")
    seal(p, data, counter, write)
    return bytes(data)


def test_seal_uses_the_counter_for_a_data_id_per_counter() -> None:
    p = layout(data_ids=tuple(range(0x100, 0x110)))
    for counter in (0, 1, 7, 15, 16):
        data = frame(p, counter)
        assert data[0] == counter % 16
        assert data[7] == p.checksum_of(data, counter % 16)
    checker = E2EChecker(p, read)
    assert [checker.check(frame(p, c)) for c in range(1, 6)] == [None] * 5


def test_the_receiver_counts_every_result() -> None:
    p = layout()
    checker = E2EChecker(p, read)
    results = [
        checker.check(frame(p, 0)),  # ok (the first is judged on its checksum)
        checker.check(frame(p, 1)),  # ok
        checker.check(frame(p, 1)),  # repeated: dropped
        checker.check(frame(p, 3)),  # ok, one lost
        checker.check(frame(p, 7)),  # jumped 3 -> 7: wrong sequence
        checker.check(frame(p, 8)),  # good, 1 of 2 since the failure
        checker.check(frame(p, 9)),  # good again
        checker.check(frame(p, 9)),  # repeated
        checker.check(frame(p, 9)),  # frozen: the third frame in a row
        checker.check(frame(p, 10)[:7] + b"\x00"),  # bad checksum
    ]
    assert results[:4] == [None, None, DROP, None]
    assert results[4] == "integrity failure: counter jumped 3 -> 7 (at most 2 per frame)"
    assert results[5] == "integrity: 1 of 2 good frames since the last failure"
    assert results[6:8] == [None, DROP]
    assert results[8] == "integrity failure: counter frozen at 9 (3 frames)"
    assert str(results[9]).startswith("integrity failure: checksum 0x00, expected 0x")
    assert checker.counts == {"ok": 3, "repeated": 3, "ok-some-lost": 1, "wrong-sequence": 1, "not-trusted": 1, "error": 1}


def test_the_receiver_checks_a_data_id_per_counter() -> None:
    p = layout(algorithm="crc8-h2f", data_ids=tuple(range(0x100, 0x110)))
    checker = E2EChecker(p, read)
    assert checker.check(frame(p, 5)) is None
    # A frame sealed with the data id of another counter value is refused.
    wrong = bytearray(frame(p, 6))
    wrong[7] = p.checksum_of(wrong, 5)
    assert str(checker.check(bytes(wrong))).startswith("integrity failure: checksum")


def test_the_first_repeat_of_the_first_counter_is_dropped_not_frozen() -> None:
    p = layout()
    checker = E2EChecker(p, read)
    assert [checker.check(frame(p, 4)), checker.check(frame(p, 4))] == [None, DROP]
    assert checker.check(frame(p, 4)) == "integrity failure: counter frozen at 4 (3 frames)"
