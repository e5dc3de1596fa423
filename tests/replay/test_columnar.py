"""The columnar replay writes the streaming replay's timeline and summary, byte for byte.

On the demo drive, on the real logs of ../shared/data (skipped when absent) and on random logs
(hypothesis): gaps, repeats, SNA values, speeds hovering at the thresholds, frames out of
order, time jumps the clock refuses, frames the profile does not map, error and remote frames,
another channel, bad lines, and batches cut anywhere.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, DemoCar, shared, stderr_on_a_terminal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Engine
from safety.io.candump import iter_candump
from safety.io.columns import candump_block_columns, read_columns
from safety.io.logs import read_log
from safety.io.write import write_frames
from safety.replay.columnar import replay_columnar
from safety.replay.timeline import BUILTIN_PROBES, ReplaySummary, replay_file

SPEED_BANDS = ROOT / "policies" / "speed-bands.yaml"
RAV4_2017 = ROOT / "tests" / "profiles" / "rav4_2017.yaml"
RAV4_TSS2 = ROOT / "tests" / "profiles" / "rav4_tss2.yaml"


def both(
    log: Path,
    vehicle: Path | str = DEMO_VEHICLE,
    policy: Path | str = DEFAULT_POLICY,
    batch_frames: int | None = None,
    **kw: Any,
) -> tuple[tuple[str, str], tuple[str, str]]:
    """(timeline, summary) of the streaming and of the columnar replay of ``log``."""
    results = []
    for columnar in (False, True):
        out = io.StringIO()
        engine = Engine.load(vehicle, policy)
        summary: ReplaySummary
        if columnar:
            extra = {} if batch_frames is None else {"batch_frames": batch_frames}
            summary = replay_columnar(engine, log, BUILTIN_PROBES, out, reasons=True, **extra, **kw)
        else:
            summary = replay_file(engine, log, BUILTIN_PROBES, out, reasons=True, **kw)
        results.append((out.getvalue(), summary.format()))
    return results[0], results[1]


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, SPEED_BANDS], ids=["default", "speed-bands"])
@pytest.mark.parametrize("sample_every", [None, 0.5, 0.013])
def test_the_demo_drive(drive_log: Path, policy: Path, sample_every: float | None) -> None:
    streaming, columnar = both(drive_log, policy=policy, sample_every=sample_every, batch_frames=5000)
    assert columnar == streaming
    assert streaming[0].count("\n") > 10


def test_the_demo_drive_among_frames_the_profile_does_not_map(drive_log: Path, tmp_path: Path) -> None:
    # Nine unmapped frames (other ids, 29-bit ids, another channel) around every mapped one, as on a real bus.
    lines = drive_log.read_text().splitlines()
    busy = tmp_path / "busy.log"
    with busy.open("w") as f:
        for i, line in enumerate(lines):
            stamp = line.split()[0]
            f.write(line + "\n")
            for k in range(9):
                frame = f"{0x300 + k:03X}#{i % 256:02X}{k:02X}" if k < 6 else f"18FEF1{k:02X}#00{i % 256:02X}"
                channel = "can1" if k == 8 else "can0"
                f.write(f"{stamp} {channel} {frame}\n")
    streaming, columnar = both(busy, batch_frames=7919, sample_every=0.25)
    assert columnar == streaming
    assert "frames read: 519520" in streaming[1]


REAL_LOGS = [
    (("comma2k19_rav4_2017", "comma2k19_rav4_2018-08-02_seg40.log.gz"), RAV4_2017),
    (("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz"), RAV4_TSS2),
    (("verifiedcan_rav4_tss2", "rav4_2020-03-02_steering.log.gz"), RAV4_TSS2),
    (("verifiedcan_rav4_tss2", "2020-02-03-14-31-11-510096__CAN_Message_.csv"), RAV4_TSS2),
]


@pytest.mark.parametrize(("log", "profile"), REAL_LOGS, ids=[parts[1] for parts, _ in REAL_LOGS])
@pytest.mark.parametrize("sample_every", [None, 0.013])
def test_real_logs(log: tuple[str, str], profile: Path, sample_every: float | None) -> None:
    path = shared(*log)
    for policy in (DEFAULT_POLICY, SPEED_BANDS):
        streaming, columnar = both(path, profile, policy, sample_every=sample_every)
        assert columnar == streaming


@pytest.mark.parametrize(("log", "profile"), REAL_LOGS[1:3], ids=[parts[1] for parts, _ in REAL_LOGS[1:3]])
def test_real_logs_written_as_blf(log: tuple[str, str], profile: Path, tmp_path: Path) -> None:
    """The real drives as a logger would write them in BLF: the columnar replay reads their
    classic frames as numpy records, the streaming one through python-can."""
    blf = tmp_path / "drive.blf"
    written = write_frames(blf, read_log(shared(*log)))
    for policy in (DEFAULT_POLICY, SPEED_BANDS):
        streaming, columnar = both(blf, profile, policy, batch_frames=5000)
        assert columnar == streaming
        assert f"frames read: {written}" in streaming[1]


def test_columns_hold_the_frames_read_log_gives_on_real_logs() -> None:
    for parts, _ in REAL_LOGS:
        path = shared(*parts)
        frames = list(read_log(path))
        batches = list(read_columns(path, batch_frames=10_000))
        assert [f for b in batches for f in b.frames(range(len(b)))] == frames
        assert all(len(b) == 10_000 for b in batches[:-1])


# ------------------------------------------------------------------ random candump text
_hex = st.text("0123456789abcdefABCDEF", min_size=0, max_size=18)
_token_id = st.one_of(
    st.sampled_from(["0B4", "7FF", "800", "1F5", "0c9"]),
    st.text("0123456789ABCDEF", min_size=1, max_size=9),
    st.sampled_from(["18FEF100", "1FFFFFFF", "20000004", "3FFFFFFF"]),
)
_line = st.one_of(
    st.builds(
        lambda s, u, ch, i, sep, d, tail: f"({s:010d}.{u:06d}) {ch} {i}{sep}{d}{tail}",
        st.integers(0, 9_999_999_999),
        st.integers(0, 999_999),
        st.sampled_from(["can0", "can1", "vcan10", "x"]),
        _token_id,
        st.sampled_from(["#", "#", "#", "##1", "#R", ""]),
        _hex,
        st.sampled_from(["", "", " R", " T", " t", " X", "\r", "  "]),
    ),
    st.sampled_from(["", "(1.5) can0 123#00", "garbage", "(1700000000.000000)  can0 123#00", "\t"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, min_size=1, max_size=40))
def test_candump_columns_give_the_frames_the_parser_gives(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("cols") / "random.log"
    path.write_text("\n".join(lines) + "\n")
    expected_errors: list[Any] = []
    expected = list(read_log(path, on_error=expected_errors.append))
    errors: list[Any] = []
    got = [f for b in read_columns(path, on_error=errors.append, batch_frames=7) for f in b.frames(range(len(b)))]
    assert got == expected
    assert [str(e) for e in errors] == [str(e) for e in expected_errors]


_line_end = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(_line, st.just("(1700000000.000100) can0 0B4#0102")), _line_end), min_size=1, max_size=60), st.data())
def test_a_candump_log_read_from_a_line_on_gives_the_frames_and_errors_from_there(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Each frame's position is the index of its line (line ends as the reader splits them:
    \\n, \\r\\n, a lone \\r); read from a line on, the frames and bad lines from there, nothing before."""
    path = tmp_path_factory.mktemp("cols") / "random.log"
    path.write_bytes("".join(text + end for text, end in lines).encode("ascii"))
    with path.open(encoding="ascii") as f:  # the reader's line splitting: universal newlines
        texts = f.readlines()
    expected: list[tuple[int, Any]] = []
    expected_errors: list[tuple[int, str]] = []
    for index, text in enumerate(texts):
        errors: list[Any] = []
        expected += [(index, frame) for frame in iter_candump([text], on_error=errors.append)]
        expected_errors += [(index, e.message) for e in errors]
    start = data.draw(st.integers(0, len(texts) + 1))
    errors = []
    batches = list(read_columns(path, on_error=errors.append, batch_frames=data.draw(st.integers(1, 9)), start=start))
    got = [(int(p), f) for b in batches for p, f in zip(b.positions.tolist(), b.frames(range(len(b))), strict=True)]
    assert got == [(i, f) for i, f in expected if i >= start]
    assert [(e.location.line - 1, e.message) for e in errors] == [(i, m) for i, m in expected_errors if i >= start]


