"""Static analysis over the whole state × request space, and policy comparison: exact messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEFAULT_POLICY, SPEED_BANDS_POLICY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import LoadError, load_policy
from safety.policy import CompiledPolicy
from safety.workflow.analysis import analyze, compare

HEAD = "version: 1\nname: t\ndefault: deny\nrules:\n"
REF = "TEST-DOC §1.2"


def policy(tmp_path: Path, text: str, name: str = "p.yaml") -> CompiledPolicy:
    path = tmp_path / name
    path.write_text(text)
    return load_policy(path)


def found(tmp_path: Path, text: str, **kwargs: Any) -> list[str]:
    p = policy(tmp_path, text)
    return [str(f).replace(str(tmp_path) + "/", "") for f in analyze(p, **kwargs).findings if f.code != "gap"]


def test_unreachable_rule_contradiction_and_impossible_state(tmp_path: Path) -> None:
    text = f"""{HEAD}  - id: both
    ref: {REF}
    when: {{content: video, not: {{content: video}}}}
    outcome: deny
  - id: parked-in-drive
    ref: {REF}
    when: {{driving_state: parked, gear: D}}
    outcome: allow
  - id: ok
    ref: {REF}
    when: {{content: text}}
    outcome: allow
"""
    assert found(tmp_path, text) == [
        "p.yaml:5:5: unreachable-rule: rule 'both' can never apply: its condition holds in no state and request "
        "that can occur",
        "p.yaml:9:5: unreachable-rule: rule 'parked-in-drive' can never apply: its condition holds in no state and "
        "request that can occur",
    ]


def test_workload_cannot_be_low_while_a_trigger_is_on(tmp_path: Path) -> None:
    text = f"""version: 1
name: t
default: deny
state:
  workload:
    high_when:
      - {{signal: gear, in: [R]}}
rules:
  - id: low-reversing
    ref: {REF}
    when: {{workload: low, gear: R}}
    outcome: allow
  - id: high-parked
    ref: {REF}
    when: {{workload: high, gear: P}}
    outcome: allow
"""
    # Without a hold, workload is high only while reversing: high in P is impossible too.
    assert [f.split(": ")[1] + " " + f.split("'")[1] for f in found(tmp_path, text)] == [
        "unreachable-rule low-reversing",
        "unreachable-rule high-parked",
    ]


def test_shadowed_and_redundant(tmp_path: Path) -> None:
    text = f"""{HEAD}  - id: no-video
    ref: {REF}
    when: {{content: video}}
    outcome: deny
  - id: no-video-moving
    ref: {REF}
    when: {{content: video, driving_state: moving}}
    outcome: deny
  - id: voice
    ref: {REF}
    when: {{modality: voice}}
    outcome: allow
  - id: deny-manual
    ref: {REF}
    when: {{modality: manual}}
    outcome: deny
"""
    assert found(tmp_path, text) == [
        "p.yaml:9:5: shadowed-rule: rule 'no-video-moving' is shadowed by rule 'no-video' (line 5): wherever it "
        "applies, that rule alone already decides the same, so removing it changes no decision",
        "p.yaml:13:5: conflict: rules 'voice' (allow) and 'no-video' (deny, line 5) overlap and neither's condition "
        "implies the other's: where both hold only the combination (most restrictive wins) decides, e.g. state "
        "{driving_state: parked} request {content: video, modality: voice} -> deny",
        "p.yaml:13:5: conflict: rules 'voice' (allow) and 'no-video-moving' (deny, line 9) overlap and neither's "
        "condition implies the other's: where both hold only the combination (most restrictive wins) decides, e.g. "
        "state {driving_state: moving} request {content: video, modality: voice} -> deny",
        # deny-manual only repeats the default: redundant, and no single rule accounts for it.
        "p.yaml:17:5: redundant-rule: rule 'deny-manual' is redundant: wherever it applies, the decision is the "
        "same without it",
    ]


def test_conflict_only_for_partial_overlap_with_different_outcomes(tmp_path: Path) -> None:
    text = f"""{HEAD}  - id: moving-visual
    ref: {REF}
    when: {{driving_state: moving, modality: visual}}
    outcome: allow
  - id: long-text
    ref: {REF}
    when: {{driving_state: moving, modality: visual, text_length: {{gt: 120}}}}
    outcome: degrade
    constraints: {{max_text_length: 120}}
  - id: video
    ref: {REF}
    when: {{content: video}}
    outcome: deny
