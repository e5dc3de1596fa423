"""The public API: what ``safety`` exports, lazily, and the one error hierarchy (as httpx's test_exported_members)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import safety
from safety import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "safety"


def test_every_exported_name_resolves_and_all_is_complete() -> None:
    exported = set(safety.__all__)
    assert exported == set(safety._EXPORTS), "__all__ and the lazy export table disagree"
    assert len(safety.__all__) == len(exported)
    for name in safety.__all__:
        value = getattr(safety, name)
        module = safety._EXPORTS[name]
        assert getattr(sys.modules[module], name) is value, name
    assert set(dir(safety)) >= exported
    with pytest.raises(AttributeError, match="module 'safety' has no attribute 'Nope'"):
        _ = safety.Nope  # type: ignore[attr-defined]


def test_type_checking_imports_match_the_exports() -> None:
    """The TYPE_CHECKING block (what IDEs and mypy see) names exactly the exported names, from their modules."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    seen[alias.name] = stmt.module
    assert seen == safety._EXPORTS


def _classes_deriving_from_exceptions() -> dict[str, list[str]]:
    """Every class in the package whose bases name an error or exception, by module file."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(node.name)
    return found


# Exceptions used only as control flow inside one function's walk; they never reach a caller.
CONTROL_FLOW = {
    "safety/workflow/analysis.py": ["_Found"],
    "safety/workflow/space.py": ["BudgetExceeded"],
    "safety/yamlsource.py": ["_LimitHit"],  # stops converting at once; reported as a yaml-limit error
}


def test_every_error_class_lives_in_errors_and_is_exported() -> None:
    found = _classes_deriving_from_exceptions()
    for module, names in CONTROL_FLOW.items():
        assert found.pop(module) == names
    assert list(found) == ["safety/errors.py"], found
    for name in found["safety/errors.py"]:
        assert name in safety.__all__, f"{name} is not exported from safety"
        assert issubclass(getattr(safety, name), errors.DriveGateError)
        assert name in (errors.__doc__ or ""), f"the errors module's tree does not draw {name}"


def test_error_codes_are_stable_and_distinct() -> None:
    classes = [getattr(errors, n) for n in _classes_deriving_from_exceptions()["safety/errors.py"]]
    codes = {cls.code: cls.__name__ for cls in classes}
    assert len(codes) == len(classes)
    assert codes == {
        "error": "DriveGateError",
        "profile": "ProfileError",
        "dbc": "DbcError",
        "policy": "PolicyError",
        "request": "RequestError",
        "log-format": "LogFormatError",
        "fault-spec": "FaultSpecError",
        "policy-test": "PolicyTestError",
        "signature": "SignatureError",
        "policy-check": "PolicyCheckError",
        "analysis-limit": "AnalysisLimitError",
        "time-limit": "TimeLimitError",
        "service": "ServiceError",
        "log-in-use": "LogInUseError",
        "load": "LoadError",
    }


def test_log_in_use_is_still_an_os_error() -> None:
    exc = errors.LogInUseError("/x/decisions.jsonl: another process is writing this decision log")
    assert isinstance(exc, OSError) and isinstance(exc, errors.DriveGateError)
    assert str(exc) == "log-in-use: /x/decisions.jsonl: another process is writing this decision log"


HEAVY = ("can", "cantools", "cryptography", "numpy", "yaml")


@pytest.mark.parametrize(
    "statement",
    [
        "from safety import Client",
        "import safety.client",
        "from safety import AsyncClient, Decision, Outcome, ServiceError",
    ],
)
def test_a_client_only_process_loads_nothing_heavy(statement: str) -> None:
    """A head-unit process that only asks the service pays for none of python-can, cantools, cryptography or the engine."""
    code = (
        f"{statement}\nimport sys, json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m.startswith(('safety.engine', 'safety.vehicle', 'safety.policy', 'safety.decide', 'safety.workflow')))))"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
    assert "cantools" not in out.stderr and "| can\n" not in out.stderr  # -X importtime lists every module loaded


def test_driving_state_and_workload_are_enums_with_one_unknown() -> None:
    assert [s.value for s in safety.DrivingState] == ["parked", "stationary", "moving", "unknown"]
    assert [w.value for w in safety.Workload] == ["low", "high", "unknown"]
    assert safety.DrivingState.UNKNOWN == safety.Workload.UNKNOWN == "unknown"
    engine = safety.Engine.load(ROOT / "dbc" / "demo_sedan.yaml", ROOT / "policies" / "default.yaml")
    snapshot = engine.state()
    assert snapshot.driving_state is safety.DrivingState.UNKNOWN and snapshot.workload is safety.Workload.UNKNOWN
    assert snapshot.values["driving_state"] is None and snapshot.to_dict()["driving_state"] == "unknown"