@pytest.mark.parametrize("junk", [b"\xff", b"\xc3\xa9", b"\x00"])
def test_a_candump_block_with_a_byte_that_is_not_ascii_is_read_as_the_parser_reads_it(tmp_path: Path, junk: bytes) -> None:
    """Found by tools/fuzz.py's differential check: one non-ASCII byte in a channel name (read as
    U+FFFD or a letter) made the columnar reading raise UnicodeEncodeError, so the default
    replay crashed on the log; the line parser reports the line and goes on."""
    lines = [b"(1.%06d) can0 0B4#0001020304050607\n" % i for i in range(6)]
    lines[3] = lines[3].replace(b"can0", b"can" + junk + b"0")
    path = tmp_path / "junk.log"
    path.write_bytes(b"".join(lines))
    expected_errors: list[Any] = []
    expected = list(read_log(path, on_error=expected_errors.append))
    errors: list[Any] = []
    got = [f for b in read_columns(path, on_error=errors.append) for f in b.frames(range(len(b)))]
    assert got == expected and len(got) >= 5
    assert [str(e) for e in errors] == [str(e) for e in expected_errors]


def test_frames_of_other_formats_are_positioned_by_their_index(tmp_path: Path) -> None:
    path = tmp_path / "drive.csv"
    path.write_text("timestamp,arbitration_id,extended,remote,error,dlc,data\n" + "".join(
        f"{1700000000 + i}.0,0x0B4,0,0,0,2,AQI=\n" for i in range(12)
    ))
    whole = [f for b in read_columns(path) for f in b.frames(range(len(b)))]
    assert len(whole) == 12
    batches = list(read_columns(path, batch_frames=4, start=5))
    assert [p for b in batches for p in b.positions.tolist()] == list(range(5, 12))
    assert [f for b in batches for f in b.frames(range(len(b)))] == whole[5:]


