"""Requests from the assistant: their fields, and validation that never raises.

A request that names an unknown field or value is answered ``deny`` with a reason naming
it (see ``Engine.decide``): never a crash, never an allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from safety.errors import Location, RequestError

FieldKind = Literal["enum", "number", "string"]


@dataclass(frozen=True)
class RequestField:
    name: str
    kind: FieldKind
    required: bool
    values: tuple[str, ...] = ()
    description: str = ""


REQUEST_FIELDS: dict[str, RequestField] = {
    f.name: f
    for f in (
        RequestField("id", "string", False, description="caller's id for this request, echoed back"),
        RequestField("app", "string", False, description="the requesting app"),
        RequestField("kind", "enum", True, ("notification", "interaction")),
        RequestField(
            "category",
            "enum",
            True,
            (
                "message",
                "call",
                "meeting",
                "calendar",
                "approval",
                "document",
                "navigation",
                "media",
                "system",
                "reminder",
                "contact",
                "task",
            ),
        ),
        RequestField("modality", "enum", True, ("visual", "audio", "voice", "manual")),
        RequestField("content", "enum", True, ("text", "image", "video", "list", "keyboard", "none")),
        RequestField("priority", "enum", True, ("critical", "high", "normal", "low")),
        RequestField("text_length", "number", False, description="characters of text to show"),
        RequestField("list_items", "number", False, description="items in a list to show"),
        RequestField("text", "string", False, description="the text itself (masked in logs)"),
        RequestField("task_id", "string", False, description="the task this step belongs to (glance budget)"),
        RequestField("glance_ms", "number", False, description="estimated eyes-off-road time of this step"),
        RequestField("ttl_ms", "number", False, description="a deferred request is kept this long"),
    )
}

_ALLOWED = frozenset(REQUEST_FIELDS)
_REQUIRED = tuple(f.name for f in REQUEST_FIELDS.values() if f.required)
_ENUMS = tuple((f.name, frozenset(f.values), f.values) for f in REQUEST_FIELDS.values() if f.kind == "enum")
_NUMBERS = tuple(f.name for f in REQUEST_FIELDS.values() if f.kind == "number")
_STRINGS = tuple(f.name for f in REQUEST_FIELDS.values() if f.kind == "string")


#: The largest request number: JSON's safe integer (a double holds every whole number up to
#: it), so a C++, Kotlin or JavaScript client means exactly the number it sent.
MAX_NUMBER = 2**53 - 1


def shown(value: Any) -> str:
    """``repr(value)`` that cannot fail or flood: a 5,000-digit int has no repr in Python 3.11,
    and a hostile object's ``__repr__`` may raise."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__} that cannot be shown"
    return text if len(text) <= 80 else text[:77] + "..."


def _error(field: str, message: str) -> RequestError:
    return RequestError(message, Location(field=field), code="bad-request")


def validate_request(request: Any) -> RequestError | None:
    """Check a request; return the first problem (in field order) or None.

    Written for the hot path: one set difference, then one lookup per field.
    """
    if not isinstance(request, Mapping):
        return _error("", f"a request must be a mapping of fields, got {type(request).__name__}")
    extra = request.keys() - _ALLOWED
    if extra:
        name = sorted(map(str, extra))[0]
        return _error(name, f"unknown field '{name}'; expected one of: {', '.join(REQUEST_FIELDS)}")
    for name, allowed, ordered in _ENUMS:
        value = request.get(name)
        try:
            ok = value in allowed
        except TypeError:  # unhashable (a list, a dict)
            ok = False
        if not ok:
            if value is None:
                return _error(name, f"missing required field '{name}'; expected one of: {', '.join(ordered)}")
            return _error(name, f"unknown {name} {shown(value)}; expected one of: {', '.join(ordered)}")
    for name in _NUMBERS:
        value = request.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_NUMBER):
            if type(value) is int and value > MAX_NUMBER:
                return _error(name, f"{name} must be at most {MAX_NUMBER} (2**53 - 1), got {shown(value)}")
            return _error(name, f"{name} must be a whole number >= 0, got {shown(value)}")
    for name in _STRINGS:
        value = request.get(name)
        if value is not None and type(value) is not str:
            return _error(name, f"{name} must be a string, got {type(value).__name__}")
    return None
