"""JSON that cannot hurt: duplicate keys and oversized integers are errors, not silent choices.

The standard parsers accept ``{"speed": 1, "speed": 2}`` (the last wins) and integers of any
length (a 5,000-digit one raises ``ValueError`` from ``int()``; a 400-digit one overflows
``float()`` later).  In a request or a vehicle state a silently chosen value is a defect, so
DriveGate reads JSON typed by people (``explain --state``) and protocol lines that may hide a
duplicate with :func:`loads_strict`.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Digits read in a JSON integer (every number DriveGate uses fits in 2**53).
MAX_INT_DIGITS = 40

# A key token followed by whitespace before its colon: such lines take the strict parser.
_SPACED_COLON = re.compile(rb'"\s+:')


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are read")
    return int(text)


def loads_strict(text: str | bytes | bytearray) -> Any:
    """``json.loads`` that rejects duplicate keys and integers over :data:`MAX_INT_DIGITS` digits.

    Raises ``json.JSONDecodeError`` for a syntax error and a plain ``ValueError`` for the rest.
    """
    return json.loads(text, object_pairs_hook=_pairs, parse_int=_integer)


def _key_count(value: Any) -> int:
    if type(value) is dict:
        return len(value) + sum(_key_count(v) for v in value.values())
    if type(value) is list:
        return sum(_key_count(v) for v in value)
    return 0


def may_hide_duplicates(line: bytes | bytearray, parsed: Any) -> bool:
    """Whether ``line``, which a fast parser read as ``parsed``, could have held a duplicate key.

    False is a proof: without a backslash no string can contain a quote, so every ``":`` in the
    line ends a key; with no space before any colon every key ends so; so when the count of
    ``":`` equals the keys parsed, no key was written twice.  True only means "check with
    :func:`loads_strict`" (compact JSON from a serialiser never takes that path).
    """
    if b"\\" in line or _SPACED_COLON.search(line):
        return True
    return line.count(b'":') != _key_count(parsed)