def test_a_block_of_the_common_shape_is_parsed_by_numpy() -> None:
    block = "(1700000000.000100) can0 0B4#0102\n(1700000000.000200) can1 18FEF100#AABBCCDDEEFF0011 R\n"
    columns = candump_block_columns(block)
    assert columns is not None
    assert [tuple(f) for f in columns.frames(range(2))] == [
        (1700000000.0001, 0x0B4, False, b"\x01\x02", "can0", False, False, False, False, False),
        (1700000000.0002, 0x18FEF100, True, bytes.fromhex("AABBCCDDEEFF0011"), "can1", False, False, False, False, False),
    ]
    # Lines laid out alike are read as a character matrix, a field per column range.
    import numpy as np

    from safety.io.columns import uniform_block_columns

    alike = "(1700000000.000100) can0 0B4#0102 R\n(1700000000.000200) can1 0B5#AABB T\n"
    matrix = uniform_block_columns(np.frombuffer(alike.encode(), dtype=np.uint8).reshape(2, -1))
    assert matrix is not None
    assert [tuple(f)[:5] for f in matrix.frames(range(2))] == [
        (1700000000.0001, 0x0B4, False, b"\x01\x02", "can0"),
        (1700000000.0002, 0x0B5, False, b"\xaa\xbb", "can1"),
    ]
    # Anything else goes line by line: an FD frame, a remote frame, a tab.
    for odd in ("(1700000000.000100) can0 0B4##10102\n", "(1700000000.000100) can0 0B4#R\n", "(1700000000.000100)\tcan0 0B4#01\n"):
        assert candump_block_columns(odd) is None


# ------------------------------------------------------------------ random drives
GEARS = ["P", "R", "N", "D"]
SPEEDS = [0.0, 0.49, 0.5, 0.51, 1.99, 2.0, 2.01, 29.99, 30.0, 30.01, 49.99, 50.0, 80.0, 655.35, 300.0]


