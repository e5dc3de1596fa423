"""``drivegate lint POLICY... [--vehicle V.yaml] [--compare OLD NEW]``: check policies before they drive.

Every problem the loader finds (each ``file:line:col: code: message``), then, for a policy
that loads, the whole-space analysis (``safety.workflow.analysis``) and, with ``--vehicle``, the
signals the policy uses that the vehicle does not provide.  ``--compare OLD NEW`` says
whether NEW is more permissive, less permissive, equivalent or mixed compared with OLD,
with concrete examples.

Severity: ``error`` for what is certainly wrong (every loader problem, a rule that can
never apply, a threshold outside the physical range); ``warning`` for what a safety
engineer must look at and may intend (shadowed, redundant, conflicting rules, gaps where
the default decides, narrow hysteresis, short refs, unmapped signals, analysis limits).
Warnings whose code a policy lists in ``lint: {ignore: [...]}`` (or ``--ignore`` names) are
not reported, only counted; ``--no-policy-ignore`` shows them.  Errors are never ignored.
Both count as findings: exit 0 when there are none, 1 when there are findings (or the
compared policies differ), 2 when an input is unusable (a policy or a vehicle
profile that does not load: unreadable, not YAML, empty, an unknown key or value).  Findings go to stdout sorted by place; notes and a
one-line summary go to stderr.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from safety.errors import DriveGateError, LoadError, Location, PolicyError, TimeLimitError
from safety.policy import CompiledPolicy, load_policy
from safety.policy.model import LINT_IGNORABLE
from safety.vehicle.profile import VehicleProfile
from safety.vehicle.signals import CANONICAL_SIGNALS
from safety.workflow.analysis import Analysis, Progress, analyze
from safety.workflow.findings import LintFinding, condition_tests
from safety.yamlsource import load_yaml, read_yaml_text


@dataclass
class FileReport:
    """What lint found in one policy file."""

    file: str
    findings: list[LintFinding] = field(default_factory=list)
    unusable: bool = False
    analysis: Analysis | None = None
    seconds: float = 0.0
    ignored: list[LintFinding] = field(default_factory=list)  # by the policy's lint.ignore or --ignore


def load_findings(error: LoadError) -> list[LintFinding]:
    """A loader's problems as error findings."""
    return [LintFinding(e.code, "error", e.location, e.message) for e in error.errors]


def lint_file(
    path: str | Path,
    vehicle: VehicleProfile | None = None,
    *,
    max_examples: int = 5,
    ignore: Iterable[str] = (),
    use_policy_ignore: bool = True,
    progress: Progress | None = None,
) -> FileReport:
    """Load, analyse and (with a vehicle) cross-check one policy file.

    Warnings whose code is in ``ignore`` or in the policy's own ``lint: {ignore: [...]}``
    (unless ``use_policy_ignore`` is false) go to ``report.ignored``; errors never do.
    """
    report = FileReport(str(path))
    start = time.perf_counter()
    try:
        policy = load_policy(path)
    except LoadError as exc:
        report.findings = load_findings(exc)
        # A policy that does not load cannot be analysed: unusable input (exit 2), whatever the problem.
        report.unusable = True
        report.seconds = time.perf_counter() - start
        return report
    report.analysis = analyze(
        policy, max_examples=max_examples, default_loc=default_location(policy), progress=progress
    )
    report.findings = list(report.analysis.findings)
    if vehicle is not None:
        report.findings += vehicle_findings(policy, vehicle)
    # Only what may be ignored: errors, wrong declarations and an incomplete analysis are always told.
    skip = (set(ignore) | (set(policy.doc.lint_ignore) if use_policy_ignore else set())) & set(LINT_IGNORABLE)
    kept = [f for f in report.findings if f.code not in skip]
    report.ignored = [f for f in report.findings if f.code in skip]
    report.findings = kept
    report.seconds = time.perf_counter() - start
    return report


def lint_policy(policy: CompiledPolicy, *, max_examples: int = 5) -> list[LintFinding]:
    """The analysis findings of a policy already loaded."""
    return analyze(policy, max_examples=max_examples, default_loc=default_location(policy)).findings


def policy_check(policy: CompiledPolicy) -> list[str]:
    """A check for ``Engine.reload(checks=[...])``: the policy's error findings, as text.

    Warnings (conflicts, gaps under a deny default, ...) are a reviewer's business, not a
    reason to keep an old policy in force.
    """
    return [str(f) for f in lint_policy(policy) if f.severity == "error"]


def default_location(policy: CompiledPolicy) -> Location:
    """Where the policy's ``default`` is written: gaps are reported there."""
    try:
        text = read_yaml_text(policy.file)
        root = load_yaml(policy.file, text, lambda code, loc, message: PolicyError(message, loc, code=code))
    except TimeLimitError:
        raise
    except (OSError, UnicodeDecodeError, DriveGateError):
        return Location(policy.file, 1, 1)
    return root.key_loc("default") if root.is_map else Location(policy.file, 1, 1)


def vehicle_findings(policy: CompiledPolicy, vehicle: VehicleProfile) -> list[LintFinding]:
    """Signals the policy uses that the vehicle does not provide: always unknown there."""
    provided = set(vehicle.sources)
    if "steering_angle" in provided:
        provided.add("steering_rate")  # derived from the angle when not mapped
    where = Path(vehicle.file).name
    out: list[LintFinding] = []
    for rule in policy.doc.rules:
        for test in condition_tests(rule.when):
            if test.field in CANONICAL_SIGNALS and test.field not in provided:
                out.append(
                    LintFinding(
                        "unmapped-signal",
                        "warning",
                        test.loc,
                        f"rule '{rule.id}' tests {test.field}, which vehicle profile {where} does not provide: it is "
                        f"always unknown there, so the rule is evaluated as every value {test.field} could take",
                    )
                )
    for i, trig in enumerate(policy.doc.state.workload_triggers):
        if trig.signal not in provided:
            out.append(
                LintFinding(
                    "unmapped-signal",
                    "warning",
                    trig.loc,
                    f"state.workload.high_when[{i}]: vehicle profile {where} does not provide {trig.signal}, so this "
                    "trigger never raises the workload there",
                )
            )
    return out
