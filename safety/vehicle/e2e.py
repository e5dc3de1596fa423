"""End-to-end protection of CAN messages, AUTOSAR E2E style: an alive counter and a checksum.

A vehicle profile declares, per message, where its counter and its checksum are and how the
checksum is computed (``e2e:`` in the profile; see ``docs/vehicles.md``).  Each frame of a
protected message is checked before its signals are decoded:

* **checksum** over the message's covered bytes (and the data id, if one is declared), with one
  of the algorithms real cars use: CRC-8 SAE J1850 (AUTOSAR profile 1), CRC-8H2F (AUTOSAR
  profile 2), XOR, or a byte sum with an offset (Toyota adds the frame id and length).  The
  CRCs come from ``fastcrc``: no hand-written tables.
* **alive counter**: the step from the previous frame's counter, modulo its range.  A step of 1
  up to ``max_delta`` is OK (more than 1: frames were lost); 0 is REPEATED (the frame is dropped:
  the sender sent no new data, so its signals keep their last value and age, and go stale if
  it lasts); ``frozen_after`` repeats in a row, or a step past ``max_delta`` (WRONG-SEQUENCE),
  are failures.
* **state machine**, in the spirit of AUTOSAR's E2E_SM: after a failure (ERROR or
  WRONG-SEQUENCE or a frozen counter) the message is not trusted again until
  ``recover_after`` good frames in a row have come; until then its signals are unknown and
  say why.  The first frame of a stream is judged on its checksum alone (no counter to compare).

The checker never raises on bad data: a failure is a reason string, given to every signal of
the message as why it is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from typing import Any

import fastcrc

from safety.errors import Location

ALGORITHMS = ("crc8-sae-j1850", "crc8-h2f", "xor", "sum")

# Check results per frame (AUTOSAR E2E_P01/P02 statuses, in words): the keys of the per-message counts.
OK = "ok"
OK_SOME_LOST = "ok-some-lost"
REPEATED = "repeated"
WRONG_SEQUENCE = "wrong-sequence"
ERROR = "error"
NOT_TRUSTED = "not-trusted"  # a good frame while recovering from a failure

# The check result for a repeated counter: drop the frame, keep the last values.
DROP = object()

_CRC: dict[str, Callable[[bytes], int]] = {
    "crc8-sae-j1850": fastcrc.crc8.sae_j1850,  # poly 0x1D, init 0xFF, xorout 0xFF ("123456789" -> 0x4B)
    "crc8-h2f": fastcrc.crc8.autosar,  # poly 0x2F, init 0xFF, xorout 0xFF ("123456789" -> 0xDF)
}


@dataclass(frozen=True)
class Protection:
    """How one message is protected; parsed from a profile's ``e2e:`` entry."""

    message: str
    frame_id: int
    is_extended: bool
    counter: str | None  # DBC signal carrying the alive counter
    counter_modulus: int  # the counter runs 0 .. modulus - 1, then wraps
    checksum: str | None  # DBC signal carrying the checksum
    algorithm: str
    spans: tuple[tuple[int, int], ...]  # covered payload bytes, as [start, stop) spans
    offset: int = 0  # added to a byte sum (or the XOR start value)
    data_ids: tuple[int, ...] = ()  # one data id, or one per counter value (AUTOSAR profile 2)
    data_id_bytes: int = 2  # little-endian, low byte first
    max_delta: int = 1
    recover_after: int = 2
    frozen_after: int = 3
    need: int = 0  # payload bytes the counter and checksum need
    loc: Location = field(default_factory=Location)

    def covered(self, data: bytes | bytearray) -> bytes:
        spans = self.spans
        if len(spans) == 1:
            start, stop = spans[0]
            return bytes(data[start:stop])
        return b"".join(bytes(data[start:stop]) for start, stop in spans)

    def __post_init__(self) -> None:
        # The receiver's hot path, specialised once: one covered span and no data id is what
        # most cars use, and costs a slice and one call instead of the general walk below.
        digest: Callable[[bytes | bytearray, int | None], int] = self._general_checksum
        if len(self.spans) == 1 and not self.data_ids:
            start, stop = self.spans[0]
            offset = self.offset
            if self.algorithm == "sum":

                def digest(data: bytes | bytearray, counter: int | None) -> int:
                    return (sum(data[start:stop]) + offset) & 0xFF

            elif self.algorithm in _CRC:
                crc = _CRC[self.algorithm]

                def digest(data: bytes | bytearray, counter: int | None) -> int:
                    return crc(bytes(data[start:stop]))

        object.__setattr__(self, "checksum_of", digest)

    def checksum_of(self, data: bytes | bytearray, counter: int | None) -> int:
        """The checksum a frame with this payload (and counter) must carry."""
        return self._general_checksum(data, counter)  # replaced per instance in __post_init__

    def _general_checksum(self, data: bytes | bytearray, counter: int | None) -> int:
        covered = self.covered(data)
        if self.data_ids:
            index = (counter or 0) % len(self.data_ids) if len(self.data_ids) > 1 else 0
            covered = self.data_ids[index].to_bytes(self.data_id_bytes, "little") + covered
        algorithm = self.algorithm
        if algorithm == "sum":
            return (sum(covered) + self.offset) & 0xFF
        if algorithm == "xor":
            return reduce(xor, covered, self.offset) & 0xFF
        return _CRC[algorithm](covered)


