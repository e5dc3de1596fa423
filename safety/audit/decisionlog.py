"""Decision logs: a versioned JSONL audit record per decision.

Each record is in the kernel's page cache before ``decide`` returns (and on disk with
``fsync``), so nothing already written is lost if the process dies (see
``safety.audit.appendfile`` for how).  Files rotate by size; message text is masked.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from safety.audit.appendfile import Appender, MappedAppender, WriteAppender
from safety.errors import LogInUseError
from safety.model.decision import Decision

RECORD_VERSION = 1
WRITERS = ("mmap", "write")
MASKED = "***"


class DecisionLog:
    """Appends decision records to ``path``, rotated at ``max_bytes`` with ``backups`` kept.

    Each record reaches the kernel's page cache before ``decide`` returns, so nothing already
    written is lost if the process dies; ``fsync=True`` also puts each on disk.  ``writer``
    says how (see ``safety.audit.appendfile``): ``"mmap"`` (the default) copies records into a
    shared mapping of the file, with no system call per record; ``"write"`` makes one
    ``write`` per record (several writers may share the file; nothing past the last record
    while it is open).  Where a file cannot be mapped, ``"mmap"`` falls back to ``"write"``
    (``self.writer`` says which is in use).  Rotation is by a byte count kept in memory.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        fsync: bool = False,
        writer: Literal["mmap", "write"] = "mmap",
    ) -> None:
        if writer not in WRITERS:
            raise ValueError(f"writer must be one of {', '.join(WRITERS)}, got {writer!r}")
        self.path = str(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self.writer = writer
        self._lock = threading.Lock()
        self.records_written = 0
        self.error = ""  # why the last record could not be written ("" when it was)
        self.errors = 0
        self._file: Appender | None = None
        try:
            self._file = self._open(truncate=False)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise  # a path that cannot be used at all: the caller's error, at start
            # A full disk: keep deciding, report it, and open at the next record.
            self.error = f"cannot write the decision log: {exc}"
        # The engine hands over the same state mapping while nothing decision-relevant
        # changed, so its JSON is kept and embedded as is: a third of a record's cost.
        # One attribute holding (mapping, JSON): replaced whole, so threads never see a mix.
        self._state_json: tuple[Mapping[str, Any] | None, orjson.Fragment] = (None, orjson.Fragment(b"{}"))

    def _open(self, *, truncate: bool) -> Appender:
        if self.writer == "mmap":
            try:
                return MappedAppender(self.path, fsync=self.fsync, truncate=truncate)
            except LogInUseError:
                raise
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise  # no space: the same on any writer; reported, and retried at the next record
                self.writer = "write"  # a file system without shared writable mappings or locks
        return WriteAppender(self.path, fsync=self.fsync, truncate=truncate)

    def write(
        self,
        decision_id: str,
        decision: Decision,
        request: Any,
        state: Mapping[str, Any],
        ages: Mapping[str, float | None],
        eval_us: float,
    ) -> None:
        last_state, state_json = self._state_json
        if state is not last_state:
            state_json = orjson.Fragment(orjson.dumps(state, default=_plain, option=orjson.OPT_NON_STR_KEYS))
            self._state_json = (state, state_json)
        record = {
            "v": RECORD_VERSION,
            "decision_id": decision_id,
            "time": decision.state_time,
            "request": mask(request),
            "state": state_json,
            "ages": ages,
            "outcome": decision.outcome.value,
            "rules": decision.rules,
            "constraints": decision.constraints,
            # An explained decision's reason carries its narration (kilobytes): the record keeps the
            # reason line and says it was explained; the narration follows from the record's request,
            # state and policy hash (drivegate explain), and an explain flood cannot rotate the
            # ordinary records away.
            "reason": decision.reason.partition("\n")[0],
            "policy_hash": decision.policy_hash,
            "eval_us": round(eval_us, 3),
        }
        if "\n" in decision.reason:
            record["explained"] = True
        # orjson: a quarter of the cost of json.dumps on this record, which sits on the decision path.
        # Non-string keys (only in invalid requests) need an option that slows every record: retry;
        # what orjson cannot write at all (an integer over 64 bits, a tuple key, a recursive or
        # hostile object) is recorded in a safe textual form: a decision is never left unrecorded.
        try:
            line = orjson.dumps(record, default=_plain, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            try:
                line = orjson.dumps(record, default=_plain, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError:
                try:
                    record["request"] = _safe(record["request"], _MAX_DEPTH)
                except Exception:  # a Mapping whose items() raises: say what it was
                    record["request"] = f"<unreadable {type(request).__name__}>"
                line = orjson.dumps(record, default=_plain, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            try:
                file = self._file if self._file is not None else self._reopen()
                if file.size and file.size + len(line) > self.max_bytes:
                    file = self._rotate()
                file.append(line)
            except OSError as exc:
                self.errors += 1
                self.error = f"cannot write the decision log: {exc}"
                raise
            self.records_written += 1
            self.error = ""

    def _reopen(self) -> Appender:
        self._file = self._open(truncate=False)
        return self._file

    def _rotate(self) -> Appender:
        if self._file is not None:
            self._file.close()
            self._file = None
        for i in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{i + 1}")
        if self.backups > 0:
            os.replace(self.path, f"{self.path}.1")
        self._file = self._open(truncate=True)
        return self._file

    def close(self) -> None:
        """Finish the file (a mapped one is trimmed to its last record).  Idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()


# Errors that mean "no space now" (the log keeps trying), not "this path cannot be a log".
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_MAX_DEPTH = 32


def _plain(value: Any) -> Any:
    """What orjson cannot write itself (mappings that are not dicts, odd request values)."""
    if isinstance(value, Mapping):
        return dict(value)
    return _text(value)


def _text(value: Any) -> str:
    """``str(value)``, or what it is when even that fails (a hostile ``__str__``, a huge int)."""
    if type(value) is int and value.bit_length() > 256:
        return f"<integer of {value.bit_length()} bits>"
    try:
        return str(value)[:200]
    except Exception:
        return f"<{type(value).__name__}>"


def _safe(value: Any, depth: int) -> Any:
    """``value`` as JSON can carry it: string keys, 64-bit integers, bounded depth, text for the rest."""
    if depth <= 0:
        return f"<nested deeper than {_MAX_DEPTH} levels>"
    if value is None or isinstance(value, bool | str | float):
        return value
    if type(value) is int:
        return value if -(2**63) <= value < 2**64 else _text(value)
    if isinstance(value, Mapping):
        return {k if type(k) is str else _text(k): _safe(v, depth - 1) for k, v in list(value.items())[:1000]}
    if isinstance(value, list | tuple):
        return [_safe(v, depth - 1) for v in value[:1000]]
    return _text(value)


def mask(request: Any) -> Any:
    """The request with its message text replaced (the log is an audit trail, not a message store)."""
    if isinstance(request, dict) and "text" not in request:
        return request
    if isinstance(request, Mapping):
        try:
            masked = dict(request)
        except Exception:  # a hostile Mapping: its record says what it was
            return f"<unreadable {type(request).__name__}>"
        if "text" in masked:
            masked["text"] = MASKED
        return masked
    try:
        return repr(request)[:200]
    except Exception:
        return f"<{type(request).__name__}>"


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


def read_lines(path: str | Path) -> list[str]:
    """The lines of a decision log, without the NUL padding a mapped log has while it is open
    (or after a crash, until it is opened again)."""
    data = Path(path).read_bytes().rstrip(b"\0")
    # Records end in b"\n" only: str.splitlines() would also split inside a record at U+0085,
    # U+2028 and the other separators JSON writes raw within strings.
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the last newline
    return [line.decode("utf-8", errors="replace") for line in lines]


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
