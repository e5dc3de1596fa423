"""drivegate whatif: two policies over recorded drives, checked against what each replay says alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared

from safety import Engine
from safety.replay.columnar import replay_columnar
from safety.replay.timeline import BUILTIN_PROBES
from safety.replay.whatif import LOOSER, STRICTER, compare_drive, what_if

RAV4_TSS2 = ROOT / "tests" / "profiles" / "rav4_tss2.yaml"


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


def variant(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The default policy with text replaced (each edit must apply)."""
    text = DEFAULT_POLICY.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


# Video allowed whenever the car stands still, in any gear: looser than NHTSA's "stopped and in Park".
STANDING_VIDEO = (
    ("when: {driving_state: parked}\n    outcome: allow", "when: {driving_state: {in: [parked, stationary]}}\n    outcome: allow"),
    ("when: {driving_state: {ne: parked}, content: video}", "when: {driving_state: moving, content: video}"),
)
# Nothing allowed outright when parked: stricter.
NO_PARKED_ALLOW = (("when: {driving_state: parked}\n    outcome: allow", "when: {driving_state: parked, content: none}\n    outcome: allow"),)


def state_seconds(log: Path, policy: Path) -> dict[str, float]:
    return replay_columnar(Engine.load(DEMO_VEHICLE, policy), log, BUILTIN_PROBES, None).state_seconds


def test_the_same_policy_differs_nowhere(drive_log: Path) -> None:
    result = what_if(DEMO_VEHICLE, DEFAULT_POLICY, DEFAULT_POLICY, [drive_log], BUILTIN_PROBES)
    assert result.intervals == [] and not result.looser
    assert result.seconds == pytest.approx(136.0, abs=0.5)


def test_video_while_standing_is_looser_exactly_while_stationary(drive_log: Path, tmp_path: Path) -> None:
    new = variant(tmp_path, "standing-video", *STANDING_VIDEO)
    result = what_if(DEMO_VEHICLE, DEFAULT_POLICY, new, [drive_log], BUILTIN_PROBES)
    assert result.looser
    video = [i for i in result.intervals if i.probe == "video"]
    assert video and all(i.direction == LOOSER and i.old == "deny" and i.new in ("allow", "defer") for i in video)
    assert all(i.state["driving_state"] == "stationary" for i in video)
    # Exactly the time the replay spent standing still (in D), by the replay's own accounting.
    stationary = state_seconds(drive_log, new)["stationary"]
    assert sum(i.seconds for i in video) == pytest.approx(stationary, abs=1e-6)
    # Nothing gets stricter, and what got looser did so only while standing still.
    assert all(i.direction == LOOSER and i.state["driving_state"] == "stationary" for i in result.intervals)
    totals = result.totals()
    assert totals[STRICTER] == {}
    assert sum(totals[LOOSER]["video"].values()) == pytest.approx(stationary, abs=1e-6)


def test_no_allow_when_parked_is_stricter_only_when_parked(drive_log: Path, tmp_path: Path) -> None:
    new = variant(tmp_path, "strict-parked", *NO_PARKED_ALLOW)
    result = what_if(DEMO_VEHICLE, DEFAULT_POLICY, new, [drive_log], BUILTIN_PROBES)
    assert not result.looser
    # Parked, or (the first 38 ms) nothing known yet: the old policy's parked rule might have applied.
    assert result.intervals and all(i.direction == STRICTER for i in result.intervals)
    assert {i.state["driving_state"] for i in result.intervals} == {"parked", None}
    parked = state_seconds(drive_log, new)["parked"]
    video = sum(i.seconds for i in result.intervals if i.probe == "video")
    assert video == pytest.approx(parked, abs=1e-6)  # allowed when parked before, never now
    assert "chime" not in {i.probe for i in result.intervals}  # content none: still allowed


