"""``drivegate lint`` as a user runs it: a real process, exit codes, exact output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, SPEED_BANDS_POLICY

from safety import Engine, load_policy
from safety.workflow.lint import policy_check

REF = "TEST-DOC §1.2"
CLEAN = f"""version: 1
name: clean
default: deny
rules:
  - id: parked
    ref: {REF}
    when: {{driving_state: parked}}
    outcome: allow
  - id: moving
    ref: {REF}
    when: {{driving_state: {{ne: parked}}}}
    outcome: defer
    constraints: {{retry_after_ms: 1000}}
"""


def lint(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", "lint", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clean_policy_exits_0_and_prints_nothing(tmp_path: Path) -> None:
    result = lint(write(tmp_path, "clean.yaml", CLEAN))
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "drivegate lint: 1 policy file(s): 0 error(s), 0 warning(s)\n"


def test_loader_problems_are_findings_sorted_by_place(tmp_path: Path) -> None:
    bad = CLEAN.replace("    when: {driving_state: parked}", "    whne: {driving_state: parked}").replace(
        "outcome: defer", "outcome: forbid"
    )
    path = write(tmp_path, "bad.yaml", bad)
    result = lint(path)
    assert result.returncode == 2  # a policy that does not load is unusable input (#9: was 1)
    assert result.stdout.splitlines() == [
        f"{path}:7:5: unknown-key: unknown key 'whne' in rules[0]; expected one of: constraints, description, "
        "exception, id, outcome, overrides, reason, ref, when",
        f"{path}:12:14: unknown-value: rule 'moving'.outcome must be one of: allow, degrade, defer, deny; got str "
        "'forbid'",
    ]


def test_analysis_findings_with_places(tmp_path: Path) -> None:
    text = (
        CLEAN
        + f"""  - id: never
    ref: {REF}
    when: {{driving_state: parked, gear: D}}
    outcome: deny
"""
    )
    path = write(tmp_path, "p.yaml", text)
    result = lint(path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:14:5: unreachable-rule: rule 'never' can never apply: its condition holds in no state and request "
        "that can occur"
    ]
    assert result.stderr.endswith("1 error(s), 0 warning(s)\n")


def test_gaps_are_reported_at_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", CLEAN.replace("driving_state: {ne: parked}", "driving_state: moving"))
    result = lint(path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:3:1: gap: no rule applies to driving_state: stationary (1 of 3 cells); the default decides: deny; "
        "e.g. state {driving_state: stationary}"
    ]


def test_unusable_inputs_exit_2(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", "version: 1\nrules: [\n")
    result = lint(broken)
    assert result.returncode == 2
    assert result.stdout == f"{broken}:3:1: yaml-syntax: invalid YAML: did not find expected node content\n"
    missing = tmp_path / "missing.yaml"
    result = lint(missing)
    assert result.returncode == 2
    assert result.stdout.startswith(f"{missing}: unreadable: cannot read the policy: ")
    empty = write(tmp_path, "empty.yaml", "")
    assert lint(empty).returncode == 2
    # One unusable file makes the run unusable, whatever the others say.
    assert lint(write(tmp_path, "clean.yaml", CLEAN), broken).returncode == 2


def test_unknown_vehicle_exits_2(tmp_path: Path) -> None:
    vehicle = write(tmp_path, "car.yaml", "dbc: nowhere.dbc\nsignals: {}\n")
    result = lint(write(tmp_path, "clean.yaml", CLEAN), "--vehicle", vehicle)
    assert result.returncode == 2
    assert result.stdout.startswith(f"{vehicle}:1:6: dbc-missing: DBC file 'nowhere.dbc' not found")


def test_vehicle_without_a_signal_the_policy_uses(tmp_path: Path) -> None:
    text = f"""version: 1
name: t
default: deny
state:
  workload:
    high_when:
      - {{signal: accelerator_pedal, on_above: 80, off_below: 60}}
rules:
  - id: eyes
    ref: {REF}
    when: {{eyes_on_road: false}}
    outcome: defer
  - id: rest
    ref: {REF}
    when: {{eyes_on_road: true}}
    outcome: allow
