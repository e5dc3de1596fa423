"""The release gate of a policy: what a policy must pass before an engine enforces it.

:meth:`Engine.load <safety.engine.engine.Engine.load>` and :meth:`Engine.reload
<safety.engine.engine.Engine.reload>` go through here.  A policy is loaded (with trusted keys:
only when signed by one of them, compiled from the very bytes whose signature was checked), then
checked: by default its lint errors (:func:`safety.workflow.lint.policy_check`) and, when test
suites are named (or signed with the policy), those suites (:func:`safety.workflow.policytest.
suite_check`).  The gate is composed here, in the engine's façade, from the policy workflow's
checks; the decision core (:mod:`safety.decide`) never sees any of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safety.builtin import policy_path
from safety.policy import CompiledPolicy, compile_policy, load_policy, parse_policy_text
from safety.policy.signing import verify_policy
from safety.workflow.lint import policy_check
from safety.workflow.policytest import suite_check

#: A check of a loaded policy: the problems it finds, as text (empty: it passes).
PolicyCheck = Callable[[CompiledPolicy], Sequence[str]]


def load_gated_policy(
    path: str | Path, trusted_keys: Mapping[str, Ed25519PublicKey] | None
) -> tuple[CompiledPolicy, list[Path]]:
    """Load a policy, and the test suites signed with it.

    With ``trusted_keys`` only a policy signed by one of them loads, compiled from the very
    bytes verified (a file swapped after the check is never the one enforced).
    """
    path = policy_path(path)
    if trusted_keys is None:
        return load_policy(path), []
    verified = verify_policy(path, trusted_keys)
    compiled = compile_policy(parse_policy_text(str(path), verified.text))
    return replace(compiled, signed_by=verified.key_id), verified.test_paths()


def reload_checks(
    checks: Iterable[PolicyCheck] | None, tests: Sequence[str | Path], min_coverage: float | None
) -> list[PolicyCheck]:
    """The checks a reload runs: ``checks`` (default: the lint errors), then the suites ``tests``."""
    out: list[PolicyCheck] = [policy_check] if checks is None else list(checks)
    if tests:
        out.append(suite_check(tests, min_coverage))
    return out
