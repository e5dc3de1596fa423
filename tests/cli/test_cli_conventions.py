"""The ``drivegate`` command line as a whole: --version, help of every command, built-in names,
the shared exit codes, a closed pipe, ``gen-drive`` and ``protocol``.

Real processes of ``python -m safety.cli`` (what the console script runs), run from a directory
without policies in it, so a built-in name can only be found as a built-in.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import safety
from safety import builtin
from safety.cli import common
from safety.cli.main import build_parser

TEXT_REQUEST = json.dumps(
    {"kind": "notification", "category": "message", "modality": "visual", "content": "text", "priority": "normal"}
)
MOVING = json.dumps({"speed": 45, "gear": "D", "steering_angle": 0})


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """The commands main's parser has, by name: the tests follow whatever main registers."""
    parser = build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = _subcommands()


def drivegate(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def words(text: str) -> str:
    """``text`` with its whitespace runs made single spaces: argparse wraps help to the terminal."""
    return " ".join(text.split())


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory (nothing named default, speed-bands or demo-sedan in it)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


# ---------------------------------------------------------------------- in process: the argument types
def test_builtin_names_resolve_and_paths_stay_as_typed(tmp_path: Path) -> None:
    assert common.vehicle_arg("demo-sedan") == str(builtin.DEMO_VEHICLE)
    assert common.policy_arg("default") == str(builtin.DEFAULT_POLICY)
    assert common.policy_arg("speed-bands") == str(builtin.policy_names()["speed-bands"])
    assert common.policy_file_arg("default") == builtin.DEFAULT_POLICY
    assert common.suite_arg("default") == str(builtin.suite_path("default"))
    assert common.suite_arg("speed-bands") == str(builtin.suite_path("speed-bands"))
    # Paths come back as typed, "./" and all: they are what findings and reports print.
    for text in ("./policies/default.yaml", "policies//default.yaml", "mine.yaml", "nowhere"):
        assert (common.policy_arg(text), common.vehicle_arg(text), common.suite_arg(text)) == (text, text, text)
    assert common.builtin_suite("./default") is None and common.builtin_suite("nowhere") is None


def test_every_command_is_registered_with_help_and_examples() -> None:
    assert set(COMMANDS) >= {
        "replay", "demo", "gen-drive", "serve", "protocol", "lint", "test", "explain", "schema",
        "keygen", "sign", "verify", "log-summary", "inject", "log-stats",
    }  # fmt: skip
    for name, parser in COMMANDS.items():
        assert parser.description and parser.description.splitlines()[0].endswith("."), name
        assert parser.epilog and parser.epilog.startswith("examples:\n  "), name
        assert isinstance(parser.formatter_class, type)
        assert issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter), name


# ---------------------------------------------------------------------- --version and --help
@pytest.mark.slow
def test_version(elsewhere: Path) -> None:
    result = drivegate("--version", cwd=elsewhere)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"drivegate {safety.__version__}\n", "")


@pytest.mark.slow
def test_top_level_help_lists_every_command_with_its_line(elsewhere: Path) -> None:
    result = drivegate("--help", cwd=elsewhere)
    assert result.returncode == 0
    listing = words(result.stdout)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        assert f"{choice.dest} {words(str(choice.help))}" in listing, choice.dest
    assert "exit codes:" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_has_a_description_and_an_example(command: str, elsewhere: Path) -> None:
    result = drivegate(command, "--help", cwd=elsewhere)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    description = COMMANDS[command].description or ""
    summary = description.splitlines()[0]
    # The one-line description comes right after the usage, on a line of its own.
    assert summary in lines and lines[lines.index(summary) - 1] == ""
    examples = lines[lines.index("examples:") + 1 :]
    assert examples and all(line.startswith("  drivegate ") for line in examples), examples
    assert any(line.startswith(f"  drivegate {command}") for line in examples)


@pytest.mark.slow
def test_serve_help_says_where_the_protocol_is(elsewhere: Path) -> None:
    out = words(drivegate("serve", "--help", cwd=elsewhere).stdout)
    assert str(builtin.protocol_path()) in out
    assert "`drivegate protocol` prints it" in out


# ---------------------------------------------------------------------- protocol
@pytest.mark.slow
def test_protocol_prints_the_document(elsewhere: Path) -> None:
    document = builtin.protocol_path().read_text(encoding="utf-8")
    heading = next(line for line in document.splitlines() if line.startswith("# "))
    result = drivegate("protocol", cwd=elsewhere)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == heading == "# DriveGate decision service: wire protocol, version 1"
    assert result.stdout == document
    where = drivegate("protocol", "--path", cwd=elsewhere)
    assert (where.returncode, where.stdout) == (0, f"{builtin.protocol_path()}\n")


