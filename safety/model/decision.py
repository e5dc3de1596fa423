"""Outcomes and decisions: what the engine answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """What the assistant may do.  Ordered from least to most restrictive."""

    ALLOW = "allow"
    DEGRADE = "degrade"  # allowed in a changed form; see Decision.constraints
    DEFER = "defer"  # hold until the state allows; ask again later
    DENY = "deny"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Outcome.ALLOW: 0, Outcome.DEGRADE: 1, Outcome.DEFER: 2, Outcome.DENY: 3}
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the engine.

    ``rules`` are the ids of the rules that decided; ``constraints`` say how a ``degrade``
    must change the request (``modality``, ``max_text_length``, ``max_list_items``,
    ``input``) or when to ask again after a ``defer`` (``retry_after_ms``, ``until``).
    ``policy_hash`` identifies the policy content; ``state_time`` is the time of the state
    used (frame time, or the caller's ``now``), ``None`` before any frame.
    """

    outcome: Outcome
    rules: tuple[str, ...]
    reason: str
    constraints: Mapping[str, Any] = field(default_factory=dict)
    policy_hash: str = ""
    state_time: float | None = None
    request_id: str | None = None

    @property
    def permitted(self) -> bool:
        """True when the request may go ahead now (as asked, or degraded)."""
        return self.outcome is Outcome.ALLOW or self.outcome is Outcome.DEGRADE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the wire and log form)."""
        return {
            "outcome": self.outcome.value,
            "rules": list(self.rules),
            "reason": self.reason,
            "constraints": dict(self.constraints),
            "policy_hash": self.policy_hash,
            "state_time": self.state_time,
            "request_id": self.request_id,
        }
