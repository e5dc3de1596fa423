"""``drivegate test``: policy test files, the shipped suites, diffs, coverage, file errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT

from safety import Engine, Outcome, load_policy
from safety.errors import PolicyCheckError
from safety.workflow.policytest import load_test_file, run_tests, suite_check

SUITES = ROOT / "policies" / "tests"
# Relative to the repository (the CLI runs there), so places read as in the docs.
DEFAULT = "policies/default.yaml"
BANDS = "policies/speed-bands.yaml"
DEFAULT_SUITE = "policies/tests/default.yaml"
BANDS_SUITE = "policies/tests/speed-bands.yaml"
HEAD = """defaults:
  state: {steering_angle: 0, steering_rate: 0, turn_signal: none}
  request: {kind: notification, category: message, modality: visual, content: text, priority: normal}
"""


def drivegate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", *map(str, args)], capture_output=True, text=True, check=False, cwd=ROOT
    )


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- the shipped suites
@pytest.mark.parametrize(
    ("policy", "suite", "checks", "rules"),
    [
        (DEFAULT, DEFAULT_SUITE, 88, 11),
        (BANDS, BANDS_SUITE, 54, 13),
    ],
    ids=["default", "speed-bands"],
)
def test_shipped_suites_pass_with_full_coverage(policy: str, suite: str, checks: int, rules: int) -> None:
    result = drivegate("test", policy, suite, "--coverage", "100")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == suite
    assert sum(line.startswith("  PASS  ") for line in lines) == checks
    assert lines[-2].startswith(f"{checks} passed, 0 failed: {checks} checks (")
    assert lines[-1] == f"rule coverage: {rules}/{rules} rules (100.0%)"
    assert result.stderr == ""


def test_shipped_suites_json() -> None:
    result = drivegate("test", DEFAULT, DEFAULT_SUITE, "--format", "json", "--coverage", "100")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["summary"] == {"checks": 88, "passed": 88, "failed": 0}
    assert report["coverage"]["percent"] == 100.0
    assert report["coverage"]["not_exercised"] == []
    assert report["coverage"]["met"] is True
    assert report["policy"]["name"] == "default"
    first = report["results"][0]
    assert first == {
        "file": DEFAULT_SUITE,
        "kind": "case",
        "scenario": "parked allows video",
        "name": "parked allows video",
        "location": f"{DEFAULT_SUITE}:27:5",
        "t": 1.0,
        "passed": True,
        "mismatches": [],
        "expected": {"outcome": "allow", "rules": ["parked-allow"], "constraints": {}},
        "got": {
            "outcome": "allow",
            "rules": ["parked-allow"],
            "constraints": {},
            "reason": "parked in P, everything is allowed",
        },
        "explanation": None,
    }


def test_suite_against_the_wrong_policy_is_unusable() -> None:
    result = drivegate("test", DEFAULT, BANDS_SUITE)
    assert result.returncode == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first == (
        f"{BANDS_SUITE}:28:38: unknown-rule: case 'parked allows video'.expect.rules: unknown rule "
        "'parked' (did you mean 'parked-allow'?); policy 'default' has: parked-allow, lockout-video, lockout-image, "
        "lockout-reading-text, lockout-text-entry, limit-list, voice-low-workload, glanceable-visual, manual-simple, "
        "hold-high-workload, critical-by-voice"
    )


# ---------------------------------------------------------------------- failures and coverage
FAILING = (
    HEAD
    + """cases:
  - name: video while moving
    state: {speed: 45, gear: D}
    request: {content: video}
    expect: {outcome: deny, rules: [lockout-video]}
  - name: a wrong expectation
    state: {speed: 45, gear: D}
    request: {modality: voice}
    expect: {outcome: defer, rules: [hold-high-workload], constraints: {until: workload low}}
