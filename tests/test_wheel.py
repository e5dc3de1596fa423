"""The wheel works anywhere: built from the tree as a clean clone has it, installed into a fresh venv in an
empty directory, every built-in (vehicle, policies, suites, the protocol document) found without the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _clean_tree(dest: Path) -> None:
    """The files a clean clone has (tracked, plus new files git does not ignore), as they are now."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        names = [os.fsdecode(n) for n in listed if n]
    else:  # a source archive without git: everything but local outputs
        skip = {".venv", ".git", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    for name in names:
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; its dependencies come from this interpreter's site-packages."""
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"
    _clean_tree(tree)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(tree)],
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("drivegate-*.whl"))
    assert len(wheels) == 1
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (python-can, cantools, ...) without the network: this interpreter's
    # site-packages as plain path entries.  A path entry's own .pth files are not run, so an
    # editable install of the checkout there cannot leak in.
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "drivegate-test-deps.pth").write_text("\n".join(sorted(paths)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], check=True)
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env_dir / "bin" / "drivegate"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_the_wheel_carries_every_builtin(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    code = (
        "import json, safety, safety.builtin as b\n"
        "print(json.dumps({'file': safety.__file__, 'vehicles': sorted(b.vehicle_names()), "
        "'policies': sorted(b.policy_names()), 'suites': [str(b.suite_path(p)) for p in sorted(b.policy_names())], "
        "'protocol': b.protocol_path().read_text()[:40]}))"
    )
    found = json.loads(
        subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    )
    assert Path(found["file"]).is_relative_to(installed), found["file"]  # the installed copy, not the checkout
    assert found["vehicles"] == ["demo-sedan"]
    assert found["policies"] == ["default", "speed-bands"]
    assert all(Path(s).is_relative_to(installed) and Path(s).is_file() for s in found["suites"])
    assert found["protocol"].startswith("# ")


def test_the_installed_command_runs_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    version = _run(installed, tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("drivegate 0.1.0"), version
    gen = _run(installed, tmp_path, "gen-drive", "--out", "drive.log", "--frames", "30000")
    assert gen.returncode == 0, gen.stderr
    assert len((tmp_path / "drive.log").read_text().splitlines()) == 30000
    replay = _run(
        installed, tmp_path, "replay", "drive.log", "--vehicle", "demo-sedan", "--policy", "default", "--out", "t.jsonl"
    )
    assert replay.returncode == 0, replay.stderr
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert {line["driving_state"] for line in lines} >= {"parked", "moving"}
    assert "decoded: 0," not in replay.stderr
    lint = _run(installed, tmp_path, "lint", "default", "speed-bands")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for policy in ("default", "speed-bands"):
        tested = _run(installed, tmp_path, "test", policy)
        assert tested.returncode == 0, tested.stdout + tested.stderr
    protocol = _run(installed, tmp_path, "protocol")
    assert protocol.returncode == 0 and protocol.stdout.startswith("# ")
    schema = _run(installed, tmp_path, "schema", "policy")
    assert schema.returncode == 0 and json.loads(schema.stdout)["$schema"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.log", "t.jsonl"]


def test_the_installed_demo_runs(installed: Path, tmp_path: Path) -> None:
    demo = _run(installed, tmp_path, "demo", "--speed", "20", timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "moving" in demo.stdout and "parked" in demo.stdout
