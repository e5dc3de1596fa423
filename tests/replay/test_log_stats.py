"""``drivegate log-stats``: what a log's traffic says about a profile's message rates and max_age_ms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_VEHICLE, ROOT, shared

from safety.cli.gen_drive import DEFAULT_START_TIME, candump_lines, write_log
from safety.faults import Injector, parse_fault
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay.logstats import format_stats, log_stats
from safety.vehicle.profile import load_profile


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    with path.open("w", encoding="ascii") as out:
        write_log(out, candump_lines(start_time=DEFAULT_START_TIME, channel="can0", frames=None))
    return path


def stats_of(log: Path, profile: Path = DEMO_VEHICLE) -> dict[str, dict[str, object]]:
    return {s.message: s.summary() for s in log_stats(load_profile(profile), read_log(log, on_error=None))}


def test_the_demo_drive_traffic_is_measured_per_message(drive: Path) -> None:
    stats = stats_of(drive)
    assert list(stats) == ["VEHICLE_SPEED", "TRANSMISSION", "STEERING", "BODY_STATUS [BodyMux 0]", "BRAKE"]
    speed = stats["VEHICLE_SPEED"]
    assert (speed["frames"], speed["lengths"], speed["channels"]) == (6800, {8: 6800}, {"can0": 6800})
    assert speed["rate_hz"] == pytest.approx(50.0, abs=0.05)
    assert speed["period_ms"] == pytest.approx(20.0, abs=0.01)
    assert 20.0 <= speed["largest_gap_ms"] <= 21.0  # type: ignore[operator]
    assert (speed["suggested_max_age_ms"], speed["max_age_ms"], speed["stale_gaps"]) == (50.0, 300.0, 0)
    assert stats["STEERING"]["signals"] == ["steering_angle", "steering_rate"]
    # A multiplexed message counts only the page that carries the signals: 10 Hz, not the 20 Hz of both pages.
    body = stats["BODY_STATUS [BodyMux 0]"]
    assert (body["frames"], body["channels"]) == (1360, {"can0": 1360})
    assert body["period_ms"] == pytest.approx(100.0, abs=0.01)
    _, warnings = format_stats(log_stats(load_profile(DEMO_VEHICLE), read_log(drive, on_error=None)))
    assert warnings == []


def test_a_gap_longer_than_max_age_and_short_frames_are_shown(drive: Path, tmp_path: Path) -> None:
    faulty = tmp_path / "faulty.log"
    specs = ["drop:STEERING@30+0.5", "truncate:VEHICLE_SPEED@40+1,length=3", "drop:TRANSMISSION@60+2"]
    injector = Injector([parse_fault(s) for s in specs], load_profile(DEMO_VEHICLE))
    write_frames(faulty, injector.run(read_log(drive, on_error=None)))
    stats = stats_of(faulty)
    steering = stats["STEERING"]
    assert steering["largest_gap_ms"] == pytest.approx(510.0, abs=1.0)
    assert steering["largest_gap_at_s"] == pytest.approx(29.99, abs=0.02)
    assert steering["stale_gaps"] == 1 and steering["suggested_max_age_ms"] == 30.0  # one dropout sets no limit
    assert stats["VEHICLE_SPEED"]["lengths"] == {3: 50, 8: 6750}
    # A 10 Hz message with one 2 s dropout in 1,340 gaps: the dropout does not set the suggestion.
    gear = stats["TRANSMISSION"]
    assert gear["largest_gap_ms"] == pytest.approx(2100.0, abs=1.0) and gear["suggested_max_age_ms"] == 260.0
    _, warnings = format_stats(log_stats(load_profile(DEMO_VEHICLE), read_log(faulty, on_error=None)))
    assert warnings == [
        "TRANSMISSION (0x1F5): max_age_ms 300 is shorter than 1 gap(s) of this log's traffic (largest 2099.6 ms): "
        "gear would go stale; 260 suggested",
        "STEERING (0x025): max_age_ms 100 is shorter than 1 gap(s) of this log's traffic (largest 510.0 ms): "
        "steering_angle, steering_rate would go stale; 30 suggested",
    ]


def test_frames_on_a_bus_the_profile_does_not_read_are_counted_apart(drive: Path, tmp_path: Path) -> None:
    profile = tmp_path / "car.yaml"
    text = DEMO_VEHICLE.read_text(encoding="utf-8").replace(
        "dbc: demo_sedan.dbc", f"dbc: {DEMO_VEHICLE.parent / 'demo_sedan.dbc'}"
    )
    profile.write_text(
        text.replace("    max_age_ms: 300              # older", "    bus: can1\n    max_age_ms: 300  # older")
    )
    speed = stats_of(drive, profile)["VEHICLE_SPEED"]
    assert (speed["frames"], speed["frames_on_other_buses"], speed["bus"]) == (0, 6800, "can1")
    _, warnings = format_stats(log_stats(load_profile(profile), read_log(drive, on_error=None)))
    assert warnings == ["VEHICLE_SPEED (0x0B4): no frames in this log: speed never known"]


def test_a_real_rav4_log(tmp_path: Path) -> None:
    log = shared("comma2k19_rav4_2017", "comma2k19_rav4_2018-08-02_seg40.log.gz")
    stats = stats_of(log, ROOT / "tests" / "profiles" / "rav4_2017.yaml")
    speed = stats["SPEED"]
    assert (speed["frames"], speed["lengths"]) == (2487, {8: 2487})
    assert speed["period_ms"] == pytest.approx(23.8, abs=0.1)
    assert stats["GEAR_PACKET"]["period_ms"] == pytest.approx(1022.9, abs=0.5)


@pytest.mark.slow
def test_the_command_prints_text_or_json_and_exits_1_on_warnings(drive: Path, tmp_path: Path) -> None:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "safety.cli", "log-stats", *map(str, args)],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip

    clean = run(drive, "--vehicle", "demo-sedan")
    assert (clean.returncode, clean.stderr) == (0, "")
    assert clean.stdout.splitlines()[:4] == [
        "VEHICLE_SPEED (0x0B4) -> speed",
        clean.stdout.splitlines()[1],
        "  lengths 8 B x6800; channels can0 x6800",
        "  max_age_ms 300 in the profile, 50 suggested",
    ]
    assert clean.stdout.splitlines()[1].startswith("  frames 6800, rate 50.0 Hz, period 20.0 ms, largest gap ")
    faulty = tmp_path / "faulty.log"
    injector = Injector([parse_fault("drop:BRAKE@10+1")], load_profile(DEMO_VEHICLE))
    write_frames(faulty, injector.run(read_log(drive, on_error=None)))
    found = run(faulty, "--vehicle", "demo-sedan", "--format", "json")
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [m["message"] for m in report["messages"]][-1] == "BRAKE"
    assert report["warnings"] == [found.stderr.strip().removeprefix("warning: ")]
    assert report["warnings"][0].startswith("BRAKE (0x0A4): max_age_ms 100 is shorter than 1 gap(s)")