"""
)


def test_failing_case_shows_the_diff_and_the_explanation(tmp_path: Path) -> None:
    path = write(tmp_path, FAILING)
    result = drivegate("test", DEFAULT, path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:12] == [
        str(path),
        "  PASS  video while moving -> deny (lockout-video)",
        f"  FAIL  a wrong expectation  [{path}:9:5]",
        "        expected (-) and got (+):",
        "        - outcome: defer",
        "        + outcome: allow",
        "        - rules: [hold-high-workload]",
        "        + rules: [voice-low-workload]",
        "        - constraints: {until: workload low}",
        "        + constraints: {}",
        "          reason: voice and audio are the safe channel while the workload is low",
        "        explanation:",
    ]
    explanation = lines[12 : lines.index("1 passed, 1 failed: 2 checks (2 cases, 0 scenarios) in 1 file(s)")]
    assert "            voice-low-workload: holds -> allow  [policies/default.yaml:103:5]" in explanation
    assert "                workload == high: false (workload is low)  [policies/default.yaml:134:7]" in explanation
    assert explanation[-3:] == [
        "          decision: allow",
        "            rules: voice-low-workload",
        "            reason: voice and audio are the safe channel while the workload is low",
    ]
    assert lines[-1 - 9 :][0] == "rule coverage: 2/11 rules (18.2%)"


def test_failing_case_in_json(tmp_path: Path) -> None:
    result = drivegate("test", DEFAULT, write(tmp_path, FAILING), "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["summary"] == {"checks": 2, "passed": 1, "failed": 1}
    failed = report["results"][1]
    assert failed["mismatches"] == ["outcome", "rules", "constraints"]
    assert failed["expected"] == {
        "outcome": "defer",
        "rules": ["hold-high-workload"],
        "constraints": {"until": "workload low"},
    }
    assert failed["got"]["outcome"] == "allow"
    explanation = failed["explanation"]
    assert explanation["decision"]["rules"] == ["voice-low-workload"]
    hold = next(r for r in explanation["rules"] if r["id"] == "hold-high-workload")
    assert hold["result"] is False
    assert hold["decided_by"] == [
        {
            "test": "workload == high",
            "field": "workload",
            "op": "eq",
            "value": "high",
            "actual": "low",
            "result": False,
            "negated": False,
            "location": "policies/default.yaml:134:7",
        }
    ]
    assert report["results"][0]["explanation"] is None  # only failures carry one


def test_coverage_lists_rules_never_exercised_and_enforces_the_threshold(tmp_path: Path) -> None:
    path = write(tmp_path, FAILING.split("  - name: a wrong expectation")[0])
    result = drivegate("test", DEFAULT, path, "--coverage", "10")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-12:] == [
        "rule coverage: 1/11 rules (9.1%)",
        "  not exercised: parked-allow  [policies/default.yaml:59:5]",
        "  not exercised: lockout-image  [policies/default.yaml:72:5]",
        "  not exercised: lockout-reading-text  [policies/default.yaml:78:5]",
        "  not exercised: lockout-text-entry  [policies/default.yaml:88:5]",
        "  not exercised: limit-list  [policies/default.yaml:94:5]",
        "  not exercised: voice-low-workload  [policies/default.yaml:103:5]",
        "  not exercised: glanceable-visual  [policies/default.yaml:111:5]",
        "  not exercised: manual-simple  [policies/default.yaml:122:5]",
        "  not exercised: hold-high-workload  [policies/default.yaml:129:5]",
        "  not exercised: critical-by-voice  [policies/default.yaml:142:5]",
        "rule coverage 9.1% is under the required 10%",
    ]
    assert drivegate("test", DEFAULT, path, "--coverage", "9").returncode == 0
    assert drivegate("test", DEFAULT, path).returncode == 0
    bad = drivegate("test", DEFAULT, path, "--coverage", "101")
    assert (bad.returncode, bad.stderr) == (2, "drivegate test: --coverage must be between 0 and 100\n")


def test_coverage_adds_up_over_several_files(tmp_path: Path) -> None:
    one = write(tmp_path, FAILING.split("  - name: a wrong expectation")[0], "one.yaml")
    two = write(
        tmp_path,
        HEAD
        + "cases:\n  - name: parked\n    state: {speed: 0, gear: P}\n    request: {content: video}\n"
        + "    expect: {outcome: allow, rules: [parked-allow]}\n",
        "two.yaml",
    )
    result = drivegate("test", DEFAULT, one, two)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line for line in lines if not line.startswith("  ")][:4] == [
        str(one),
        str(two),
        "2 passed, 0 failed: 2 checks (2 cases, 0 scenarios) in 2 file(s)",
        "rule coverage: 2/11 rules (18.2%)",
    ]


# ---------------------------------------------------------------------- unusable test files
def test_every_problem_of_a_test_file_is_reported_with_its_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD
        + """states:
  city: {speed: 45, gear: D}
