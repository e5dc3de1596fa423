"""Policies: parse (YAML -> PolicyDoc), compile (PolicyDoc -> CompiledPolicy)."""

from __future__ import annotations

from pathlib import Path

from safety.builtin import policy_path
from safety.errors import LoadError, Location, PolicyError
from safety.policy.compile import CompiledPolicy, CompiledRule, compile_policy
from safety.policy.model import PolicyDoc
from safety.policy.parse import parse_policy_text
from safety.yamlsource import read_yaml_text

__all__ = ["CompiledPolicy", "CompiledRule", "PolicyDoc", "compile_policy", "load_policy", "parse_policy_text"]


def load_policy(path: str | Path) -> CompiledPolicy:
    """Read, parse and compile a policy file (or a built-in: ``default``, ``speed-bands``).

    Raises LoadError listing every problem.
    """
    path = policy_path(path)
    name = str(path)
    try:
        text = read_yaml_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(
            [PolicyError(f"cannot read the policy: {exc}", Location(file=name), code="unreadable")]
        ) from exc
    return compile_policy(parse_policy_text(name, text))
