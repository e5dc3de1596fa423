"""Honest replays (#10, items 4, 8, 11): reasons for every unknown signal, unknown time in the summary,
a replay that decoded nothing is a failure, and a profile of a partial logger replays.

Real processes on real log files: the demo drive (written by gen-drive), and the CSS Electronics
GNSS and J1939 logs in ../shared/data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared

from safety import Engine
from safety.demo.drive import load_demo_dbc
from safety.replay.timeline import BUILTIN_PROBES, replay_file
from safety.vehicle.decode import write_raw
from safety.vehicle.e2e import seal as e2e_seal
from safety.vehicle.profile import load_profile


def drivegate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safety.cli", *args], capture_output=True, text=True)


def candump(path: Path, frames: list[tuple[float, int, bytes]]) -> Path:
    path.write_text("".join(f"({t:.6f}) can0 {fid:03X}#{data.hex().upper()}\n" for t, fid, data in frames))
    return path


def demo_frames(seconds: float, *, speed_bytes: int = 8, start: float = 0.0) -> list[tuple[float, int, bytes]]:
    """The demo sedan parked (P, 0 km/h), every 20 ms, sealed (counter, CRC); VEHICLE_SPEED cut to ``speed_bytes``."""
    db = load_demo_dbc()
    profile = load_profile(DEMO_VEHICLE)
    out = []
    for i in range(int(seconds / 0.02)):
        t = start + i * 0.02
        for name in ("VEHICLE_SPEED", "TRANSMISSION"):
            message = db.get_message_by_name(name)
            data = bytearray(message.encode({s.name: 0 for s in message.signals}))
            e2e_seal(
                profile.e2e[(message.frame_id, False)],
                data,
                i,
                lambda d, signal, raw, m=message: write_raw(d, m.get_signal_by_name(signal), raw),
            )
            out.append((t, message.frame_id, bytes(data[:speed_bytes] if name == "VEHICLE_SPEED" else data)))
    return out


def test_a_truncated_frame_says_so(tmp_path: Path) -> None:
    """The finding: a truncated frame was reported as "DBC marks it not available"."""
    log = candump(tmp_path / "short.log", demo_frames(1.0, speed_bytes=1))
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    summary = replay_file(engine, log, BUILTIN_PROBES, None)
    state = engine.state()
    assert state.values["speed"] is None
    # The counter and checksum (bytes 6 and 7) are cut off too: the frame cannot be verified.
    assert state.unknown["speed"] == "truncated frame: 1 bytes received, 8 needed"
    assert summary.truncated == {"speed": 50}
    assert summary.invalid == {}
    assert engine.counters["truncated"] == {"speed": 50}


def test_reasons_on_every_line_and_unknown_time_in_the_summary(tmp_path: Path) -> None:
    # Parked; the speed falls silent for a second (the gear still comes), then comes back.
    frames = demo_frames(3.0)
    frames = [f for f in frames if not (f[1] == 0xB4 and 1.0 <= f[0] < 2.0)]
    log = candump(tmp_path / "gap.log", frames)
    out = tmp_path / "timeline.jsonl"
    result = drivegate(
        "replay",
        str(log),
        "--vehicle",
        str(DEMO_VEHICLE),
        "--policy",
        str(DEFAULT_POLICY),
        "--reasons",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    stale = [line for line in lines if line["speed"] is None and line["t"] > 1.0]
    assert stale, lines
    assert stale[0]["unknown"]["speed"].startswith("stale: last frame 0.3")
    assert stale[0]["unknown"]["driving_state"] == "speed unknown"
    assert "accelerator_pedal" not in stale[0]["unknown"]  # unmapped: once, in the summary
    assert "unknown time per signal: " in result.stderr
    per_signal = next(line for line in result.stderr.splitlines() if line.startswith("unknown time per signal: "))
    # Silent from 0.98 s, stale after 300 ms, back at 2.0 s, where the counter has jumped (frames were
    # lost): two frames (20 ms) unknown until the E2E check trusts the message again.
    assert "speed integrity 0.0 s, stale 0.7 s" in per_signal
    assert "not mapped by the profile (always unknown): accelerator_pedal, eyes_on_road" in result.stderr


def test_a_replay_that_decodes_nothing_fails_and_says_what_it_saw(tmp_path: Path) -> None:
    log = candump(tmp_path / "other-car.log", [(i * 0.01, 0x123, bytes(8)) for i in range(100)])
    result = drivegate("replay", str(log), "--vehicle", str(DEMO_VEHICLE), "--policy", str(DEFAULT_POLICY))
    assert result.returncode == 1
    assert "frames read: 100, decoded: 0" in result.stderr
    warning = result.stderr.splitlines()[-1]
    assert warning.startswith(f"warning: {log}: no frame matched the vehicle profile, nothing was decoded")
    assert "the log has channels can0 and ids 0x123." in warning
    assert "The profile reads 0x025, 0x0A4, 0x0B4, 0x1F5, 0x3B3;" in warning


def test_a_wrong_bus_channel_is_a_failure(tmp_path: Path) -> None:
    profile = tmp_path / "car.yaml"
    text = DEMO_VEHICLE.read_text().replace("dbc: demo_sedan.dbc", f"dbc: {ROOT / 'dbc' / 'demo_sedan.dbc'}")
    text = text.replace("    signal: VehicleSpeed\n", "    signal: VehicleSpeed\n    bus: can7\n")
    profile.write_text(text)
    log = candump(tmp_path / "drive.log", demo_frames(0.5))
    result = drivegate("replay", str(log), "--vehicle", str(profile), "--policy", str(DEFAULT_POLICY))
    assert result.returncode == 1
    assert "0x0B4 on can7" in result.stderr.splitlines()[-1]


def test_the_css_j1939_log_without_pgn_matching_is_a_silent_replay_failure(tmp_path: Path) -> None:
    log = shared("css_electronics_mf4", "j1939_11111111_00000012_00000001.MF4")
    dbc = shared("css_electronics_mf4", "CSS-Electronics-SAE-J1939-DEMO.dbc")
    profile = tmp_path / "truck.yaml"
    profile.write_text(
        f"dbc: {dbc}\nsignals:\n  speed: {{message: CCVS1, signal: WheelBasedVehicleSpeed, max_age_ms: 500}}\n"
    )
    result = drivegate("replay", str(log), "--vehicle", str(profile), "--policy", str(DEFAULT_POLICY))
    assert result.returncode == 1
    assert "no frame matched the vehicle profile" in result.stderr
    assert "The profile reads 0x18FEF1FE;" in result.stderr.splitlines()[-1]


def test_a_gnss_logger_that_records_only_speed_replays(tmp_path: Path) -> None:
    """#10 item 11: gear and steering unmapped: a load warning each, and the replay runs, fail closed."""
    log = shared("css_electronics_mf4", "gnss_2F6913DB_00001089_00000001-63BEF5CD.MF4")
    dbc = shared("css_electronics_mf4", "gnss.dbc")
    profile = tmp_path / "gnss.yaml"
    profile.write_text(
        f"dbc: {dbc}\nsignals:\n  speed: {{message: 0x17, signal: Speed, scale: 3.6, max_age_ms: 3000}}\n"
    )
    out = tmp_path / "timeline.jsonl"
    result = drivegate(
        "replay",
        str(log),
        "--vehicle",
        str(profile),
        "--policy",
        str(DEFAULT_POLICY),
        "--out",
        str(out),
        "--sample-every",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "does not map the required signal 'gear'" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(line["speed"] is not None and line["speed"] > 5 for line in lines)
    assert all(line["driving_state"] is None and line["decisions"]["video"] == "deny" for line in lines)