cases:
  - name: typos
    state: {sped: 45, gear: X, driving_state: moving}
    request: {content: vidoe}
    expect: {outcome: forbid, rules: [lockout-vidoe]}
  - name: typos
    state: {base: town, speed: fast, stale: [gear]}
    expect: {outcome: deny, constraints: {max_items: 3}}
scenarios:
  - name: bad steps
    steps:
      - {at: 1, base: city}
      - {at: 0.5, missing: [speed]}
    expect_at:
      - {t: 2, request: {priority: urgent}, outcome: allow}
      - {t: 1, outcome: allow, rule: [parked-allow]}
""",
    )
    result = drivegate("test", DEFAULT, path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.replace(str(path), "t.yaml").splitlines() == [
        "t.yaml:8:13: unknown-signal: unknown signal 'sped' in case 'typos'.state; expected one of: speed, gear, "
        "steering_angle, steering_rate, parking_brake, turn_signal, brake_pressed, accelerator_pedal, eyes_on_road, "
        "stale, unknown, missing, base",
        "t.yaml:8:29: unknown-value: case 'typos'.state.gear: str 'X' is not a value of this signal; expected one of: "
        "P, R, N, D",
        "t.yaml:8:32: derived-field: case 'typos'.state: 'driving_state' cannot be set: it comes from speed and gear "
        "(and the policy's standstill thresholds); set those signals",
        "t.yaml:9:15: bad-request: case 'typos'.request: unknown content 'vidoe'; expected one of: text, image, video, "
        "list, keyboard, none",
        "t.yaml:10:23: unknown-value: case 'typos'.expect.outcome must be one of: allow, degrade, defer, deny; "
        "got str 'forbid'",
        "t.yaml:10:39: unknown-rule: case 'typos'.expect.rules: unknown rule 'lockout-vidoe' (did you mean "
        "'lockout-video'?); policy 'default' has: parked-allow, lockout-video, lockout-image, lockout-reading-text, "
        "lockout-text-entry, limit-list, voice-low-workload, glanceable-visual, manual-simple, hold-high-workload, "
        "critical-by-voice",
        "t.yaml:11:11: duplicate-name: duplicate name 'typos' (first at line 7)",
        "t.yaml:12:19: unknown-state: case 'typos'.state.base: unknown state 'town'; the named states are: city",
        "t.yaml:12:32: expected-type: case 'typos'.state.speed must be a finite number (km/h), got str 'fast'",
        "t.yaml:12:46: bad-state: case 'typos'.state: stale signal 'gear' was never sent; give the last value "
        "received (e.g. gear: P), or list it under missing",
        "t.yaml:13:43: unknown-key: unknown key 'max_items' in case 'typos'.expect.constraints; expected one of: "
        "input, max_list_items, max_text_length, modality, retry_after_ms, until",
        "t.yaml:18:14: bad-time: scenario 'bad steps'.steps[1].at (0.5 s) must be after the previous step (1 s)",
        "t.yaml:18:29: bad-state: scenario 'bad steps'.steps[1]: 'missing' means never received, so it applies only "
        "before the first frame (a case, a scenario's first step); use stale for 'speed' here",
        "t.yaml:20:26: bad-request: scenario 'bad steps'.expect_at[0].request: unknown priority 'urgent'; expected "
        "one of: critical, high, normal, low",
        "t.yaml:21:13: bad-time: scenario 'bad steps'.expect_at[1].t (1 s) is before the previous check (2 s); "
        "list checks in time order",
        "t.yaml:21:32: unknown-key: unknown key 'rule' in scenario 'bad steps'.expect_at[1]; expected one of: "
        "constraints, name, outcome, request, rules, t",
    ]


def test_request_problems_are_all_reported_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """defaults:
  request: {kind: notification, category: mesage, modality: visual, content: text}
