"""Fault specifications: what ``drivegate inject --fault`` accepts, parsed into :class:`FaultSpec`.

Grammar (one fault per ``--fault``)::

    KIND[:MESSAGE][@START[+DURATION]][,key=value...]

``MESSAGE`` is a DBC message name or its frame id (``0x0B4``); ``START`` and ``DURATION`` are
seconds after the log's first frame (no ``@``: the whole log; no ``+``: to its end).  Every
kind, what it does and the keys it takes are in :data:`KINDS`.  Errors say which fault, which
part and what was expected, with the stable code ``fault-spec``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from safety.errors import DriveGateError, FaultSpecError, LoadError, Location


@dataclass(frozen=True)
class Kind:
    """One kind of fault: whether it names a message, the keys it takes (with defaults), what it does."""

    message: str  # "required", "optional" or "none"
    keys: Mapping[str, str | float | None]  # key -> default (None: required)
    summary: str
    e2e: bool = False  # needs the message's e2e protection in the profile


#: Every fault kind, in the order the help lists them.
KINDS: dict[str, Kind] = {
    "drop": Kind("required", {"count": math.inf}, "the message's frames are removed"),
    "silence": Kind("none", {}, "every frame is removed: the bus falls silent"),
    "freeze-counter": Kind(
        "required", {"count": math.inf}, "the alive counter stays at its value (checksum re-sealed)", e2e=True
    ),
    "skip-counter": Kind(
        "required", {"by": 5.0, "count": math.inf}, "the alive counter jumps ahead by N (checksum re-sealed)", e2e=True
    ),
    "bad-checksum": Kind("required", {"xor": 255.0, "count": math.inf}, "the checksum is XORed with a byte", e2e=True),
    "spike": Kind(
        "required",
        {"signal": None, "value": None, "count": math.inf},
        "a DBC signal carries a physical value (frame re-sealed, so only plausibility can catch it)",
    ),
    "sna": Kind(
        "required",
        {"signal": None, "count": math.inf},
        "a DBC signal carries its not-available raw value (frame re-sealed)",
    ),
    "truncate": Kind("required", {"length": 4.0, "count": math.inf}, "frames cut to LENGTH bytes"),
    "duplicate": Kind("required", {"count": math.inf}, "every frame sent twice"),
    "reorder": Kind("required", {"count": math.inf}, "payloads of consecutive frames swapped (late arrival)"),
    "backwards": Kind(
        "optional", {"by": 5.0}, "timestamps moved back by N seconds (negative N: forward), all frames or one message"
    ),
    "error-frames": Kind("none", {"rate": 500.0}, "error frames inserted at RATE per second"),
}

_INTEGER_KEYS = frozenset({"count", "length", "xor"})
_TEXT_KEYS = frozenset({"signal"})


@dataclass(frozen=True)
class FaultSpec:
    """One parsed ``--fault``: its kind, target message, window (seconds after the first frame) and keys."""

    kind: str
    message: str | None
    start: float
    duration: float  # math.inf: to the end of the log
    params: Mapping[str, str | float] = field(default_factory=dict)
    text: str = ""  # as given, for messages

    @property
    def end(self) -> float:
        return self.start + self.duration

    def number(self, key: str) -> float:
        value = self.params[key]
        assert isinstance(value, float)
        return value


def _error(text: str, message: str) -> FaultSpecError:
    return FaultSpecError(f"{text!r}: {message}", Location(field="--fault"))


def _seconds(text: str, spec: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(spec, f"bad {what}: found {text!r}, expected seconds such as 20 or 12.5") from None
    if not math.isfinite(value) or value < 0:
        raise _error(spec, f"bad {what}: found {text!r}, expected a finite number of seconds >= 0")
    return value


def _value(key: str, text: str, spec: str) -> str | float:
    if key in _TEXT_KEYS:
        if not text:
            raise _error(spec, f"{key}= needs a DBC signal name")
        return text
    try:
        value = int(text, 0) if key in _INTEGER_KEYS else float(text)
    except ValueError:
        expected = "an integer" if key in _INTEGER_KEYS else "a number"
        raise _error(spec, f"bad {key}: found {text!r}, expected {expected}") from None
    number = float(value)
    if not math.isfinite(number):
        raise _error(spec, f"bad {key}: found {text!r}, expected a finite number")
    if key == "count" and number < 1:
        raise _error(spec, f"bad count: found {text!r}, expected at least 1 frame")
    if key == "length" and not 0 <= number <= 63:
        raise _error(spec, f"bad length: found {text!r}, expected 0 to 63 bytes")
    if key == "xor" and not 1 <= number <= 255:
        raise _error(spec, f"bad xor: found {text!r}, expected a byte 1 to 255 (0 changes nothing)")
    if key == "rate" and not 0 < number <= 100_000:
        raise _error(spec, f"bad rate: found {text!r}, expected 0 < frames per second <= 100000")
    if key == "by" and number == 0:
        raise _error(spec, "bad by: 0 changes nothing")
    return number


def parse_fault(text: str) -> FaultSpec:
    """Parse one ``--fault`` specification; raises :class:`FaultSpecError` saying what is wrong."""
    head, *pairs = text.strip().split(",")
    where = ""
    if "@" in head:
        head, where = head.split("@", 1)
    kind_text, _, message_text = head.partition(":")
    kind = KINDS.get(kind_text)
    if kind is None:
        raise _error(text, f"unknown fault kind {kind_text!r}; expected one of {', '.join(KINDS)}")
    message: str | None = message_text or None
    if kind.message == "required" and message is None:
        raise _error(text, f"{kind_text} needs a message: {kind_text}:MESSAGE (a DBC message name or frame id)")
    if kind.message == "none" and message is not None:
        raise _error(text, f"{kind_text} takes no message (it acts on the whole bus)")
    start, duration = 0.0, math.inf
    if where:
        start_text, plus, duration_text = where.partition("+")
        start = _seconds(start_text, text, "start")
        if plus:
            duration = _seconds(duration_text, text, "duration")
            if duration == 0:
                raise _error(text, "bad duration: 0 seconds injects nothing")
    params: dict[str, str | float] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals:
            raise _error(text, f"bad option {pair!r}: expected key=value")
        if key not in kind.keys:
            takes = ", ".join(kind.keys) or "no options"
            raise _error(text, f"{kind_text} has no option {key!r}; it takes {takes}")
        if key in params:
            raise _error(text, f"option {key!r} given twice")
        params[key] = _value(key, value.strip(), text)
    for key, default in kind.keys.items():
        if key not in params:
            if default is None:
                raise _error(text, f"{kind_text} needs {key}=")
            params[key] = default
    return FaultSpec(kind_text, message, start, duration, params, text)


def parse_faults(texts: Sequence[str]) -> list[FaultSpec]:
    """Parse every ``--fault``; raises one :class:`LoadError` listing every malformed one."""
    specs: list[FaultSpec] = []
    errors: list[DriveGateError] = []
    for text in texts:
        try:
            specs.append(parse_fault(text))
        except FaultSpecError as exc:
            errors.append(exc)
    if errors:
        raise LoadError(errors)
    return specs


def kinds_help() -> str:
    """The kinds and their options, for ``drivegate inject --help``."""
    lines = []
    for name, kind in KINDS.items():
        keys = ", ".join(
            f"{key}=" + ("..." if default is None else "N" if default == math.inf else f"{default:g}")
            for key, default in kind.keys.items()
        )
        target = {"required": ":MESSAGE", "optional": "[:MESSAGE]", "none": ""}[kind.message]
        lines.append(f"  {name}{target}" + (f"  [{keys}]" if keys else ""))
        lines.append(f"      {kind.summary}")
    return "\n".join(lines)
