"""Constraints name changes: what a degrade asks of a request that the request does not already do.

A degrade's constraints say how the request must change (``modality``, ``max_text_length``,
``max_list_items``, ``input``).  A constraint the request already meets changes nothing, so it is
dropped; a degrade left with no constraint is an ``allow`` (the middleware never has to diff the
constraints against its own request to learn that it may go ahead).  A constraint is met only
when the request says so: a text without ``text_length`` may be any length, so a length limit
stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_met(key: str, value: Any, request: Mapping[str, Any]) -> bool:
    """Whether ``request`` already satisfies the degrade constraint ``key: value``."""
    if key == "modality":
        return bool(request.get("modality") == value)
    if key == "max_text_length":
        length = request.get("text_length")
        return type(length) is int and length <= value
    if key == "max_list_items":
        items = request.get("list_items")
        return type(items) is int and items <= value
    if key == "input":
        # Voice input replaces manual entry: met by a voice request that opens no keyboard.
        return value == "voice" and request.get("modality") == "voice" and request.get("content") != "keyboard"
    return False  # a constraint this code does not know is never taken as met (fail closed)


def split_met(constraints: Mapping[str, Any], request: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the constraints still to apply, those the request already meets)."""
    remaining: dict[str, Any] = {}
    met: dict[str, Any] = {}
    for key, value in constraints.items():
        (met if is_met(key, value, request) else remaining)[key] = value
    return remaining, met


def describe(met: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in met.items())