class E2EChecker:
    """The receiver side of one protected message: checks frames, keeps the state machine and counts."""

    __slots__ = ("_read", "counts", "last_counter", "protection", "repeats", "since_failure", "trusted")

    def __init__(self, protection: Protection, read: Callable[[bytes], tuple[Any, ...]]) -> None:
        self.protection = protection
        self._read = read  # (counter raw or None, checksum raw or None)
        self.last_counter: int | None = None
        self.repeats = 0
        self.trusted = True  # the first frame is judged on its checksum alone
        self.since_failure = 0
        self.counts: dict[str, int] = {}

    def _count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    def _fail(self, status: str, reason: str) -> str:
        self._count(status)
        self.trusted = False
        self.since_failure = 0
        return reason

    def check(self, data: bytes) -> str | object | None:
        """None: the frame is good, decode it.  ``DROP``: a repeat, ignore it.  A string: why it fails."""
        p = self.protection
        counter, checksum = self._read(data)
        if p.checksum is not None:
            expected = p.checksum_of(data, counter)
            if checksum != expected:
                return self._fail(
                    ERROR, f"integrity failure: checksum 0x{checksum:02X}, expected 0x{expected:02X} ({p.algorithm})"
                )
        status = OK
        if p.counter is not None:
            last, self.last_counter = self.last_counter, counter
            if last is not None:
                step = (counter - last) % p.counter_modulus
                if step == 0:
                    self.repeats += 1
                    if self.repeats + 1 >= p.frozen_after:
                        return self._fail(
                            REPEATED, f"integrity failure: counter frozen at {counter} ({self.repeats + 1} frames)"
                        )
                    self._count(REPEATED)
                    return DROP
                self.repeats = 0
                if step > p.max_delta:
                    return self._fail(
                        WRONG_SEQUENCE,
                        f"integrity failure: counter jumped {last} -> {counter} (at most {p.max_delta} per frame)",
                    )
                if step > 1:
                    status = OK_SOME_LOST
        if not self.trusted:
            self.since_failure += 1
            if self.since_failure < p.recover_after:
                self._count(NOT_TRUSTED)
                return f"integrity: {self.since_failure} of {p.recover_after} good frames since the last failure"
            self.trusted = True
        counts = self.counts  # _count(), inlined: this is the path of every good frame
        counts[status] = counts.get(status, 0) + 1
        return None


def seal(protection: Protection, data: bytearray, counter: int, write: Callable[[bytearray, str, int], None]) -> None:
    """Set ``counter`` and then the checksum in ``data`` (a sender's side: generators, fault injection).

    ``write(data, signal, raw)`` puts a raw value into a signal's bits.
    """
    if protection.counter is not None:
        write(data, protection.counter, counter % protection.counter_modulus)
    if protection.checksum is not None:
        write(data, protection.checksum, protection.checksum_of(data, counter))
