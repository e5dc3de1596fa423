"""The JSON Schemas agree with the loaders: on every shipped file, and on deliberately bad ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT

from safety import LoadError, load_policy, load_profile
from safety.policy.model import condition_fields
from safety.policy.parse import RULE_KEYS, TOP_KEYS
from safety.policy.schema import load_schema, schema_text
from safety.vehicle.profile import PROFILE_KEYS, SIGNAL_KEYS
from safety.vehicle.signals import CANONICAL_SIGNALS

DBC = ROOT / "dbc" / "demo_sedan.dbc"
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml"))
PROFILE_FILES = sorted((ROOT / "dbc").glob("*.yaml"))


def as_json(path_or_text: Path | str) -> Any:
    """What yaml-language-server validates: the YAML as JSON data (keys become strings)."""
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def schema_errors(kind: str, data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema(kind))
    return [error.message for error in validator.iter_errors(data)]


@pytest.mark.parametrize("kind", ["policy", "vehicle"])
def test_schema_command_prints_a_valid_schema(kind: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safety.cli", "schema", kind], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout == schema_text(kind)
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_key_has_help_for_the_editor() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, child in node.get("properties", {}).items():
                assert "description" in child, f"{where}.{key}"
            for key, child in node.items():
                if key not in ("if", "not"):  # conditions on values, not keys a user types
                    walk(child, f"{where}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}[{i}]")

    for kind in ("policy", "vehicle"):
        walk(load_schema(kind), kind)


def test_schemas_follow_the_code() -> None:
    policy = load_schema("policy")
    assert set(policy["properties"]) == set(TOP_KEYS)
    assert set(policy["$defs"]["rule"]["properties"]) == set(RULE_KEYS)
    condition = policy["$defs"]["condition"]["properties"]
    assert set(condition) == {*condition_fields(), "speed_band", "all", "any", "not"}
    for name, spec in condition_fields().items():
        if spec.kind in ("enum",) and spec.values:
            assert policy["$defs"][f"{name}-test"]["oneOf"][0]["enum"] == list(spec.values), name
    vehicle = load_schema("vehicle")
    assert set(vehicle["properties"]) == set(PROFILE_KEYS)
    signals = vehicle["properties"]["signals"]
    assert set(signals["properties"]) == set(CANONICAL_SIGNALS)
    assert signals["required"] == []  # partial profiles load (with a warning per unmapped required signal)
    for name in CANONICAL_SIGNALS:
        assert set(vehicle["$defs"][name]["properties"]) <= set(SIGNAL_KEYS), name


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_shipped_policies_pass_schema_and_loader(path: Path) -> None:
    assert schema_errors("policy", as_json(path)) == []
    load_policy(path)


@pytest.mark.parametrize("path", [*PROFILE_FILES, ROOT / "tests" / "profiles" / "rav4_2017.yaml"], ids=lambda p: p.name)
def test_shipped_profiles_pass_schema_and_loader(path: Path) -> None:
    assert schema_errors("vehicle", as_json(path)) == []
    dbc = yaml.safe_load(path.read_text())["dbc"]
    if not (path.parent / dbc).exists():
        pytest.skip(f"the DBC of {path.name} is in the shared data, absent here")
    load_profile(path)


REF = "TEST-DOC §1.2"
GOOD_POLICY = f"""version: 1
name: t
default: deny
state:
  workload:
    high_when:
      - {{signal: steering_angle, abs: true, on_above: 90, off_below: 45}}
rules:
  - id: ok
    ref: {REF}
    when: {{content: video}}
    outcome: deny