def test_intervals_split_where_the_outcome_pair_changes() -> None:
    old = [
        {"t": 0.0, "decisions": {"p": "deny"}},
        {"t": 1.0, "decisions": {"p": "deny"}},
        {"t": 2.0, "decisions": {"p": "allow"}},
    ]
    new = [
        {"t": 0.0, "decisions": {"p": "allow"}, "speed": 5.0, "gear": "D", "driving_state": "moving", "workload": "low"},
        {"t": 0.5, "decisions": {"p": "defer"}, "speed": 6.0, "gear": "D", "driving_state": "moving", "workload": "high"},
        {"t": 3.0, "decisions": {"p": "allow"}},
    ]
    got = [(i.start, i.end, i.old, i.new, i.direction, i.state["speed"]) for i in compare_drive("x", old, new, 4.0)]
    assert got == [
        (0.0, 0.5, "deny", "allow", LOOSER, 5.0),
        (0.5, 2.0, "deny", "defer", LOOSER, 6.0),
        (2.0, 3.0, "allow", "defer", STRICTER, None),
    ]


def whatif_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safety.cli", "whatif", *args], capture_output=True, text=True, timeout=300)


def test_cli_gate_exit_codes_and_out_dir(drive_log: Path, tmp_path: Path) -> None:
    looser = variant(tmp_path, "standing-video", *STANDING_VIDEO)
    stricter = variant(tmp_path, "strict-parked", *NO_PARKED_ALLOW)
    second = tmp_path / "again.log"
    second.write_bytes(drive_log.read_bytes())
    out = tmp_path / "out"
    result = whatif_cli(str(DEFAULT_POLICY), str(looser), str(drive_log), str(second), "--vehicle", "demo-sedan", "--out", str(out))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("NEW IS LOOSER in ")  # looser comes first
    assert "  video: deny -> allow: " in result.stdout
    assert lines[-2].startswith(f"drive {drive_log}: 136.0 s, ") and lines[-1].startswith(f"drive {second}: 136.0 s, ")
    intervals = [json.loads(line) for line in (out / "intervals.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["looser"] is True and len(summary["drives"]) == 2
    assert {i["log"] for i in intervals} == {str(drive_log), str(second)}
    assert set(intervals[0]) == {"log", "probe", "start", "end", "seconds", "old", "new", "direction", "state"}
    per_log = {log: [i for i in intervals if i["log"] == log] for log in (str(drive_log), str(second))}
    assert [(i["probe"], i["start"], i["old"], i["new"]) for i in per_log[str(drive_log)]] == [
        (i["probe"], i["start"], i["old"], i["new"]) for i in per_log[str(second)]
    ]
    video = summary["totals"]["looser"]["video"]
    assert sum(v["seconds"] for v in video.values()) == pytest.approx(2 * state_seconds(drive_log, looser)["stationary"], abs=1e-5)

    result = whatif_cli("default", str(stricter), str(drive_log), "--vehicle", "demo-sedan")
    assert result.returncode == 0, result.stderr
    assert "NEW IS LOOSER: nowhere" in result.stdout and "NEW is stricter in " in result.stdout

    missing = whatif_cli("default", "default", str(tmp_path / "missing.log"), "--vehicle", "demo-sedan")
    assert missing.returncode == 2
    assert "missing.log" in missing.stderr


def test_speed_band_thresholds_on_a_real_drive() -> None:
    log = shared("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz")
    result = what_if(RAV4_TSS2, DEFAULT_POLICY, ROOT / "policies" / "speed-bands.yaml", [log], BUILTIN_PROBES)
    assert result.seconds > 60
    # Every interval's outcomes are what each policy's own replay said at that time.
    lines = {}
    for policy in (DEFAULT_POLICY, ROOT / "policies" / "speed-bands.yaml"):
        got: list[dict[str, object]] = []
        replay_columnar(Engine.load(RAV4_TSS2, policy), log, BUILTIN_PROBES, None, on_line=got.append)
        lines[policy.stem] = got

    def at(name: str, t: float, probe: str) -> object:
        current = [line for line in lines[name] if line["t"] <= t][-1]
        return current["decisions"][probe]  # type: ignore[index]

    assert result.intervals
    for interval in result.intervals:
        assert at("default", interval.start, interval.probe) == interval.old
        assert at("speed-bands", interval.start, interval.probe) == interval.new