"""
    # long-text implies moving-visual (a refinement): no conflict; video overlaps both partially.
    assert found(tmp_path, text) == [
        "p.yaml:14:5: conflict: rules 'video' (deny) and 'moving-visual' (allow, line 5) overlap and neither's "
        "condition implies the other's: where both hold only the combination (most restrictive wins) decides, e.g. "
        "state {driving_state: moving} request {content: video, modality: visual, text_length: 0} -> deny",
        "p.yaml:14:5: conflict: rules 'video' (deny) and 'long-text' (degrade, line 9) overlap and neither's "
        "condition implies the other's: where both hold only the combination (most restrictive wins) decides, e.g. "
        "state {driving_state: moving} request {content: video, modality: visual, text_length: 121} -> deny",
    ]


def test_gaps_grouped_with_examples(tmp_path: Path) -> None:
    text = f"""version: 1
name: t
default: {{outcome: deny, reason: nothing permits it}}
rules:
  - id: parked
    ref: {REF}
    when: {{driving_state: parked}}
    outcome: allow
  - id: voice
    ref: {REF}
    when: {{modality: [voice, audio]}}
    outcome: allow
  - id: critical
    ref: {REF}
    when: {{priority: critical}}
    exception: true
    outcome: degrade
    constraints: {{modality: voice}}
"""
    p = policy(tmp_path, text)
    gaps = [str(f).replace(str(tmp_path) + "/", "") for f in analyze(p).findings if f.code == "gap"]
    assert gaps == [
        "p.yaml:1:1: gap: no rule applies to driving_state: [stationary, moving], modality: [visual, manual], "
        "priority: [high, normal, low] (12 of 48 cells); the default decides: deny; e.g. state {driving_state: "
        "stationary} request {modality: visual, priority: high}",
        "p.yaml:1:1: gap: no rule applies to driving_state: [stationary, moving], modality: [visual, manual], "
        "priority: critical (4 of 48 cells); the default decides: deny, capped by exception 'critical' -> degrade "
        "{modality: voice}; e.g. state {driving_state: stationary} request {modality: visual, priority: critical}",
    ]
    limited = [str(f).split(": ", 1)[1] for f in analyze(p, max_examples=1).findings if f.code == "gap"]
    assert (
        limited[1] == "gap: 1 more group(s) of cells where no rule applies (4 of 48 cells) not shown (--max-examples 1)"
    )


def test_numeric_gap_is_described_as_intervals(tmp_path: Path) -> None:
    text = f"""{HEAD}  - id: short
    ref: {REF}
    when: {{text_length: {{le: 30}}}}
    outcome: allow
  - id: long
    ref: {REF}
    when: {{text_length: {{gt: 120}}}}
    outcome: degrade
    constraints: {{max_text_length: 120}}
"""
    p = policy(tmp_path, text)
    gaps = [f.message for f in analyze(p).findings if f.code == "gap"]
    assert gaps == [
        "no rule applies to text_length in (30, 120] (2 of 5 cells); the default decides: deny; "
        "e.g. request {text_length: 31}"
    ]


def test_thresholds_hysteresis_and_refs(tmp_path: Path) -> None:
    text = """version: 1
name: t
default: deny
state:
  standstill: {on_below: 0.5, off_above: 1.0}
  workload:
    high_when:
      - {signal: steering_angle, abs: true, on_above: 2000, off_below: 1998}
rules:
  - id: fast
    ref: AAOS
    when: {speed: {gt: 500}, text_length: {lt: -1}}
    outcome: deny