@st.composite
def drives(draw: st.DrawFn) -> list[tuple[float, str]]:
    """Random candump lines of the demo sedan: (time, line)."""
    car = DemoCar(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY))
    t = 1_700_000_000.0
    lines: list[tuple[float, str]] = []
    speed, gear = draw(st.sampled_from(SPEEDS)), draw(st.sampled_from(GEARS))
    for _ in range(draw(st.integers(1, 60))):
        t = round(t + draw(st.sampled_from([0.0, 0.001, 0.01, 0.01, 0.05, 0.1, 0.3, 0.31, 0.5, 1.5, 2.6, 11.0])), 6)
        stamp = t - draw(st.sampled_from([0.0, 0.0, 0.0, 0.02, 20.0]))  # now and then late, or far off
        if draw(st.integers(0, 4)) == 0:
            speed = draw(st.sampled_from(SPEEDS))
        if draw(st.integers(0, 9)) == 0:
            gear = draw(st.sampled_from(GEARS))
        kind = draw(st.sampled_from(["speed", "speed", "gear", "steer", "body", "brake", "other", "other", "junk"]))
        seal = draw(st.integers(0, 9)) > 0  # mostly good end-to-end protection
        message: Any = None
        if kind == "speed":
            message = car.frame("VEHICLE_SPEED", stamp, seal=seal, VehicleSpeed=speed)
        elif kind == "gear":
            message = car.frame("TRANSMISSION", stamp, seal=seal, GearPosition={"P": 0, "R": 1, "N": 2, "D": 3}[gear])
        elif kind == "steer":
            angle = draw(st.sampled_from([0.0, 1.5, 90.0, 450.0]))
            message = car.frame("STEERING", stamp, seal=seal, SteeringAngle=angle, SteeringRate=draw(st.sampled_from([0, 10, 400])))
        elif kind == "body":
            message = car.frame("BODY_STATUS", stamp, BodyMux=0, ParkingBrake=draw(st.integers(0, 3)), TurnSignal=draw(st.integers(0, 3)))
        elif kind == "brake":
            message = car.frame("BRAKE", stamp, seal=seal, BrakePressed=draw(st.integers(0, 1)))
        if message is not None:
            data = bytes(message.data)
            if draw(st.integers(0, 19)) == 0:
                data = data[: draw(st.integers(0, 7))]  # truncated
            line = f"can0 {message.arbitration_id:03X}#{data.hex().upper()}"
        elif kind == "other":
            line = draw(st.sampled_from(["can0 300#00", "can0 7FF#0102", "can0 18FEF100#00", "can1 0B4#0000", "can0 123#R", "can0 20000004#0000000000000000"]))
        else:
            lines.append((t, "not a candump line"))
            continue
        lines.append((t, f"({stamp:017.6f}) {line}"))
    return lines


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    drives(),
    st.sampled_from([None, 0.05, 0.3]),
    st.sampled_from([DEFAULT_POLICY, SPEED_BANDS]),
    st.integers(1, 25),
)
def test_random_drives(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[float, str]],
    sample_every: float | None,
    policy: Path,
    batch_frames: int,
) -> None:
    path = tmp_path_factory.mktemp("drive") / "random.log"
    path.write_text("".join(line + "\n" for _, line in lines))
    streaming, columnar = both(path, policy=policy, sample_every=sample_every, batch_frames=batch_frames)
    assert columnar == streaming


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drives(), st.sampled_from([None, 0.3]), st.integers(1, 25))
def test_random_drives_written_as_blf(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[float, str]], sample_every: float | None, batch_frames: int
) -> None:
    directory = tmp_path_factory.mktemp("drive")
    text = directory / "random.log"
    text.write_text("".join(line + "\n" for _, line in lines))
    blf = directory / "random.blf"
    write_frames(blf, read_log(text, on_error=lambda _e: None))
    streaming, columnar = both(blf, sample_every=sample_every, batch_frames=batch_frames)
    assert columnar == streaming


