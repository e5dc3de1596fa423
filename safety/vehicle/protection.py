"""The ``e2e:`` section of a vehicle profile: which messages are protected, and how.

::

    e2e:
      VEHICLE_SPEED:                   # message name, or frame id
        counter: SpeedCounter          # DBC signal of the alive counter (runs 0 .. counter_max)
        checksum: SpeedChecksum        # DBC signal of the checksum
        algorithm: crc8-sae-j1850      # crc8-sae-j1850 | crc8-h2f | xor | sum
        bytes: [0, 6]                  # covered payload bytes (default: every byte but the checksum's)
        max_delta: 2                   # counter steps accepted (more than 1: frames were lost)
        recover_after: 2               # good frames in a row before a failed message is trusted again

Optional: ``counter_max`` (default: the signal's largest raw value), ``offset`` (added to a ``sum``,
or the start of an ``xor``), ``data_id`` (a 16-bit id prefixed to the CRC input, low byte first,
as AUTOSAR profile 1) or ``data_ids`` (one per counter value, as profile 2), ``frozen_after``
(repeated counters in a row that count as a failure, default 3).
"""

from __future__ import annotations

from typing import Any

from safety.vehicle.decode import bytes_needed
from safety.vehicle.e2e import ALGORITHMS, Protection
from safety.yamlsource import Checker, Node

E2E_KEYS = (
    "counter",
    "counter_max",
    "checksum",
    "algorithm",
    "bytes",
    "offset",
    "data_id",
    "data_ids",
    "max_delta",
    "recover_after",
    "frozen_after",
)


def parse_e2e(
    node: Node, database: Any, dbc_name: str, check: Checker, lookup: Any
) -> dict[tuple[int, bool], Protection]:
    """Every protected message of the ``e2e:`` section, by (frame id, extended); problems go to ``check``."""
    out: dict[tuple[int, bool], Protection] = {}
    if not node.is_map:
        check.error("expected-type", node.loc, "e2e must be a mapping of message -> protection")
        return out
    for text, entry in node.items():
        key = entry.key if entry.key is not None else text
        what = f"e2e.0x{key:X}" if isinstance(key, int) and not isinstance(key, bool) else f"e2e.{text}"
        message = lookup(Node(key, node.key_loc(text)), database, dbc_name, what, check)
        if message is None:
            continue
        protection = _parse_entry(what, entry, message, check)
        if protection is not None:
            out[(message.frame_id, bool(message.is_extended_frame))] = protection
    return out


def _signal(entry: Node, key: str, message: Any, what: str, check: Checker) -> Any:
    node = entry.value[key]
    name = check.string(node, f"{what}.{key}")
    if name is None:
        return None
    for signal in message.signals:
        if signal.name == name:
            return signal
    check.error("unknown-signal", node.loc, f"{what}.{key}: message '{message.name}' has no signal '{name}'")
    return None


def _parse_entry(what: str, entry: Node, message: Any, check: Checker) -> Protection | None:
    if not check.mapping(entry, what, E2E_KEYS):
        return None
    v = entry.value
    if "counter" not in v and "checksum" not in v:
        check.error("missing-key", entry.loc, f"{what} needs a 'counter', a 'checksum', or both")
        return None
    ok = True
    counter = _signal(entry, "counter", message, what, check) if "counter" in v else None
    checksum = _signal(entry, "checksum", message, what, check) if "checksum" in v else None
    if ("counter" in v and counter is None) or ("checksum" in v and checksum is None):
        ok = False
    modulus = 0
    if counter is not None:
        largest = (1 << counter.length) - 1
        modulus = largest + 1
        if "counter_max" in v:
            top = check.integer(v["counter_max"], f"{what}.counter_max", minimum=1, maximum=largest)
            ok = ok and top is not None
            modulus = (top or largest) + 1
    algorithm = ""
    if checksum is not None:
        if "algorithm" not in v:
            check.error("missing-key", entry.loc, f"{what}: a checksum needs 'algorithm' ({', '.join(ALGORITHMS)})")
            ok = False
        else:
            algorithm = check.choice(v["algorithm"], f"{what}.algorithm", ALGORITHMS) or ""
            ok = ok and bool(algorithm)
        if checksum.length != 8:
            check.error("bad-checksum", v["checksum"].loc, f"{what}.checksum: '{checksum.name}' must be 8 bits")
            ok = False
    elif "algorithm" in v:
        check.error("bad-key", entry.key_loc("algorithm"), f"{what}: 'algorithm' needs a 'checksum'")
        ok = False
    length = int(message.length)
    spans: tuple[tuple[int, int], ...] = ((0, length),)
    if "bytes" in v:
        node = v["bytes"]
        pair = node.value if node.is_seq else None
        first = last = None
        if pair is not None and len(pair) == 2:
            first = check.integer(pair[0], f"{what}.bytes[0]", minimum=0, maximum=length - 1)
            last = check.integer(pair[1], f"{what}.bytes[1]", minimum=0, maximum=length - 1)
        else:
            check.error("expected-type", node.loc, f"{what}.bytes must be [first, last] payload bytes")
        if first is None or last is None or last < first:
            if first is not None and last is not None:
                check.error("out-of-range", node.loc, f"{what}.bytes: the last byte is before the first")
            ok = False
        else:
            spans = ((first, last + 1),)
    elif checksum is not None:
        # Every byte but the checksum's.
        need = bytes_needed(checksum, length)
        width = (checksum.length + 7) // 8
        start = need - width
        spans = tuple(span for span in ((0, start), (need, length)) if span[0] < span[1])
    number: dict[str, int] = {}
    for key, low, high, default in (
        ("offset", 0, 255, 0),
        ("max_delta", 1, max(modulus - 1, 1), 1),
        ("recover_after", 1, 1000, 2),
        ("frozen_after", 2, 1000, 3),
        ("data_id", 0, 0xFFFF, -1),
    ):
        if key in v:
            found = check.integer(v[key], f"{what}.{key}", minimum=low, maximum=high)
            ok = ok and found is not None
            number[key] = default if found is None else found
        else:
            number[key] = default
    data_ids: tuple[int, ...] = (number["data_id"],) if number["data_id"] >= 0 else ()
    if "data_ids" in v:
        node = v["data_ids"]
        if "data_id" in v:
            check.error("bad-key", entry.key_loc("data_ids"), f"{what}: give 'data_id' or 'data_ids', not both")
            ok = False
        elif not node.is_seq or not node.value:
            check.error("expected-type", node.loc, f"{what}.data_ids must be a non-empty list of 16-bit ids")
            ok = False
        else:
            ids = [check.integer(item, f"{what}.data_ids", minimum=0, maximum=0xFFFF) for item in node.value]
            ok = ok and all(i is not None for i in ids)
            data_ids = tuple(i for i in ids if i is not None)
    if not ok:
        return None
    need = max(bytes_needed(s, length) for s in (counter, checksum) if s is not None)
    return Protection(
        message=message.name,
        frame_id=message.frame_id,
        is_extended=bool(message.is_extended_frame),
        counter=None if counter is None else counter.name,
        counter_modulus=modulus or 1,
        checksum=None if checksum is None else checksum.name,
        algorithm=algorithm,
        spans=spans,
        offset=number["offset"],
        data_ids=data_ids,
        max_delta=number["max_delta"],
        recover_after=number["recover_after"],
        frozen_after=number["frozen_after"],
        need=need,
        loc=entry.loc,
    )