"""
    assert found(tmp_path, text) == [
        "p.yaml:5:15: narrow-hysteresis: state.standstill: on_below (0.5) and off_above (1) are 0.5 km/h apart, under "
        "1 km/h: wheel-speed noise will make driving_state flap",
        "p.yaml:8:9: threshold-out-of-range: state.workload.high_when[0].on_above: 2000 deg is outside the physical "
        "range of |steering_angle| (0..1800 deg)",
        "p.yaml:8:9: threshold-out-of-range: state.workload.high_when[0].off_below: 1998 deg is outside the physical "
        "range of |steering_angle| (0..1800 deg)",
        "p.yaml:8:9: narrow-hysteresis: state.workload.high_when[0]: on_above (2000) and off_below (1998) are 2 deg "
        "apart, under 5 deg: steering_angle noise will make workload flap",
        "p.yaml:10:5: weak-ref: rule 'fast': ref 'AAOS' is too short to name a clause (4 characters, fewer than 8); "
        "give the document and the clause, e.g. 'NHTSA-VM §V.F(a)'",
        "p.yaml:10:5: unreachable-rule: rule 'fast' can never apply: its condition holds in no state and request "
        "that can occur",
        "p.yaml:12:20: threshold-out-of-range: rule 'fast': speed gt 500 km/h is outside the physical range of speed "
        "(-60..400 km/h); values there are implausible and read as unknown",
        "p.yaml:12:44: threshold-out-of-range: rule 'fast': text_length lt -1: request numbers are whole numbers >= 0",
    ]


def test_shipped_policies_have_only_intended_findings() -> None:
    for path in (DEFAULT_POLICY, SPEED_BANDS_POLICY):
        result = analyze(load_policy(path))
        assert result.mode == "whole-space"
        # Gaps under a deny default are the design (declared in lint.ignore); every conflict
        # is a lock-out or hold declared with `overrides`.
        assert {f.code for f in result.findings} == {"gap"}, [str(f) for f in result.findings]


OVERLAP = f"""{HEAD}  - id: moving-visual
    ref: {REF}
    when: {{driving_state: moving, modality: visual}}
    outcome: allow
  - id: video
    ref: {REF}
    when: {{content: video}}
    outcome: deny
  - id: reversing
    ref: {REF}
    when: {{gear: R}}
    outcome: defer
"""


def test_declared_overrides_silence_intended_conflicts_only(tmp_path: Path) -> None:
    undeclared = found(tmp_path, OVERLAP)
    assert [f.split(": ")[1] for f in undeclared] == ["conflict", "conflict", "conflict"]
    declared = OVERLAP.replace(
        "    outcome: deny\n", "    outcome: deny\n    overrides: [moving-visual, reversing]\n"
    ).replace("    outcome: defer\n", "    outcome: defer\n    overrides: [moving-visual]\n")
    assert found(tmp_path, declared) == []
    # Per rule (as for a large space) the declarations are honoured the same way.
    assert found(tmp_path, declared, whole_space=False) == []


def test_wrong_and_stale_overrides_are_reported(tmp_path: Path) -> None:
    text = (
        OVERLAP.replace("    outcome: allow\n", "    outcome: allow\n    overrides: [video]\n")
        + f"""  - id: parked-video
    ref: {REF}
    when: {{driving_state: parked, content: video}}
    outcome: allow
  - id: moving-only
    ref: {REF}
    when: {{driving_state: moving}}
    outcome: deny
    overrides: [parked-video]
