"""The vehicle profiles, DBCs, policies, policy suites and documents shipped with DriveGate.

They live at the top of the source tree (``dbc/``, ``policies/``, ``docs/protocol.md``) and are
linked into this package, so a wheel carries them and :mod:`importlib.resources` finds them the
same way in a wheel, an editable install and a source checkout.  Built-ins are named without
paths: ``demo-sedan`` (vehicle), ``default`` and ``speed-bands`` (policies, each with its suite).
:func:`vehicle_path` and :func:`policy_path` turn a name or a path into a path: a path that
exists, or that looks like one (a directory part or a ``.yaml`` suffix), is taken as it is.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

__all__ = [
    "DEFAULT_POLICY",
    "DEMO_DBC",
    "DEMO_VEHICLE",
    "bare_name",
    "policy_names",
    "policy_path",
    "protocol_path",
    "suite_path",
    "vehicle_names",
    "vehicle_path",
]


def _root() -> Traversable:
    return resources.files(__name__)


def _path(item: Traversable) -> Path:
    # Installed from a wheel, from a source tree or editable, the data are plain files on disk.
    return Path(str(item)).resolve()


def _yaml_names(folder: Traversable) -> dict[str, Path]:
    return {
        entry.name.removesuffix(".yaml").replace("_", "-"): _path(entry)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.is_file() and entry.name.endswith(".yaml")
    }


def vehicle_names() -> dict[str, Path]:
    """Built-in vehicle profiles: name -> path (``demo-sedan``)."""
    return _yaml_names(_root() / "dbc")


def policy_names() -> dict[str, Path]:
    """Built-in policies: name -> path (``default``, ``speed-bands``)."""
    return _yaml_names(_root() / "policies")


def bare_name(value: str | Path, names: dict[str, Path]) -> str | None:
    """``value`` when it is one of ``names`` written bare; None when it is (or looks like) a path.

    A file that exists, or a value with a directory part or a suffix, is a path, even when a
    built-in has that name.
    """
    path = Path(value)
    if isinstance(value, Path) or path.exists() or len(path.parts) > 1 or path.suffix or str(value) not in names:
        return None
    return str(value)


def _resolve(value: str | Path, names: dict[str, Path]) -> Path:
    name = bare_name(value, names)
    return Path(value) if name is None else names[name]


def vehicle_path(value: str | Path) -> Path:
    """The profile named ``value`` (``demo-sedan``), or ``value`` itself as a path."""
    return _resolve(value, vehicle_names())


def policy_path(value: str | Path) -> Path:
    """The policy named ``value`` (``default``, ``speed-bands``), or ``value`` itself as a path."""
    return _resolve(value, policy_names())


def suite_path(policy: str) -> Path | None:
    """The test suite shipped with built-in policy ``policy``, if there is one."""
    item = _root() / "policies" / "tests" / f"{policy}.yaml"
    return _path(item) if item.is_file() else None


def protocol_path() -> Path:
    """The installed copy of the wire-protocol document (``docs/protocol.md``)."""
    return _path(_root() / "protocol.md")


DEMO_VEHICLE = _path(_root() / "dbc" / "demo_sedan.yaml")
DEMO_DBC = _path(_root() / "dbc" / "demo_sedan.dbc")
DEFAULT_POLICY = _path(_root() / "policies" / "default.yaml")
