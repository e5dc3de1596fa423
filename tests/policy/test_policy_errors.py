"""Policy loading: every problem reported at file:line:col with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from safety import LoadError, load_policy


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(LoadError) as info:
        load_policy(path)
    return [str(e).replace(str(path), "p.yaml") for e in info.value.errors]


HEAD = "version: 1\nname: t\ndefault: deny\n"


def test_syntax_error_has_place(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "version: 1\nrules: [\n") == [
        "p.yaml:3:1: yaml-syntax: invalid YAML: did not find expected node content"
    ]


def test_all_problems_collected_and_sorted(tmp_path: Path) -> None:
    text = (
        HEAD
        + """rules:
  - id: a
    ref: x
    whne: {content: video}
    outcome: deny
  - id: b
    ref: x
    when: {content: vidoe, speeed: {gt: 3}}
    outcome: forbid
  - id: a
    ref: x
    outcome: allow
"""
    )
    assert errors_of(tmp_path, text) == [
        "p.yaml:7:5: unknown-key: unknown key 'whne' in rules[0]; expected one of: constraints, description, "
        "exception, id, outcome, overrides, reason, ref, when",
        "p.yaml:11:21: unknown-value: rule 'b'.when.content: 'vidoe' is not a value of this field; expected one of: "
        "text, image, video, list, keyboard, none",
        "p.yaml:11:28: unknown-field: unknown field 'speeed' in rule 'b'.when; expected a state or request field "
        "(speed, gear, steering_angle, steering_rate, parking_brake, turn_signal, brake_pressed, accelerator_pedal, "
        "eyes_on_road, driving_state, workload, app, kind, category, modality, content, priority, text_length, "
        "list_items) or one of: all, any, not",
        "p.yaml:12:14: unknown-value: rule 'b'.outcome must be one of: allow, degrade, defer, deny; got str 'forbid'",
        "p.yaml:13:5: duplicate-id: duplicate rule id 'a' (first at line 5)",
    ]


def test_inverted_hysteresis_and_missing_ref(tmp_path: Path) -> None:
    text = (
        HEAD
        + """state:
  standstill: {on_below: 3, off_above: 1}
  workload:
    high_when:
      - {signal: steering_angle, abs: true, on_above: 45, off_below: 90}
rules:
  - id: a
    outcome: deny
"""
    )
    assert errors_of(tmp_path, text) == [
        "p.yaml:5:15: inverted-hysteresis: state.standstill: off_above (1) must be above on_below (3), "
        "or the state would flap",
        "p.yaml:8:9: inverted-hysteresis: state.workload.high_when[0]: off_below (90) must be below on_above (45), "
        "or the state would flap",
        "p.yaml:10:5: missing-key: rules[0] lacks the required key 'ref'",
    ]


def test_bands_and_constraints(tmp_path: Path) -> None:
    text = (
        HEAD
        + """state:
  speed_bands:
    hysteresis: 5
    bands:
      - {name: slow, below: 3}
      - {name: fast, below: 50}
rules:
  - id: a
    ref: x
    outcome: degrade
    when: {speed_band: fast, text_length: {between: [10, 5]}}
  - id: b
    ref: x
    outcome: deny
    constraints: {modality: voice}
"""
    )
    assert errors_of(tmp_path, text) == [
        "p.yaml:8:22: narrow-band: state.speed_bands.bands[0] is 3 km/h wide, not wider than the hysteresis (5 km/h)",
        "p.yaml:9:22: bad-bands: state.speed_bands.bands[1]: the last band must be open-ended (no 'below')",
        "p.yaml:11:5: missing-key: rule 'a': a degrade rule needs 'constraints' saying how to degrade",
        "p.yaml:14:53: empty-range: rule 'a'.when.text_length.between: [10, 5) is empty; low must be below high",
        "p.yaml:18:18: bad-constraint: rule 'b': a deny rule takes no constraints",
    ]


def test_duplicate_keys_and_operators(tmp_path: Path) -> None:
    text = (
        HEAD
        + """rules:
  - id: a
    ref: x
    ref: y
    when: {gear: {gt: 3}}
    outcome: deny
"""
    )
    assert errors_of(tmp_path, text) == [
        "p.yaml:7:5: duplicate-key: duplicate key 'ref' (first at line 6)",
        "p.yaml:8:19: bad-operator: rule 'a'.when.gear.gt: 'gear' takes the operators eq, ne, in, not_in",
    ]


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert info.value.errors[0].code == "unreadable"
    assert errors_of(tmp_path, "") == ["p.yaml:1:1: empty-file: the file is empty"]


def test_shipped_policies_load() -> None:
    root = ROOT / "policies"
    for path in root.glob("*.yaml"):
        policy = load_policy(path)
        assert policy.rules and all(rule.ref for rule in policy.rules), path
