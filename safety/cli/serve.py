"""``drivegate serve``: build the decision service from its arguments and run it."""

from __future__ import annotations

import argparse
import gc
import grp
import pwd
import sys
from pathlib import Path
from typing import Any

from safety import builtin
from safety.audit.decisionlog import DecisionLog
from safety.cli.common import (
    BUILTIN_HINT,
    EXIT_UNUSABLE,
    add_command,
    add_vehicle_option,
    policy_arg,
    suite_arg,
)
from safety.engine.engine import Engine
from safety.errors import LogFormatError
from safety.policy.signing import load_public_keys
from safety.replay.timeline import profile_channel
from safety.service.inputs import parse_bus_spec
from safety.service.player import ReplayPlayer
from safety.service.server import Service, ServiceConfig, log, run_service


def register(sub: Any) -> None:
    """Add ``serve`` to the ``drivegate`` command line."""
    parser = add_command(
        sub,
        "serve",
        help="run the decision service on a local socket",
        description="Serve decisions over a Unix socket (newline-delimited JSON), from a live CAN bus or a "
        "replayed log.  SIGTERM drains and exits 0; SIGHUP reloads the policy."
        f"\n\nThe wire protocol is documented in {builtin.protocol_path()}, installed with DriveGate "
        "(docs/protocol.md in the source tree); `drivegate protocol` prints it.",
        examples=(
            "drivegate serve --vehicle car.yaml --policy policy.yaml --socket /run/drivegate/drivegate.sock "
            "--bus socketcan:can0",
            "drivegate serve --vehicle demo-sedan --policy default --socket /tmp/drivegate.sock "
            "--replay drive.log --loop --speed 10",
            "drivegate protocol | less    # what a client sends and gets back",
        ),
    )
    add_vehicle_option(parser)
    parser.add_argument(
        "--policy",
        required=True,
        type=policy_arg,
        help=f"policy file (YAML): {BUILTIN_HINT}, e.g. default; SIGHUP reloads it from this path",
    )
    parser.add_argument(
        "--policy-test",
        action="append",
        default=[],
        type=suite_arg,
        metavar="SUITE",
        help="on SIGHUP the new policy must also pass this test suite (repeatable; a built-in policy name is "
        "its suite); it is always linted",
    )
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        type=Path,
        metavar="PUB",
        help="only run a policy signed (drivegate sign) by one of these public keys, at start and on SIGHUP "
        "(repeatable); the suites signed with it must pass on SIGHUP too",
    )
    parser.add_argument(
        "--socket", required=True, type=Path, help="Unix socket path, e.g. /run/drivegate/drivegate.sock"
    )
    parser.add_argument(
        "--tcp-port", type=int, metavar="N", help="also listen on 127.0.0.1:N (loopback only; 0 = any free port)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--bus",
        metavar="INTERFACE:CHANNEL[,key=value...]",
        help="read a python-can bus, e.g. socketcan:can0 or pcan:PCAN_USBBUS1,bitrate=500000",
    )
    source.add_argument("--replay", metavar="LOG", help="play a recorded log onto an in-process virtual bus")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="with --replay: 1 = real time, 20 = twenty times faster, 0 = flat out"
    )
    parser.add_argument("--loop", action="store_true", help="with --replay: start over at the end, time continuing")
    parser.add_argument(
        "--allow-uid", action="append", default=[], type=_uid, metavar="UID", help="allow this user (number or name)"
    )
    parser.add_argument(
        "--allow-gid", action="append", default=[], type=_gid, metavar="GID", help="allow this group (number or name)"
    )
    parser.add_argument("--decision-log", metavar="PATH", help="write every decision to this JSONL log")
    parser.add_argument(
        "--decision-log-writer",
        choices=("mmap", "write"),
        default="mmap",
        help="mmap (default): no system call per record, the file padded while open; write: one write() per "
        "record, for logs shared by several writers or followed with tail -f",
    )
    parser.add_argument(
        "--reload-settle-ms",
        type=float,
        default=200.0,
        metavar="MS",
        help="on SIGHUP the policy file must read the same twice this far apart before it is loaded "
        "(default 200): a file still being written is never activated",
    )
    parser.add_argument(
        "--reload-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="on SIGHUP give up a reload whose load, lint and suites take longer than this (default 120 s); "
        "the old policy stays",
    )
    parser.add_argument(
        "--decision-log-fail-closed",
        action="store_true",
        help="deny every request while the decision log cannot be written (a full disk); by default the "
        "service keeps deciding and raises the health flag in status and state",
    )
    parser.add_argument(
        "--rate-limit", type=float, default=2000.0, metavar="N", help="requests per second per client (0 = no limit)"
    )
    parser.add_argument("--burst", type=float, default=200.0, metavar="N", help="requests a client may save up")
    parser.add_argument(
        "--explain-rate",
        type=float,
        default=20.0,
        metavar="N",
        help="explained decisions per second per client (each costs about 100 plain ones; default 20); "
        "all clients together get 5 times this",
    )
    parser.add_argument(
        "--max-connections-per-peer",
        type=int,
        default=128,
        metavar="N",
        help="connections one client process may hold open (default 128; all TCP clients count as one peer)",
    )
    parser.add_argument(
        "--input-nice",
        type=int,
        default=15,
        metavar="N",
        help="lower the CAN input threads' CPU priority by N (0..19, default 15) so decisions get the CPU first; "
        "input read late is detected and fails closed",
    )
    parser.add_argument(
        "--poll-us",
        type=float,
        default=200.0,
        metavar="US",
        help="after a client sends, poll this many microseconds for its next request before sleeping "
        "(0..10000, default 200; 0 = never poll, for the least CPU): saves the wake-up of the loop",
    )
    parser.set_defaults(run=serve)