cases:
  - name: a
    state: {speed: 0, gear: P}
    request: {text_length: -1, colour: red}
    expect: {outcome: allow}
  - name: b
    state: {speed: 0, gear: P}
    expect: {outcome: allow}
""",
    )
    result = drivegate("test", DEFAULT, path)
    assert result.returncode == 2
    assert result.stderr.replace(str(path), "t.yaml").splitlines() == [
        "t.yaml:2:33: bad-request: defaults.request: unknown category 'mesage'; expected one of: message, call, "
        "meeting, calendar, approval, document, navigation, media, system, reminder, contact, task",
        "t.yaml:6:14: bad-request: case 'a'.request: missing required field 'priority'; expected one of: "
        "critical, high, normal, low",
        "t.yaml:6:15: bad-request: case 'a'.request: text_length must be a whole number >= 0, got -1",
        "t.yaml:6:32: bad-request: case 'a'.request: unknown field 'colour'; expected one of: id, app, kind, "
        "category, modality, content, priority, text_length, list_items, text, task_id, glance_ms, ttl_ms",
        "t.yaml:8:5: bad-request: case 'b'.request: missing required field 'priority'; expected one of: "
        "critical, high, normal, low",
    ]


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    broken = write(tmp_path, "cases: [\n", "broken.yaml")
    empty = write(tmp_path, "description: nothing to run\n", "empty.yaml")
    result = drivegate("test", DEFAULT, broken, empty, tmp_path / "absent.yaml")
    assert result.returncode == 2
    lines = result.stderr.replace(str(tmp_path) + "/", "").splitlines()
    assert lines[0].startswith("absent.yaml: unreadable: cannot read the test file: [Errno 2] No such file")
    assert lines[1:] == [
        "broken.yaml:2:1: yaml-syntax: invalid YAML: did not find expected node content",
        "empty.yaml:1:1: missing-key: the test file has neither 'cases' nor 'scenarios'",
    ]


def test_policy_errors_come_first_and_stop(tmp_path: Path) -> None:
    policy = write(tmp_path, "version: 1\nname: p\ndefault: nope\nrules: []\n", "p.yaml")
    result = drivegate("test", policy, DEFAULT_SUITE)
    assert result.returncode == 2
    assert result.stderr == (
        f"{policy}:3:10: unknown-value: default must be one of: allow, degrade, defer, deny; got str 'nope'\n"
    )


# ---------------------------------------------------------------------- semantics, in process
def test_vehicle_without_steering_rate_derives_it(tmp_path: Path) -> None:
    """A max_age_ms mapping is the test vehicle's signal list; the rate is then derived, as on a real car."""
    policy = load_policy(DEFAULT_POLICY)
    path = write(
        tmp_path,
        """defaults:
  max_age_ms: {speed: 300, gear: 300, steering_angle: 200, turn_signal: 500}
  cycle_ms: 10
  state: {speed: 30, gear: D, steering_angle: 0, turn_signal: none}
  request: {kind: notification, category: message, modality: voice, content: text, priority: normal}
scenarios:
  - name: a quick flick of the wheel
    steps:
      - {at: 0}
      - {at: 1.0, steering_angle: 20}
      - {at: 1.05, steering_angle: 40}
      - {at: 1.10, steering_angle: 60}
      - {at: 1.15, steering_angle: 80}
      - {at: 1.20, steering_angle: 80}
    expect_at:
      - {t: 0.9, outcome: allow}
      - {t: 1.3, outcome: defer, rules: [hold-high-workload]}
      - {t: 4.3, outcome: allow}
""",
    )
    suite = load_test_file(path, policy)
    assert suite.vehicle.derives_rate
    report = run_tests(policy, [suite])
    assert [(r.got.outcome, r.passed) for r in report.results] == [
        (Outcome.ALLOW, True),
        (Outcome.DEFER, True),
        (Outcome.ALLOW, True),
    ]
    path.write_text(path.read_text().replace("{at: 0}", "{at: 0, steering_rate: 0, eyes_on_road: true}"))
    result = drivegate("test", DEFAULT, path)
    assert result.stderr.replace(str(path), "t.yaml").splitlines() == [
        "t.yaml:9:17: not-provided: scenario 'a quick flick of the wheel'.steps[0]: signal 'steering_rate' is not "
        "provided by the test vehicle; it is derived from steering_angle on this vehicle (give steering_rate a max "
        "age to set it)",
        "t.yaml:9:35: not-provided: scenario 'a quick flick of the wheel'.steps[0]: signal 'eyes_on_road' is not "
        "provided by the test vehicle; the vehicle provides: speed, gear, steering_angle, turn_signal",
    ]


