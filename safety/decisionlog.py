"""Decision logs: a versioned JSONL audit record per decision.

Each record is flushed as it is written (and fsync'ed when asked), so nothing already
written is lost if the process dies.  Files rotate by size through the standard
library's ``RotatingFileHandler``; message text is masked.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .decision import Decision

RECORD_VERSION = 1
MASKED = "***"


class _SyncingHandler(logging.handlers.RotatingFileHandler):
    """Writes one line per record; flushes always, fsyncs when asked."""

    def __init__(self, path: str, max_bytes: int, backups: int, fsync: bool) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.fsync = fsync
        self.setFormatter(logging.Formatter("%(message)s"))

    def flush(self) -> None:
        super().flush()
        if self.fsync and self.stream is not None:
            os.fsync(self.stream.fileno())


class DecisionLog:
    """Appends decision records to ``path`` (rotated at ``max_bytes``, ``backups`` kept)."""

    def __init__(self, path: str | Path, *, max_bytes: int = 10_000_000, backups: int = 5, fsync: bool = False) -> None:
        self.path = str(path)
        self._handler = _SyncingHandler(self.path, max_bytes, backups, fsync)
        self._logger = logging.Logger(f"drivegate.decisions.{id(self)}")
        self._logger.propagate = False
        self._logger.addHandler(self._handler)

    def write(
        self,
        decision_id: str,
        decision: Decision,
        request: Any,
        state: Mapping[str, Any],
        ages: Mapping[str, float | None],
        eval_us: float,
    ) -> None:
        record = {
            "v": RECORD_VERSION,
            "decision_id": decision_id,
            "time": decision.state_time,
            "request": mask(request),
            "state": {
                name: {"value": value, "age_s": None if ages.get(name) is None else round(ages[name] or 0.0, 6)}
                for name, value in state.items()
            },
            "outcome": decision.outcome.value,
            "rules": list(decision.rules),
            "constraints": dict(decision.constraints),
            "reason": decision.reason,
            "policy_hash": decision.policy_hash,
            "eval_us": round(eval_us, 3),
        }
        self._logger.info(json.dumps(record, separators=(",", ":"), default=str))

    def close(self) -> None:
        self._handler.close()


def mask(request: Any) -> Any:
    """The request with its message text replaced (the log is an audit trail, not a message store)."""
    if isinstance(request, Mapping):
        return {k: (MASKED if k == "text" else v) for k, v in request.items()}
    return repr(request)[:200]


@dataclass
class LogSummary:
    records: int = 0
    bad_lines: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    policies: Counter[str] = field(default_factory=Counter)
    first_time: float | None = None
    last_time: float | None = None
    eval_us: list[float] = field(default_factory=list)

    def format(self) -> str:
        ordered = sorted(self.eval_us)

        def pct(q: float) -> str:
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f}" if ordered else "-"

        lines = [
            f"records: {self.records} (bad lines: {self.bad_lines})",
            f"time: {self.first_time} .. {self.last_time}",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common()),
            "rules: " + ", ".join(f"{k} {v}" for k, v in self.rules.most_common()),
            "policies: " + ", ".join(f"{k} {v}" for k, v in self.policies.most_common()),
            f"evaluation time: p50 {pct(0.5)} µs, p99 {pct(0.99)} µs",
        ]
        return "\n".join(lines)


def summarize(lines: Iterable[str]) -> LogSummary:
    """Counts per outcome, rule and policy of a decision log."""
    summary = LogSummary()
    for line in lines:
        try:
            record = json.loads(line)
            if record.get("v") != RECORD_VERSION:
                raise ValueError("unknown record version")
        except (ValueError, AttributeError):
            summary.bad_lines += 1
            continue
        summary.records += 1
        summary.outcomes[record["outcome"]] += 1
        summary.rules.update(record.get("rules") or ["(default)"])
        summary.policies[record.get("policy_hash", "")] += 1
        t = record.get("time")
        if isinstance(t, int | float):
            summary.first_time = t if summary.first_time is None else min(summary.first_time, t)
            summary.last_time = t if summary.last_time is None else max(summary.last_time, t)
        if isinstance(record.get("eval_us"), int | float):
            summary.eval_us.append(record["eval_us"])
    return summary
