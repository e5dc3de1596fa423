"""#11 item 5: every YAML DriveGate reads is read by one loader that a hostile file cannot hurt.

Each case was reproduced first: the alias bomb hung ``drivegate lint`` (killed at 60 s), the
recursive alias, the ``!!python/name:`` tag and the 400- and 5,000-digit integers gave
tracebacks (RecursionError, ConstructorError, OverflowError, ValueError).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE

from safety import LoadError, load_policy, load_profile
from safety.replay.timeline import load_probes
from safety.workflow.policytest import load_test_file
from safety.yamlsource import MAX_YAML_BYTES


def bomb(levels: int = 9) -> str:
    """A billion-laughs document: a few hundred bytes, 9**levels strings once expanded."""
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (bomb(), "h.yaml:5:5: yaml-limit: aliases expand to more than 10000 values (an alias bomb?)"),
    "recursive alias": ("a: &a [1, *a]\n", "h.yaml:1:4: yaml-limit: a recursive alias (a value that contains itself)"),
    "python tag": (
        "a: !!python/name:os.system x\n",
        "h.yaml:1:4: yaml-tag: unknown tag 'tag:yaml.org,2002:python/name:os.system'; DriveGate reads plain YAML "
        "(strings, numbers, true/false, null, lists and mappings)",
    ),
    "local tag": (
        "a: !include other.yaml\n",
        "h.yaml:1:4: yaml-tag: unknown tag '!include'; DriveGate reads plain YAML (strings, numbers, true/false, "
        "null, lists and mappings)",
    ),
    "400-digit integer": (
        "a: " + "9" * 400 + "\n",
        "h.yaml:1:4: yaml-limit: an integer of 400 digits; at most 40 are read",
    ),
    "5000-digit integer": (
        "a: " + "9" * 5000 + "\n",
        "h.yaml:1:4: yaml-limit: an integer of 5000 digits; at most 40 are read",
    ),
    "deep nesting": (
        "a:" + "".join(f"\n{'  ' * i}b{i}:" for i in range(1, 80)) + " 1\n",
        "h.yaml:66:131: yaml-limit: nested deeper than 64 levels",
    ),
    "integer key": (
        "? " + "9" * 5000 + "\n: 1\n",
        "h.yaml:1:3: yaml-limit: an integer of 5000 digits; at most 40 are read",
    ),
}


def _suite(path: Path) -> Any:
    return load_test_file(path, load_policy(DEFAULT_POLICY))


LOADERS: dict[str, Callable[[Path], Any]] = {
    "policy": load_policy,
    "profile": load_profile,
    "suite": _suite,
    "probes": load_probes,
}


def problems(loader: Callable[[Path], Any], path: Path) -> list[str]:
    with pytest.raises(LoadError) as info:
        loader(path)
    return [str(e).replace(str(path), "h.yaml") for e in info.value.errors]


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_loader_reports_the_hostile_construct_at_its_place(tmp_path: Path, loader: str, case: str) -> None:
    text, expected = HOSTILE[case]
    path = tmp_path / "h.yaml"
    path.write_text(text)
    assert expected in problems(LOADERS[loader], path)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_file_beyond_the_size_limit_is_not_read(tmp_path: Path, loader: str) -> None:
    path = tmp_path / "h.yaml"
    with path.open("w") as handle:
        handle.truncate(MAX_YAML_BYTES + 1)  # sparse: no disk used
    (found,) = problems(LOADERS[loader], path)
    assert found.startswith("h.yaml: unreadable: cannot read the ")
    assert found.endswith(": [Errno 27] the file is larger than the 16 MiB DriveGate reads")


def test_anchors_for_shared_values_still_work(tmp_path: Path) -> None:
    """Aliases are limited, not forbidden: a policy may share a condition through an anchor."""
    text = Path(DEFAULT_POLICY).read_text()
    path = tmp_path / "shared.yaml"
    path.write_text(text.replace("rules:\n", "x-moving: &moving {gt: 0}\nrules:\n", 1))
    with pytest.raises(LoadError) as info:  # the extra top-level key is the only problem
        load_policy(path)
    assert [e.code for e in info.value.errors] == ["unknown-key"]


def test_duplicate_keys_in_a_profile_are_an_error_with_both_lines(tmp_path: Path) -> None:
    source = Path(DEMO_VEHICLE)
    text = source.read_text().replace(
        "signals:\n", "signals:\n  speed:\n    message: VEHICLE_SPEED\n    signal: VehicleSpeed\n", 1
    )
    path = tmp_path / "h.yaml"
    path.write_text(text.replace("dbc: demo_sedan.dbc", f"dbc: {source.parent / 'demo_sedan.dbc'}"))
    found = problems(load_profile, path)
    lines = [line.split("#")[0].rstrip() for line in text.splitlines()]
    first = lines.index("  speed:") + 1
    second = first + 1 + lines[first:].index("  speed:")
    assert f"h.yaml:{second}:3: duplicate-key: duplicate key 'speed' (first at line {first})" in found


@pytest.mark.slow
def test_the_cli_answers_a_bomb_with_exit_2_and_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(12))
    result = subprocess.run(
        [sys.executable, "-m", "safety.cli", "lint", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{path}:5:5: yaml-limit: aliases expand to more than 10000 values (an alias bomb?)" in result.stdout