"""
    path = write(tmp_path, "p.yaml", text)
    result = lint(path, "--vehicle", DEMO_VEHICLE)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:7:9: unmapped-signal: state.workload.high_when[0]: vehicle profile demo_sedan.yaml does not "
        "provide accelerator_pedal, so this trigger never raises the workload there",
        f"{path}:11:12: unmapped-signal: rule 'eyes' tests eyes_on_road, which vehicle profile demo_sedan.yaml does "
        "not provide: it is always unknown there, so the rule is evaluated as every value eyes_on_road could take",
        f"{path}:15:12: unmapped-signal: rule 'rest' tests eyes_on_road, which vehicle profile demo_sedan.yaml does "
        "not provide: it is always unknown there, so the rule is evaluated as every value eyes_on_road could take",
    ]
    assert lint(path).returncode == 0  # without the vehicle, the policy itself is clean


def test_shipped_policies_lint_clean_and_show_declared_gaps_on_request() -> None:
    result = lint(DEFAULT_POLICY, SPEED_BANDS_POLICY, "--vehicle", DEMO_VEHICLE, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["exit"], report["findings"]) == (0, [])
    assert [(f["file"], f["mode"]) for f in report["files"]] == [
        (str(DEFAULT_POLICY), "whole-space"),
        (str(SPEED_BANDS_POLICY), "whole-space"),
    ]
    # Each declares its gaps expected (default deny); the reviewer's full view still lists them.
    assert all({f["code"] for f in file["ignored"]} == {"gap"} for file in report["files"])
    assert "0 error(s), 0 warning(s), 12 ignored (lint.ignore / --ignore)" in result.stderr
    full = lint(DEFAULT_POLICY, SPEED_BANDS_POLICY, "--no-policy-ignore", "--format", "json")
    assert full.returncode == 1
    findings = json.loads(full.stdout)["findings"]
    assert len(findings) == 12 and {f["code"] for f in findings} == {"gap"}
    assert all(f["severity"] == "warning" and set(f["example"]) == {"state", "request"} for f in findings[:5])


def test_ignore_warnings_by_code_but_never_errors(tmp_path: Path) -> None:
    weak = CLEAN.replace(
        f"ref: {REF}\n    when: {{driving_state: parked}}", "ref: AAOS\n    when: {driving_state: parked}"
    )
    path = write(tmp_path, "weak.yaml", weak)
    assert lint(path).returncode == 1
    result = lint(path, "--ignore", "weak-ref")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == (
        "drivegate lint: 1 policy file(s): 0 error(s), 0 warning(s), 1 ignored (lint.ignore / --ignore)\n"
    )
    declared = write(
        tmp_path, "declared.yaml", weak.replace("default: deny\n", "default: deny\nlint: {ignore: [weak-ref]}\n")
    )
    assert lint(declared).returncode == 0
    assert lint(declared, "--no-policy-ignore").returncode == 1
    # Errors (here: a rule that can never apply) cannot be ignored, by the CLI or by the policy.
    usage = lint(path, "--ignore", "unreachable-rule")
    assert usage.returncode == 2 and "invalid choice: 'unreachable-rule'" in usage.stderr
    bad = write(
        tmp_path,
        "bad.yaml",
        CLEAN.replace("default: deny\n", "default: deny\nlint: {ignore: [gap, unreachable-rule]}\n"),
    )
    result = lint(bad)
    assert result.returncode == 2  # the policy does not load (#9: was 1)
    assert result.stdout == (
        f"{bad}:4:22: unknown-value: lint.ignore: 'unreachable-rule' cannot be ignored; expected one of: conflict, "
        "gap, narrow-hysteresis, override-unused, redundant-rule, shadowed-rule, unmapped-signal, weak-ref\n"
    )


def test_compare_exit_codes_and_lines(tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", CLEAN)
    same = lint("--compare", old, write(tmp_path, "same.yaml", CLEAN.replace("name: clean", "name: renamed")))
    assert same.returncode == 0
    assert same.stdout == f"{tmp_path}/same.yaml: compare: equivalent to {old}: all 3 cells decided the same\n"
    stricter = write(
        tmp_path,
        "new.yaml",
        CLEAN.replace("outcome: defer\n    constraints: {retry_after_ms: 1000}\n", "outcome: deny\n"),
    )
    result = lint("--compare", old, stricter, "--max-examples", "1")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{stricter}: compare: less-permissive than {old}: 2 of 3 cells decided differently (0 looser, 2 stricter, "
        "0 different)",
        f"{stricter}: compare: stricter: state {{driving_state: stationary}}: defer {{retry_after_ms: 1000}} (moving) "
        "-> deny (moving)",
    ]
    report = json.loads(lint("--compare", old, stricter, "--format", "json").stdout)
    assert report["compare"]["result"] == "less-permissive"
    assert report["compare"]["examples"][0]["old"] == {
        "outcome": "defer",
        "constraints": {"retry_after_ms": 1000},
        "rules": ["moving"],
    }


def test_compare_with_a_broken_policy_exits_2(tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", CLEAN)
    bad = write(tmp_path, "bad.yaml", CLEAN.replace("name: clean", "nmae: clean"))
    result = lint("--compare", old, bad)
    assert result.returncode == 2
    assert f"{bad}:2:1: unknown-key: unknown key 'nmae' in the policy" in result.stdout


def test_no_arguments_is_a_usage_error() -> None:
    result = lint()
    assert result.returncode == 2
    assert "give at least one POLICY, or --compare OLD NEW" in result.stderr


def test_policy_check_for_hot_reload(tmp_path: Path) -> None:
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    assert policy_check(load_policy(DEFAULT_POLICY)) == []  # warnings do not block a reload
    assert engine.reload(SPEED_BANDS_POLICY, checks=[policy_check]) == "active"
    broken = write(
        tmp_path,
        "p.yaml",
        CLEAN
        + f"""  - id: never
    ref: {REF}
    when: {{speed: {{gt: 900}}}}
    outcome: deny
""",
    )
    problems = policy_check(load_policy(broken))
    assert [p.split(": ")[1] for p in problems] == ["unreachable-rule", "threshold-out-of-range"]