# ---------------------------------------------------------------------- gen-drive and replay
@pytest.fixture(scope="module")
def small_drive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "drive.log"
    result = drivegate("gen-drive", "--out", path, "--frames", "1500", cwd=path.parent)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert re.fullmatch(rf"wrote 1500 frames to {re.escape(str(path))} in \d+\.\d\d s\n", result.stderr)
    return path


@pytest.mark.slow
def test_gen_drive_writes_exactly_n_frames(small_drive: Path) -> None:
    lines = small_drive.read_text().splitlines()
    assert len(lines) == 1500
    assert all(re.fullmatch(r"\(\d+\.\d{6}\) can0 [0-9A-F]{3}#[0-9A-F]*", line) for line in lines)


@pytest.mark.slow
def test_gen_drive_is_what_tools_gen_drive_writes(small_drive: Path, tmp_path: Path) -> None:
    out = tmp_path / "tool.log"
    tool = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(out), "--frames", "1500", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (tool.returncode, tool.stdout, tool.stderr) == (0, "", "")
    assert out.read_bytes() == small_drive.read_bytes()


@pytest.mark.slow
def test_replay_with_builtin_names(small_drive: Path, elsewhere: Path) -> None:
    result = drivegate("replay", small_drive, "--vehicle", "demo-sedan", "--policy", "default", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    decoded = re.search(r"frames read: 1500, decoded: (\d+),", result.stderr)
    assert decoded and int(decoded.group(1)) > 0, result.stderr
    timeline = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(line["decisions"]) >= {"video", "message-text"} for line in timeline)
    assert timeline[-1]["driving_state"] == "parked"  # the scripted drive starts parked
    bands = drivegate("replay", small_drive, "--vehicle", "demo-sedan", "--policy", "speed-bands", cwd=elsewhere)
    assert bands.returncode == 0, bands.stderr


# ---------------------------------------------------------------------- lint, test, explain by name
@pytest.mark.slow
def test_lint_builtin_policies_by_name(elsewhere: Path) -> None:
    result = drivegate("lint", "default", "speed-bands", "--vehicle", "demo-sedan", cwd=elsewhere)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == (
        "drivegate lint: 2 policy file(s): 0 error(s), 0 warning(s), 12 ignored (lint.ignore / --ignore)\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["default", "speed-bands"])
def test_test_runs_the_builtin_suite_of_a_builtin_policy(policy: str, elsewhere: Path) -> None:
    result = drivegate("test", policy, cwd=elsewhere)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == str(builtin.suite_path(policy))
    assert re.fullmatch(r"\d+ passed, 0 failed: .* in 1 file\(s\)", lines[-2])
    # The same suite named explicitly, by name and by path.
    assert drivegate("test", policy, policy, "--coverage", "100", cwd=elsewhere).returncode == 0
    assert drivegate("test", builtin.policy_path(policy), builtin.suite_path(policy), cwd=elsewhere).returncode == 0


@pytest.mark.slow
def test_test_of_a_policy_path_needs_its_suites(elsewhere: Path) -> None:
    result = drivegate("test", builtin.DEFAULT_POLICY, cwd=elsewhere)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"drivegate test: give the TEST files for {builtin.DEFAULT_POLICY} ")


