"""One error hierarchy for every stage of DriveGate: every error class is defined here.

::

    DriveGateError                 every error DriveGate raises on purpose (code, location)
    ├── ProfileError               a vehicle profile (YAML) is wrong
    ├── DbcError                   a DBC file cannot be loaded, or lacks what a profile asks
    ├── PolicyError                a policy file (YAML) is wrong
    ├── PolicyTestError            a policy test suite (YAML) is wrong
    ├── RequestError               a request from the assistant is malformed
    ├── LogFormatError             a CAN log, or one of its lines or frames, is unreadable
    ├── FaultSpecError             a fault to inject (``drivegate inject --fault``) is malformed
    ├── SignatureError             a policy signature is missing, untrusted or does not match
    ├── PolicyCheckError           a new policy failed its reload checks (the old one stays)
    ├── AnalysisLimitError         a policy comparison needed more splits than its budget
    ├── TimeLimitError             a command ran out of its --time-limit (lint, test, explain)
    ├── ServiceError               the decision service: protocol error, socket, unreachable
    ├── LogInUseError              another process writes this mapped decision log (an OSError too)
    └── LoadError                  several of the above found in one input, sorted by place

Every error carries a stable ``code`` (kebab-case, never renamed once released) and a
``Location`` saying where the problem is: ``file:line:col`` for YAML and log files, the
field for a request, the frame for CAN input.  Loaders collect every problem they find
and raise one :class:`LoadError` holding them all, sorted by place, so a user fixes a
file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """Where a problem is.  Any part may be missing; ``str()`` prints what is known."""

    file: str = ""
    line: int = 0  # 1-based; 0 = unknown
    col: int = 0  # 1-based; 0 = unknown
    field: str = ""  # a dotted field path such as ``signals.speed.message``
    frame: str = ""  # a CAN frame, e.g. ``0x0B4``

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
                if self.col:
                    where += f":{self.col}"
            parts.append(where)
        if self.frame:
            parts.append(f"frame {self.frame}")
        if self.field and not self.file:
            parts.append(f"field '{self.field}'")
        return " ".join(parts) if parts else "<unknown>"


class DriveGateError(Exception):
    """Base of every error DriveGate raises on purpose."""

    code = "error"

    def __init__(self, message: str, location: Location | None = None, *, code: str | None = None) -> None:
        self.message = message
        self.location = location or Location()
        if code is not None:
            self.code = code
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.location}: {self.code}: {self.message}"

    def sort_key(self) -> tuple[Location, str, str]:
        return (self.location, self.code, self.message)


class ProfileError(DriveGateError):
    """A vehicle profile (YAML) is wrong."""

    code = "profile"


class DbcError(DriveGateError):
    """A DBC file could not be loaded, or lacks what a profile asks of it."""

    code = "dbc"


class PolicyError(DriveGateError):
    """A policy file (YAML) is wrong."""

    code = "policy"


class RequestError(DriveGateError):
    """A request from the assistant is malformed (an unknown field or value)."""

    code = "request"


class LogFormatError(DriveGateError):
    """A log file is unreadable, or one of its lines or frames is."""

    code = "log-format"


class FaultSpecError(DriveGateError):
    """A fault specification for the injector is malformed or names what the profile lacks."""

    code = "fault-spec"


class PolicyTestError(DriveGateError):
    """A policy test file (YAML) is wrong."""

    code = "policy-test"


class SignatureError(DriveGateError):
    """A policy's signature is missing, malformed, untrusted or does not match the files."""

    code = "signature"


class PolicyCheckError(DriveGateError):
    """A new policy loaded but failed its checks (lint, tests); the old one stays in force."""

    code = "policy-check"

    def __init__(self, file: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), Location(file=file))


class AnalysisLimitError(DriveGateError):
    """A comparison needed more splits than its budget."""

    code = "analysis-limit"


class TimeLimitError(DriveGateError):
    """A command did not finish within its time limit (``--time-limit``): the input is too large."""

    code = "time-limit"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ServiceError(DriveGateError):
    """A problem with the decision service: a protocol error, a socket that cannot be opened, a
    service that cannot be reached.  ``code`` is one of ``safety.client.protocol.ERROR_CODES`` for
    protocol errors."""

    code = "service"

    def __init__(self, message: str, *, code: str | None = None, retry_after_ms: int | None = None) -> None:
        self.retry_after_ms = retry_after_ms
        super().__init__(message, Location(), code=code)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class LogInUseError(DriveGateError, OSError):
    """Another process holds the mapped decision log open (one writer per mapped file).

    Also an ``OSError``: it is a failure to open a file, and callers that handle those keep working.
    """

    code = "log-in-use"

    def __init__(self, message: str) -> None:
        DriveGateError.__init__(self, message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class LoadError(DriveGateError):
    """Several problems found while loading one input, sorted by place."""

    code = "load"

    def __init__(self, errors: Iterable[DriveGateError]) -> None:
        self.errors: list[DriveGateError] = sorted(errors, key=DriveGateError.sort_key)
        first = self.errors[0].location if self.errors else Location()
        super().__init__(f"{len(self.errors)} problem(s)", first)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ErrorCollector:
    """Gathers errors while loading, then raises them all at once."""

    def __init__(self) -> None:
        self.errors: list[DriveGateError] = []

    def add(self, error: DriveGateError) -> None:
        self.errors.append(error)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise LoadError(self.errors)
