"""Builds the service from ``drivegate serve`` arguments and runs it."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from ..decisionlog import DecisionLog
from ..engine import Engine
from ..errors import LogFormatError
from ..replay import profile_channel
from ..signing import load_public_keys
from .inputs import parse_bus_spec
from .player import ReplayPlayer
from .server import Service, ServiceConfig, log, run_service


def serve(args: argparse.Namespace) -> int:
    """Load, listen, serve until SIGTERM; the exit code.  Unusable input raises ``DriveGateError``
    (the CLI prints it and exits 2)."""
    problem = _check_args(args)
    if problem:
        print(f"drivegate serve: {problem}", file=sys.stderr)
        return 2
    trusted = load_public_keys(args.trusted_key) if args.trusted_key else None
    decision_log = DecisionLog(args.decision_log, writer=args.decision_log_writer) if args.decision_log else None
    engine = Engine.load(args.vehicle, args.policy, decision_log=decision_log, trusted_keys=trusted)
    for warning in engine.warnings:
        log(f"warning: {warning}")
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
    )
    if args.tcp_port is not None and (config.allow_uids or config.allow_gids):
        log("warning: TCP peers carry no credentials; with --allow-uid/--allow-gid every TCP client is refused")
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
    return None