def test_stale_follows_max_age_and_cases_wait_for_it(tmp_path: Path) -> None:
    policy = load_policy(DEFAULT_POLICY)
    path = write(
        tmp_path,
        """defaults:
  max_age_ms: 1500
  state: {speed: 0, gear: P, steering_angle: 0, steering_rate: 0, turn_signal: none}
  request: {kind: interaction, category: media, modality: visual, content: video, priority: normal}
cases:
  - name: stale gear after 1.5 s
    state: {stale: [gear]}
    expect: {outcome: deny, rules: [lockout-video]}
scenarios:
  - name: silent gear
    steps:
      - {at: 0}
      - {at: 1, stale: [gear]}
    expect_at:
      - {t: 2.5, outcome: allow}
      - {t: 2.51, outcome: deny}
""",
    )
    report = run_tests(policy, [load_test_file(path, policy)])
    assert [(r.check.t, r.passed) for r in report.results] == [(1.52, True), (2.5, True), (2.51, True)]
    assert report.results[0].got.why_unknown["gear"] == "stale: last frame 1.520 s ago (max 1.500 s)"


def test_policy_tests_guard_a_hot_reload(tmp_path: Path) -> None:
    """Engine.reload runs the suite first: a policy that breaks it never goes live."""
    text = DEFAULT_POLICY.read_text()
    weakened = text.replace(
        "    when: {driving_state: {ne: parked}, content: video}\n    outcome: deny",
        "    when: {driving_state: {ne: parked}, content: video}\n    outcome: defer",
    )
    assert weakened != text
    new = write(tmp_path, weakened, "weakened.yaml")
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    before = engine.policy.hash
    check = suite_check([SUITES / "default.yaml"], min_coverage=100)
    with pytest.raises(PolicyCheckError) as info:
        engine.reload(new, checks=[check])
    assert engine.policy.hash == before
    assert info.value.problems[0] == (
        f"{SUITES / 'default.yaml'}:53:5: test 'video is locked out while moving' failed: expected deny, "
        "got defer (lockout-video)"
    )
    assert engine.reload(DEFAULT_POLICY, checks=[check]) == "active"


def test_a_step_or_check_far_in_the_future_is_refused_not_simulated(tmp_path: Path) -> None:
    """#11 item 8: a step at ``at: 1e8`` hung ``drivegate test`` (it simulated 10^8 s of frames)."""
    path = write(
        tmp_path,
        HEAD
        + """scenarios:
  - name: far
    steps:
      - {at: 0, speed: 0, gear: P}
      - {at: 100000000, speed: 10, gear: D}
    expect_at:
      - {t: 1000000000, outcome: deny}
""",
    )
    result = drivegate("test", DEFAULT, path)
    assert result.returncode == 2
    assert result.stderr.replace(str(path), "t.yaml").splitlines() == [
        "t.yaml:8:14: bad-time: scenario 'far'.steps[1].at (1e+08 s) must be at most 3600 s: a policy test drive "
        "lasts minutes, not days",
        "t.yaml:10:13: bad-time: scenario 'far'.expect_at[0].t (1e+09 s) must be at most 3600 s: a policy test drive "
        "lasts minutes, not days",
    ]