"""
    )
    expected_ineffective = (
        "p.yaml:9:17: override-ineffective: rule 'moving-visual' (allow) declares it overrides 'video' (deny, line "
        "10), but where both hold the more restrictive 'video' decides (most restrictive wins), e.g. state "
        "{driving_state: moving, gear: R} request {content: video, modality: visual}"
    )
    expected_unused = (
        "p.yaml:26:17: override-unused: rule 'moving-only' declares it overrides 'parked-video', but the two never "
        "hold together"
    )
    whole = [f for f in found(tmp_path, text) if "override" in f]
    assert whole == [expected_ineffective + " -> deny", expected_unused]
    split = [f for f in found(tmp_path, text, whole_space=False) if "override" in f]
    # Rule by rule the example is the first overlap found, and no verdict is computed for it.
    assert split == [expected_ineffective.replace(", gear: R", ""), expected_unused]


def test_overrides_must_name_other_rules_of_the_policy(tmp_path: Path) -> None:
    text = OVERLAP.replace("    outcome: deny\n", "    outcome: deny\n    overrides: [video, no-such-rule, 7]\n")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(LoadError) as caught:
        load_policy(path)
    assert [str(e).replace(str(tmp_path) + "/", "") for e in caught.value.errors] == [
        "p.yaml:13:17: unknown-rule: rule 'video' cannot override itself",
        "p.yaml:13:24: unknown-rule: rule 'video' overrides 'no-such-rule', which is not a rule of this policy",
        "p.yaml:13:38: expected-type: rule 'video'.overrides[2] must be a non-empty string, got int 7",
    ]


def test_rule_by_rule_agrees_with_whole_space(tmp_path: Path) -> None:
    p = policy(tmp_path, DEFAULT_POLICY.read_text())
    whole = analyze(p)
    split = analyze(p, whole_space=False)
    assert split.mode == "per-rule" and split.notes
    key = lambda f: (f.code, f.location.line)  # noqa: E731
    same = {"unreachable-rule", "conflict", "gap"}
    assert sorted(key(f) for f in split.findings if f.code in same) == sorted(
        key(f) for f in whole.findings if f.code in same
    )


# ---------------------------------------------------------------------- compare
BASE = f"""version: 1
name: base
default: deny
rules:
  - id: parked
    ref: {REF}
    when: {{driving_state: parked}}
    outcome: allow
  - id: voice
    ref: {REF}
    when: {{driving_state: {{ne: parked}}, modality: voice}}
    outcome: allow
  - id: long-text
    ref: {REF}
    when: {{driving_state: {{ne: parked}}, modality: visual, text_length: {{gt: 30}}}}
    outcome: degrade
    constraints: {{modality: voice}}
