"""``drivegate explain POLICY --state S --request R``: one decision, whole.

Every rule in policy order (holds or not, and which leaf decided), how the outcomes combined,
and the decision, for a vehicle state given as canonical signal values.  Exit 0 explained;
2 unusable input: a policy that does not load, a ``--state`` or ``--request`` that is not JSON,
a state the test vehicle cannot be in, a request that is not a JSON object.  A request that is
an object but not a valid request is explained as the engine decides it (denied, rule
``request-invalid``), exit 0: that is what a client sending it would get.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_OK,
    EXIT_UNUSABLE,
    add_command,
    add_time_limit,
    json_arg,
    policy_arg,
    vehicle_arg,
    with_time_limit,
)
from safety.errors import DriveGateError, Location, PolicyTestError
from safety.policy import load_policy
from safety.vehicle.profile import load_profile
from safety.workflow.simcar import SimCar, SimVehicle, apply_state, case_timeline, json_node, parse_state
from safety.yamlsource import Checker


def register(sub: Any) -> None:
    """Add ``drivegate explain``."""
    parser = add_command(
        sub,
        "explain",
        help="explain one decision: every rule, the deciding conditions, how outcomes combined",
        description="Explain how POLICY decides REQUEST in a vehicle state given as canonical signal values.",
        examples=(
            """drivegate explain default --state '{"speed": 45, "gear": "D"}' """
            """--request '{"kind": "notification", "category": "message", "modality": "visual", """
            """"content": "text", "priority": "normal"}'""",
            """drivegate explain speed-bands --vehicle demo-sedan --format json --state '{"speed": 0, "gear": "P"}' """
            """--request '{"kind": "interaction", "modality": "visual", "content": "keyboard"}'""",
        ),
    )
    parser.add_argument(
        "policy", metavar="POLICY", type=policy_arg, help=f"policy file (YAML): {BUILTIN_HINT}, e.g. default"
    )
    parser.add_argument(
        "--state",
        required=True,
        help='JSON object of canonical signal values, e.g. \'{"speed": 45, "gear": "D"}\'; '
        'also "stale", "unknown", "missing": [signals].  Signals left out are never received (unknown).',
    )
    parser.add_argument("--request", required=True, help="JSON object: the request")
    parser.add_argument(
        "--vehicle",
        type=vehicle_arg,
        help=f"vehicle profile ({BUILTIN_HINT}): its signals and max ages (default: every signal, 300 ms)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_time_limit(parser)
    parser.set_defaults(run=with_time_limit(run, "explain"))


def run(args: argparse.Namespace) -> int:
    """Explain the decision; the exit code."""
    policy = load_policy(args.policy)
    vehicle = SimVehicle()
    if args.vehicle:
        vehicle = SimVehicle(load_profile(args.vehicle).max_ages())
    state_json = json_arg(args.state, "--state")
    request = json_arg(args.request, "--request")
    check = Checker(_option_error)
    change = parse_state(json_node(state_json, "--state"), "--state", check, vehicle, base=False)
    signals = apply_state({}, change, "--state", check, first=True) if change is not None else {}
    if not isinstance(request, dict):
        # Not a request at all, so unusable input like a --state that is not a mapping; a mapping
        # with wrong fields is a request, which the engine denies (request-invalid) and we explain.
        check.error(
            "expected-type",
            Location(file="--request"),
            f"--request must be a JSON object of request fields, got {_json_type(request)}",
        )
    check.errors.raise_if_any()
    stale = frozenset(n for n, s in signals.items() if s.mode == "stale")
    step, t = case_timeline(signals, stale, vehicle)
    car = SimCar(policy, vehicle, (step,), t)
    explanation = car.explain(car.decide(request, t))
    if args.format == "json":
        print(json.dumps(explanation.to_dict(), indent=2, default=str))
    else:
        print(explanation.render())
    # An invalid request is explained (denied, request-invalid) but is still unusable input.
    return EXIT_UNUSABLE if explanation.request_problem else EXIT_OK


def _json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


def _option_error(code: str, loc: Location, message: str) -> DriveGateError:
    return PolicyTestError(message, loc, code=code)
