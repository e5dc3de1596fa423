"""drivegate replay: real log files, a real CLI process, a real virtual bus, real RAV4 logs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import can
import cantools
import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared

from safety import Engine
from safety.demo.drive import scripted_drive
from safety.replay.timeline import BUILTIN_PROBES, replay_file, replay_virtual

RAV4_2017 = ROOT / "tests" / "profiles" / "rav4_2017.yaml"
RAV4_TSS2 = ROOT / "tests" / "profiles" / "rav4_tss2.yaml"


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


def replay_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """``drivegate replay`` with the demo vehicle and default policy, as a real process."""
    command = [sys.executable, "-m", "safety.cli", "replay", *args]
    command += ["--vehicle", str(DEMO_VEHICLE), "--policy", str(DEFAULT_POLICY)]
    return subprocess.run(command, capture_output=True, text=True, check=check)


def timeline(
    log: Path, vehicle: Path = DEMO_VEHICLE, *, virtual: bool = False, **kw: object
) -> list[dict[str, object]]:
    out = io.StringIO()
    engine = Engine.load(vehicle, DEFAULT_POLICY)
    if virtual:
        replay_virtual(engine, log, BUILTIN_PROBES, out, speed=0, **kw)  # type: ignore[arg-type]
    else:
        replay_file(engine, log, BUILTIN_PROBES, out, **kw)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_cli_replay_of_the_demo_drive(drive_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "timeline.jsonl"
    result = replay_cli(str(drive_log), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    first = lines[0]
    assert set(first) == {"t", "speed", "gear", "steering_angle", "driving_state", "workload", "decisions"}
    assert first["driving_state"] is None and first["speed"] is None  # nothing known at the first frame
    states = [line["driving_state"] for line in lines]
    assert states[1] == "parked" and states[-1] == "parked"
    assert "moving" in states and "stationary" in states
    reversing = [line for line in lines if line["gear"] == "R"]
    assert reversing and all(line["workload"] == "high" for line in reversing)
    moving = [line for line in lines if line["driving_state"] == "moving" and line["workload"] == "low"]
    assert moving and all(line["decisions"]["video"] == "deny" for line in moving)  # type: ignore[index]
    assert all(line["decisions"]["message-text"] == "degrade" for line in moving)  # type: ignore[index]
    assert "frames read: 51952, decoded: 31280" in result.stderr
    assert "time in driving state: moving" in result.stderr


def test_sample_every_adds_periodic_lines(drive_log: Path) -> None:
    plain = timeline(drive_log)
    sampled = timeline(drive_log, sample_every=10.0)
    start = sampled[0]["t"]
    times = [line["t"] for line in sampled]
    for k in range(1, 13):
        assert any(start + 10 * k <= t < start + 10 * k + 0.05 for t in times), k  # type: ignore[operator]
    assert len(sampled) > len(plain)


def test_virtual_bus_replay_equals_file_replay(drive_log: Path) -> None:
    assert timeline(drive_log, virtual=True) == timeline(drive_log)


def test_virtual_replay_keeps_real_time(tmp_path: Path) -> None:
    """Two seconds of log at 10x take at least 0.2 s on the bus."""
    path = tmp_path / "short.log"
    with can.CanutilsLogWriter(str(path)) as writer:
        for msg in scripted_drive():
            if msg.timestamp > 2.0:
                break
            writer.on_message_received(msg)
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    import time

    started = time.monotonic()
    summary = replay_virtual(engine, path, BUILTIN_PROBES, None, speed=10.0)
    assert time.monotonic() - started >= 0.19
    assert summary.frames_decoded > 400


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".csv", ".trc", ".log.gz", ".asc.gz"])
def test_every_log_format_gives_the_same_states(tmp_path: Path, suffix: str) -> None:
    reference = tmp_path / "ref.log"
    path = tmp_path / f"drive{suffix}"
    messages = [m for m in scripted_drive() if m.timestamp < 20.0]
    with can.CanutilsLogWriter(str(reference)) as writer:
        for m in messages:
            writer.on_message_received(m)
    with can.Logger(str(path)) as writer:
        for m in messages:
            writer.on_message_received(m)

    def shape(lines: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(line["driving_state"], line["workload"], json.dumps(line["decisions"])) for line in lines]

    assert shape(timeline(path)) == shape(timeline(reference))


def test_foreign_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("when,who,what\n1.0,2,3\n")
    result = replay_cli(str(path))
    assert result.returncode == 2
    assert f"{path}:1" in result.stderr and "when,who,what" in result.stderr
    assert result.stdout == ""


def test_bad_lines_are_reported_and_the_rest_kept(drive_log: Path, tmp_path: Path) -> None:
    lines = drive_log.read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.log"
    broken.write_text("".join(lines[:1000]) + "(12.5) can0 0B4#ZZ\n" + "".join(lines[1000:3000]))
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    summary = replay_file(engine, broken, BUILTIN_PROBES, None)
    assert summary.frames_read == 3000
    (error,) = summary.log_errors
    assert str(error).startswith(f"{broken}:1001")


def test_probes_file(drive_log: Path, tmp_path: Path) -> None:
    probes = tmp_path / "probes.yaml"
    probes.write_text(
        "- {id: movie, kind: interaction, category: media, modality: visual, content: video, "
        "priority: low}\n- {id: bad, kind: interaction, category: media, modality: visual, "
        "content: hologram, priority: low}\n"
    )
    result = replay_cli(str(drive_log), "--probes", str(probes))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{probes}:2:76: bad-request: unknown content 'hologram'; expected one of: "
        "text, image, video, list, keyboard, none"
    )
    probes.write_text(
        "- {id: movie, kind: interaction, category: media, modality: visual, content: video, priority: low}\n"
    )
    result = replay_cli(str(drive_log), "--probes", str(probes), check=True)
    decisions = {json.loads(line)["decisions"]["movie"] for line in result.stdout.splitlines()}
    assert decisions == {"allow", "deny"}


@pytest.mark.parametrize(
    ("log", "profile"),
    [
        (("comma2k19_rav4_2017", "comma2k19_rav4_2018-08-02_seg40.log.gz"), RAV4_2017),
        (("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz"), RAV4_TSS2),
    ],
)
def test_rav4_logs_decode_like_cantools(log: tuple[str, str], profile: Path) -> None:
    path = shared(*log)
    engine = Engine.load(profile, DEFAULT_POLICY)
    db = cantools.database.load_file(engine.profile.dbc_file, strict=False)
    compared = 0
    accepted = None
    for msg in can.LogReader(str(path)):
        rejected = engine.counters["implausible"].get("speed", 0)
        engine.on_frame(msg)
        if msg.arbitration_id == 0xB4 and msg.channel == "can0":
            expected = db.decode_message(0xB4, msg.data)["SPEED"]
            got = engine.state().values["speed"]
            if engine.counters["implausible"].get("speed", 0) > rejected:
                assert got == accepted  # a glitch is rejected: the last accepted value stands
            else:
                assert got == pytest.approx(expected, abs=1e-9)
                accepted = got
                compared += 1
    assert compared > 900
    assert engine.counters["implausible"].get("speed", 0) <= 6


def test_rav4_stop_and_go_drive(tmp_path: Path) -> None:
    path = shared("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz")
    lines = timeline(path, RAV4_TSS2)
    states = {line["driving_state"] for line in lines}
    assert {"moving", "stationary", None} <= states  # a full stop; and the lossy capture's gaps fail closed
    assert all(line["decisions"]["video"] == "deny" for line in lines)  # type: ignore[index]


def test_rav4_steering_test_in_park(tmp_path: Path) -> None:
    path = shared("verifiedcan_rav4_tss2", "rav4_2020-03-02_steering.log.gz")
    lines = timeline(path, RAV4_TSS2)
    known = [line for line in lines if line["driving_state"] is not None]
    assert known and all(line["driving_state"] == "parked" for line in known)
    assert any(line["workload"] == "high" for line in known)  # lock-to-lock steering
    assert all(line["decisions"]["video"] == "allow" for line in known)  # type: ignore[index]