@pytest.mark.slow
def test_explain_builtin_policy_by_name(elsewhere: Path) -> None:
    result = drivegate("explain", "default", "--state", MOVING, "--request", TEXT_REQUEST, cwd=elsewhere)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"policy default ({builtin.DEFAULT_POLICY}, hash ")
    assert "decision: " in result.stdout
    as_json = drivegate(
        "explain", "speed-bands", "--vehicle", "demo-sedan", "--state", MOVING, "--request", TEXT_REQUEST,
        "--format", "json", cwd=elsewhere,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["decision"]["outcome"] in ("allow", "degrade", "defer", "deny")


# ---------------------------------------------------------------------- exit codes of unusable input
POLICY = """version: 1
name: small
default: deny
rules:
  - id: parked
    ref: TEST-DOC 1.2
    when: {driving_state: parked}
    outcome: allow
"""


@pytest.mark.slow
def test_lint_yaml_syntax_error_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrules: [\n")
    result = drivegate("lint", broken, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == f"{broken}:3:1: yaml-syntax: invalid YAML: did not find expected node content\n"


UNKNOWN_KEY = (
    "{path}:7:5: unknown-key: unknown key 'whne' in rules[0]; expected one of: constraints, description, "
    "exception, id, outcome, overrides, reason, ref, when\n"
)


@pytest.mark.slow
def test_lint_unknown_key_is_reported_exactly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("    when:", "    whne:"))
    result = drivegate("lint", bad, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == UNKNOWN_KEY.format(path=bad)


@pytest.mark.slow
def test_lint_unknown_key_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("    when:", "    whne:"))
    assert drivegate("lint", bad, cwd=tmp_path).returncode == 2


@pytest.mark.slow
def test_lint_unknown_key_in_the_vehicle_profile_exits_2(tmp_path: Path) -> None:
    policy = tmp_path / "small.yaml"
    policy.write_text(POLICY)
    profile = builtin.DEMO_VEHICLE.read_text().replace("\nsignals:", "\nsignls:", 1)
    assert profile != builtin.DEMO_VEHICLE.read_text()
    vehicle = tmp_path / "demo_sedan.yaml"
    vehicle.write_text(profile)
    (tmp_path / builtin.DEMO_DBC.name).write_bytes(builtin.DEMO_DBC.read_bytes())
    result = drivegate("lint", policy, "--vehicle", vehicle, cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(rf"^{re.escape(str(vehicle))}:\d+:\d+: unknown-key: unknown key 'signls'", result.stdout, re.M)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_text", "message"),
    [
        ("[1, 2]", "--request: expected-type: --request must be a JSON object of request fields, got an array\n"),
        ('"video"', "--request: expected-type: --request must be a JSON object of request fields, got a string\n"),
        ("null", "--request: expected-type: --request must be a JSON object of request fields, got null\n"),
        (
            '{"kind": "notification",}',
            "--request: bad-json: invalid JSON: Expecting property name enclosed in double quotes (line 1 column 25)\n",
        ),
    ],
    ids=["array", "string", "null", "not-json"],
)
def test_explain_of_an_unusable_request_exits_2(request_text: str, message: str, elsewhere: Path) -> None:
    result = drivegate("explain", "default", "--state", MOVING, "--request", request_text, cwd=elsewhere)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


@pytest.mark.slow
def test_explain_of_an_invalid_request_object_exits_2(elsewhere: Path) -> None:
    bad = json.dumps({**json.loads(TEXT_REQUEST), "content": "gif"})
    assert drivegate("explain", "default", "--state", MOVING, "--request", bad, cwd=elsewhere).returncode == 2


# ---------------------------------------------------------------------- a closed pipe
@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["schema", "policy"],
        ["protocol"],
        ["explain", "default", "--state", MOVING, "--request", TEXT_REQUEST],
        ["test", "default"],
    ],
    ids=["schema", "protocol", "explain", "test"],
)
def test_a_reader_that_closes_early_ends_the_command_quietly(args: list[str], elsewhere: Path) -> None:
    # The reader closes its end before the command writes a byte (it is still starting up), so
    # every write fails: the most a closed pipe can do.
    process = subprocess.Popen(
        [sys.executable, "-m", "safety.cli", *args], cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert (process.wait(timeout=180), stderr) == (common.EXIT_BROKEN_PIPE, "")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    ["schema policy", f"explain default --state '{MOVING}' --request '{TEXT_REQUEST}'", "protocol"],
    ids=["schema", "explain", "protocol"],
)
def test_head_in_a_shell_pipeline(command: str, elsewhere: Path) -> None:
    # As a user types it; the command may finish before head closes (exit 0) or after (141).
    script = f"set -o pipefail; {sys.executable} -m safety.cli {command} | head -1"
    result = subprocess.run(
        ["bash", "-c", script], cwd=elsewhere, capture_output=True, text=True, check=False, timeout=180
    )
    assert result.returncode in (0, common.EXIT_BROKEN_PIPE)
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.stderr == ""


# ---------------------------------------------------------------------- demo
@pytest.mark.slow
def test_demo_takes_policy_vehicle_and_speed(elsewhere: Path) -> None:
    result = drivegate("demo", "--policy", "speed-bands", "--vehicle", "demo-sedan", "--speed", "0", cwd=elsewhere)
    assert (result.returncode, result.stderr) == (0, "")
    first = result.stdout.splitlines()[0]
    assert first.startswith("DriveGate demo: demo_sedan on a virtual CAN bus, policy 'speed-bands' (")
    assert first.endswith("drive at full speed (unpaced).")
    assert "reversing into spot" in result.stdout
    bad = drivegate("demo", "--speed", "-1", cwd=elsewhere)
    assert (bad.returncode, bad.stderr) == (2, "drivegate demo: --speed must be >= 0\n")