def test_cli_default_engine_is_columnar_and_virtual_stays_streaming(drive_log: Path, tmp_path: Path) -> None:
    outs = {}
    for engine in ("default", "columnar", "streaming"):
        out = tmp_path / f"{engine}.jsonl"
        extra = [] if engine == "default" else ["--engine", engine]
        command = [sys.executable, "-m", "safety.cli", "replay", str(drive_log), "--vehicle", "demo-sedan"]
        result = subprocess.run([*command, "--policy", "default", "--out", str(out), *extra], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        outs[engine] = out.read_bytes()
    assert outs["default"] == outs["columnar"] == outs["streaming"]
    command = [sys.executable, "-m", "safety.cli", "replay", str(drive_log), "--vehicle", "demo-sedan", "--policy", "default"]
    result = subprocess.run([*command, "--virtual", "--engine", "columnar"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "drivegate replay: --virtual plays frames onto a bus one by one: use --engine streaming\n"


@pytest.mark.parametrize("engine", ["columnar", "streaming"])
def test_a_sample_step_below_the_time_resolution_ends(tmp_path: Path, engine: str) -> None:
    # 1e-9 s added to an epoch time changes nothing: the sampling grid used to stay put forever.
    log = tmp_path / "three.log"
    log.write_text(
        "(1700000000.000000) can0 300#00\n(1700000000.000010) can0 300#00\n(1700000000.000020) can0 300#00\n"
    )
    command = [sys.executable, "-m", "safety.cli", "replay", str(log), "--vehicle", "demo-sedan", "--policy", "default"]
    result = subprocess.run(
        [*command, "--engine", engine, "--sample-every", "1e-9"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1  # nothing mapped
    times = [float(line.split(",")[0].removeprefix('{"t": ')) for line in result.stdout.splitlines()]
    # One line per representable time step (2.4e-7 s here) of the 20 µs, printed to the µs.
    assert times == sorted(times) and 21 <= len(times) <= 100
    assert times[0] == 1700000000.0 and times[-1] == 1700000000.00002


def test_progress_shows_on_a_terminal_only_and_not_with_quiet(tmp_path: Path, drive_log: Path) -> None:
    big = tmp_path / "big.log"
    big.write_text(drive_log.read_text() * 4)  # four drives back to back: the clock re-bases, fine here
    command = [sys.executable, "-m", "safety.cli", "replay", str(big), "--vehicle", "demo-sedan", "--policy", "default", "--out", str(tmp_path / "t.jsonl")]
    shown = stderr_on_a_terminal(command)
    assert f"\rreplay {big}: 65,536 frames\x1b[K" in shown
    assert "frames read: 207808" in shown  # the summary follows
    quiet = stderr_on_a_terminal([*command, "--quiet"])
    assert "\rreplay " not in quiet and "frames read: 207808" in quiet
    piped = subprocess.run(command, capture_output=True, text=True, check=False)
    assert "\r" not in piped.stderr


# Blocks whose lines share a length, mostly a layout: the character-matrix reading must accept
# only what the general reading accepts, and give the same columns.
_uniform_line = st.builds(
    lambda s, u, ch, i, d, tail: f"({s:010d}.{u:06d}) {ch} {i}#{d}{tail}",
    st.integers(0, 9_999_999_999),
    st.integers(0, 999_999),
    st.sampled_from(["can0", "can1", "vca0"]),
    st.one_of(st.text("0123456789ABCDEFabcdef", min_size=3, max_size=3), st.text("0123456789ABCDEF#", min_size=8, max_size=8)),
    st.one_of(st.text("0123456789abcdefABCDEF", min_size=16, max_size=16), st.text("0123456789ABCDEFRG# ", min_size=16, max_size=16)),
    st.sampled_from(["", "", " R", " T", " x"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_uniform_line, min_size=1, max_size=30))
def test_lines_read_as_a_matrix_give_what_the_general_reading_gives(lines: list[str]) -> None:
    import numpy as np

    from safety.io.columns import _general_block_columns, uniform_block_columns

    block = "".join(line + "\n" for line in lines)
    raw = np.frombuffer(block.encode("ascii"), dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    general = _general_block_columns(raw, ends)
    if len({len(line) for line in lines}) == 1:
        matrix = uniform_block_columns(raw.reshape(len(lines), len(lines[0]) + 1))
        if matrix is not None:
            assert general is not None
            assert [tuple(f) for f in matrix.frames(range(len(lines)))] == [tuple(f) for f in general.frames(range(len(lines)))]
        elif general is not None:
            # Only lines laid out differently may be left to the general reading.
            layouts = {(line.index(" ", 20), line.index("#", 20), line.endswith((" R", " T", " x"))) for line in lines}
            assert len(layouts) > 1, lines
    combined = candump_block_columns(block)
    assert (combined is None) == (general is None)
    if combined is not None and general is not None:
        assert [tuple(f) for f in combined.frames(range(len(lines)))] == [tuple(f) for f in general.frames(range(len(lines)))]


def test_the_collector_settings_are_restored_after_a_replay(drive_log: Path) -> None:
    import gc

    from safety.replay.columnar import fewer_collections

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == (50_000, *before[1:])
        raise RuntimeError("a replay that fails")
    assert gc.get_threshold() == before
    replay_columnar(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY), drive_log, BUILTIN_PROBES, None)
    assert gc.get_threshold() == before