def _uid(text: str) -> int:
    """argparse type: a user id, as a number or a name."""
    try:
        return int(text) if text.isdigit() else pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user: {text}") from None


def _gid(text: str) -> int:
    """argparse type: a group id, as a number or a name."""
    try:
        return int(text) if text.isdigit() else grp.getgrnam(text).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such group: {text}") from None


def serve(args: argparse.Namespace) -> int:
    """Load, listen, serve until SIGTERM; the exit code.  Unusable input raises ``DriveGateError``
    (the CLI prints it and exits 2)."""
    problem = _check_args(args)
    if problem:
        print(f"drivegate serve: {problem}", file=sys.stderr)
        return EXIT_UNUSABLE
    trusted = load_public_keys(args.trusted_key) if args.trusted_key else None
    decision_log = DecisionLog(args.decision_log, writer=args.decision_log_writer) if args.decision_log else None
    engine = Engine.load(args.vehicle, args.policy, decision_log=decision_log, trusted_keys=trusted)
    engine.fail_closed_on_log_error = args.decision_log_fail_closed
    for warning in engine.warnings:
        log(f"warning: {warning}")
    for part, problem in engine.health().items():
        log(f"warning: {part}: {problem}")
    config = ServiceConfig(
        socket_path=Path(args.socket),
        policy_path=Path(args.policy),
        policy_tests=tuple(Path(t) for t in args.policy_test),
        trusted_keys=trusted,
        tcp_port=args.tcp_port,
        allow_uids=frozenset(args.allow_uid),
        allow_gids=frozenset(args.allow_gid),
        rate=args.rate_limit,
        burst=args.burst,
        input_nice=args.input_nice,
        poll_s=args.poll_us / 1e6,
        explain_rate=args.explain_rate,
        explain_rate_total=args.explain_rate * 5,
        max_connections_per_peer=args.max_connections_per_peer,
        reload_settle_s=args.reload_settle_ms / 1000.0,
        reload_timeout_s=args.reload_timeout,
    )
    if args.tcp_port is not None and (config.allow_uids or config.allow_gids):
        log("warning: TCP peers carry no credentials; with --allow-uid/--allow-gid every TCP client is refused")
    elif args.tcp_port is not None:
        log(
            "warning: --tcp-port without --allow-uid/--allow-gid: any local user can connect over TCP "
            "(the Unix socket checks who connects; TCP cannot)"
        )
    service: Service

    def on_log_error(error: LogFormatError) -> None:
        service.log_errors += 1
        if service.log_errors <= 10:
            log(f"replay: {error}")

    replay = None
    if args.replay:
        # The player stands in for the car's bus, which in a car does not share the CPU: its
        # process runs at the input's priority so the simulation does not crowd out what it feeds.
        replay = ReplayPlayer(
            args.replay, profile_channel(engine), args.speed, args.loop, on_log_error, nice=args.input_nice
        )
    bus = parse_bus_spec(args.bus) if args.bus else None
    # Everything loaded so far (DBC, compiled policy, caches) lives as long as the process: move
    # it out of the collector's sight.  A full collection over it takes about 30 ms here, a stall
    # of every client's decisions when it happens; after freeze() it takes microseconds.
    gc.collect()
    gc.freeze()
    service = Service(engine, config, bus=bus, replay=replay)
    return run_service(service)


def _check_args(args: argparse.Namespace) -> str | None:
    if args.speed < 0:
        return "--speed must be >= 0"
    if not args.replay and (args.loop or args.speed != 1.0):
        return "--speed and --loop go with --replay"
    if args.tcp_port is not None and not 0 <= args.tcp_port <= 65535:
        return "--tcp-port must be 0..65535"
    if not 0 <= args.input_nice <= 19:
        return "--input-nice must be 0..19"
    if not 0 <= args.poll_us <= 10_000:
        return "--poll-us must be 0..10000"
    if args.rate_limit < 0 or args.burst < 1:
        return "--rate-limit must be >= 0 and --burst >= 1"
    if not args.explain_rate > 0:
        return "--explain-rate must be > 0"
    if not 0 < args.reload_timeout <= 86_400:
        return "--reload-timeout must be more than 0 and at most 86400"
    if not 0 <= args.reload_settle_ms <= 10_000:
        return "--reload-settle-ms must be 0..10000"
    if args.max_connections_per_peer < 1:
        return "--max-connections-per-peer must be >= 1"
    return None