"""
# Each replaces one line of GOOD_POLICY; both the schema and the loader must reject the result.
BAD_POLICIES = {
    "unknown top key": ("name: t", "nmae: t"),
    "version 2": ("version: 1", "version: 2"),
    "default not an outcome": ("default: deny", "default: forbid"),
    "outcome not an outcome": ("    outcome: deny", "    outcome: forbid"),
    "missing ref": (f"    ref: {REF}", "    description: no ref"),
    "bad rule id": ("  - id: ok", "  - id: Ok"),
    "unknown field": ("    when: {content: video}", "    when: {speeed: {gt: 3}}"),
    "unknown value": ("    when: {content: video}", "    when: {content: vidoe}"),
    "number operator on an enum": ("    when: {content: video}", "    when: {content: {gt: 3}}"),
    "list on a number": ("    when: {content: video}", "    when: {speed: [1, 2]}"),
    "text for a number": ("    when: {content: video}", "    when: {speed: {gt: fast}}"),
    "text for a boolean": ("    when: {content: video}", "    when: {parking_brake: 'on'}"),
    "empty condition": ("    when: {content: video}", "    when: {}"),
    "between needs two": ("    when: {content: video}", "    when: {speed: {between: [1]}}"),
    "deny takes no constraints": ("    outcome: deny", "    outcome: deny\n    constraints: {modality: voice}"),
    "degrade needs constraints": ("    outcome: deny", "    outcome: degrade"),
    "degrade to visual": ("    outcome: deny", "    outcome: degrade\n    constraints: {modality: visual}"),
    "unknown trigger key": ("abs: true, on_above", "abs: true, above: 1, on_above"),
    "numeric trigger with in": ("abs: true, on_above: 90, off_below: 45", "in: [1]"),
    "standstill needs both": ("  workload:\n", "  standstill: {on_below: 1}\n  workload:\n"),
    "overrides not a list": ("    outcome: deny", "    outcome: deny\n    overrides: ok"),
    "error code in lint.ignore": ("default: deny", "default: deny\nlint: {ignore: [unreachable-rule]}"),
    "unknown lint key": ("default: deny", "default: deny\nlint: {ignroe: [gap]}"),
}
# What only the loader can see: relations between values, and names defined elsewhere in the file.
LOADER_ONLY_POLICIES = {
    "inverted hysteresis": ("on_above: 90, off_below: 45", "on_above: 45, off_below: 90"),
    "empty range": ("    when: {content: video}", "    when: {speed: {between: [5, 3]}}"),
    "override of an unknown rule": ("    outcome: deny", "    outcome: deny\n    overrides: [nope]"),
    "duplicate rule id": ("    outcome: deny", f"    outcome: deny\n  - id: ok\n    ref: {REF}\n    outcome: deny"),
    "enum trigger value": (
        "{signal: steering_angle, abs: true, on_above: 90, off_below: 45}",
        "{signal: gear, in: [X]}",
    ),
}


def bad_policy(case: tuple[str, str]) -> str:
    old, new = case
    assert old in GOOD_POLICY
    return GOOD_POLICY.replace(old, new, 1)


def loader_rejects_policy(tmp_path: Path, text: str) -> bool:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    try:
        load_policy(path)
    except LoadError:
        return True
    return False


def test_good_policy_passes_both(tmp_path: Path) -> None:
    assert schema_errors("policy", as_json(GOOD_POLICY)) == []
    assert not loader_rejects_policy(tmp_path, GOOD_POLICY)


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_bad_policy_rejected_by_schema_and_loader(tmp_path: Path, case: str) -> None:
    text = bad_policy(BAD_POLICIES[case])
    assert schema_errors("policy", as_json(text)), f"the schema accepts: {case}"
    assert loader_rejects_policy(tmp_path, text), f"the loader accepts: {case}"


@pytest.mark.parametrize("case", sorted(LOADER_ONLY_POLICIES))
def test_what_only_the_loader_checks(tmp_path: Path, case: str) -> None:
    text = bad_policy(LOADER_ONLY_POLICIES[case])
    assert schema_errors("policy", as_json(text)) == []
    assert loader_rejects_policy(tmp_path, text)


GOOD_PROFILE = f"""dbc: {DBC}
signals:
  speed:
    message: VEHICLE_SPEED
    signal: VehicleSpeed
    max_age_ms: 300
  gear:
    message: TRANSMISSION
    signal: GearPosition
    map: {{PARK: P, REVERSE: R, NEUTRAL: N, DRIVE: D}}
  steering_angle:
    message: STEERING
    signals: [SteeringAngle, SteeringAngleFine]
    combine: sum
"""
BAD_PROFILES = {
    "unknown top key": ("signals:\n", "signal:\n"),
    "unknown signal": ("  steering_angle:", "  steering_angel:"),
    "signal and signals": ("    signal: VehicleSpeed", "    signal: VehicleSpeed\n    signals: [VehicleSpeed]"),
    "no message": ("    message: VEHICLE_SPEED\n", ""),
    "map on a number": ("    max_age_ms: 300", "    max_age_ms: 300\n    map: {1: 2}"),
    "enum without a map": ("    map: {PARK: P, REVERSE: R, NEUTRAL: N, DRIVE: D}\n", ""),
    "map to a non-canonical value": ("DRIVE: D}", "DRIVE: Q}"),
    "bad combine": ("combine: sum", "combine: average"),
    "max age zero": ("max_age_ms: 300", "max_age_ms: 0"),
    "unknown signal key": ("    max_age_ms: 300", "    max_age: 300"),
    "scale on an enum": ("    signal: GearPosition", "    signal: GearPosition\n    scale: 2"),
}


def loader_rejects_profile(tmp_path: Path, text: str) -> bool:
    path = tmp_path / "car.yaml"
    path.write_text(text)
    try:
        load_profile(path)
    except LoadError:
        return True
    return False


def test_good_profile_passes_both(tmp_path: Path) -> None:
    assert schema_errors("vehicle", as_json(GOOD_PROFILE)) == []
    assert not loader_rejects_profile(tmp_path, GOOD_PROFILE)


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_rejected_by_schema_and_loader(tmp_path: Path, case: str) -> None:
    old, new = BAD_PROFILES[case]
    assert old in GOOD_PROFILE
    text = GOOD_PROFILE.replace(old, new, 1)
    assert schema_errors("vehicle", as_json(text)), f"the schema accepts: {case}"
    assert loader_rejects_profile(tmp_path, text), f"the loader accepts: {case}"