"""


def test_compare_equivalent_after_reordering(tmp_path: Path) -> None:
    doc = yaml.safe_load(BASE)
    doc["rules"].reverse()
    old = policy(tmp_path, BASE, "old.yaml")
    new = policy(tmp_path, yaml.safe_dump(doc), "new.yaml")
    result = compare(old, new)
    assert (result.result, result.examples) == ("equivalent", [])
    assert result.lines() == [f"{new.file}: compare: equivalent to {old.file}: all 36 cells decided the same"]


def test_compare_more_and_less_permissive(tmp_path: Path) -> None:
    # Degrading long text from 30 characters instead of 60 lets text of 31..60 through by voice
    # where the default used to deny it.
    old = policy(tmp_path, BASE.replace("text_length: {gt: 30}", "text_length: {gt: 60}"), "old.yaml")
    looser = policy(tmp_path, BASE, "new.yaml")
    result = compare(old, looser)
    assert result.result == "more-permissive"
    assert [line.replace(str(tmp_path) + "/", "") for line in result.lines()] == [
        "new.yaml: compare: more-permissive than old.yaml: 4 of 60 cells decided differently (4 looser, 0 stricter, "
        "0 different)",
        "new.yaml: compare: looser: state {driving_state: stationary} request {modality: visual, text_length: 31}: "
        "deny (default) -> degrade {modality: voice} (long-text)",
    ]
    assert compare(looser, old).result == "less-permissive"


def test_compare_mixed_and_constraint_strictness(tmp_path: Path) -> None:
    old = policy(tmp_path, BASE, "old.yaml")
    new_text = BASE.replace("constraints: {modality: voice}", "constraints: {max_text_length: 30}").replace(
        "modality: voice}\n    outcome: allow", "modality: [voice, audio]}\n    outcome: allow"
    )
    new = policy(tmp_path, new_text, "new.yaml")
    result = compare(old, new)
    assert result.result == "mixed"
    assert {d.direction for d in result.examples} == {"looser", "different"}
    # audio joins voice while driving (2 driving states × 3 text cells); long text is cut instead of
    # read aloud: neither is stricter than the other.
    assert result.differing == {"different": 2, "looser": 6}


def test_compare_different_state_sections(tmp_path: Path) -> None:
    old = policy(tmp_path, BASE, "old.yaml")
    wider = BASE.replace("rules:", "state:\n  standstill: {on_below: 3, off_above: 5}\nrules:")
    result = compare(old, policy(tmp_path, wider, "new.yaml"))
    assert result.result == "equivalent"  # the rules never tell stationary from moving
    assert result.notes and "(old)/(new)" in result.notes[0]


# ---------------------------------------------------------------------- properties
FIELDS: dict[str, Any] = {
    "driving_state": st.sampled_from(["parked", "stationary", "moving", {"ne": "parked"}]),
    "workload": st.sampled_from(["low", "high"]),
    "content": st.sampled_from(["text", "video", "list", ["text", "list"], {"not_in": ["video"]}]),
    "modality": st.sampled_from(["visual", "voice", ["voice", "audio"]]),
    "priority": st.sampled_from(["critical", {"ne": "critical"}]),
    "text_length": st.builds(lambda op, n: {op: n}, st.sampled_from(["gt", "le"]), st.sampled_from([10, 30, 60])),
    "speed": st.builds(lambda op, n: {op: n}, st.sampled_from(["gt", "lt"]), st.sampled_from([5.0, 30.0])),
}
CONSTRAINTS = {
    "allow": None,
    "deny": None,
    "degrade": st.sampled_from([{"modality": "voice"}, {"max_text_length": 30}, {"input": "voice"}]),
    "defer": st.sampled_from([{"retry_after_ms": 1000}, {"retry_after_ms": 3000, "until": "calm"}]),
}


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True))
    when = {name: draw(FIELDS[name]) for name in names}
    outcome = draw(st.sampled_from(sorted(CONSTRAINTS)))
    rule: dict[str, Any] = {"id": f"r{index}", "ref": REF, "when": when, "outcome": outcome}
    if CONSTRAINTS[outcome] is not None:
        rule["constraints"] = draw(CONSTRAINTS[outcome])
    if outcome == "degrade" and draw(st.booleans()) and draw(st.booleans()):
        rule["exception"] = True
    return rule


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 5))
    doc: dict[str, Any] = {
        "version": 1,
        "name": "h",
        "default": draw(st.sampled_from(["deny", "allow"])),
        "rules": [draw(rules(i)) for i in range(count)],
    }
    if draw(st.booleans()):
        doc["state"] = {
            "workload": {"hold_ms": draw(st.sampled_from([0, 2000])), "high_when": [{"signal": "gear", "in": ["R"]}]}
        }
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=policies())
def test_self_compare_is_equivalent_and_removing_redundant_rules_changes_nothing(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    p = policy(tmp_path, yaml.safe_dump(doc), "a.yaml")
    assert compare(p, p).result == "equivalent"
    result = analyze(p)
    for finding in result.findings:
        if finding.code not in ("redundant-rule", "shadowed-rule", "unreachable-rule"):
            continue
        rule_id = finding.message.split("'")[1]
        smaller = dict(doc, rules=[r for r in doc["rules"] if r["id"] != rule_id])
        without = policy(tmp_path, yaml.safe_dump(smaller), "b.yaml")
        assert compare(p, without).result == "equivalent", (finding.message, doc)
    # Rule by rule finds the same unreachable rules and conflicts as the whole-space walk.
    key = lambda f: (f.code, f.message.split("'")[1])  # noqa: E731
    wanted = {"unreachable-rule", "conflict"}
    split = analyze(p, whole_space=False)
    assert sorted(key(f) for f in split.findings if f.code in wanted) == sorted(
        key(f) for f in result.findings if f.code in wanted
    )
