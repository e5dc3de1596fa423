"""The rule ids DriveGate itself puts in decisions, in one place.

A decision's ``rules`` names the policy rules that decided it, or one of these when the
engine, a budget or the client decided instead.  A policy may not use them as rule ids
(``reserved-id`` at the rule's ``file:line:col``), so a decision log never leaves a reader
guessing which one decided.
"""

from __future__ import annotations

from typing import Final

INVALID_REQUEST_RULE: Final = "request-invalid"  # the request failed validation: deny
INTERNAL_ERROR_RULE: Final = "internal-error"  # an error while deciding: deny, never allow
GLANCE_RULE: Final = "budget-glance"  # one glance longer than the policy's single-glance budget
TASK_RULE: Final = "budget-task"  # the task's eyes-off-road time past its budget
RATE_RULE: Final = "budget-rate"  # more notifications than the policy's rate while driving
FALLBACK_RULE: Final = "client-fallback"  # the client could not get an answer from the service

RESERVED_RULE_IDS: Final = frozenset(
    {INVALID_REQUEST_RULE, INTERNAL_ERROR_RULE, GLANCE_RULE, TASK_RULE, RATE_RULE, FALLBACK_RULE}
)
