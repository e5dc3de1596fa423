"""``drivegate serve``: the decision service for the head unit's other processes.

A local socket API (Unix domain socket, optionally TCP on loopback) speaking newline-delimited
JSON (``docs/protocol.md``): ``decide``, ``state``, ``status``, ``subscribe`` (push events),
``ping``.  CAN input from a python-can bus (``--bus``) or a log replayed onto an in-process
virtual bus (``--replay``); live time, so a silent bus fails closed.  SIGTERM drains and exits
0; SIGHUP reloads the policy (the old one stays on failure).

Modules: :mod:`.protocol` (wire format, shared with :mod:`safety.client`), :mod:`.clock` (live
time), :mod:`.inputs` (CAN input threads), :mod:`.events` (push events), :mod:`.peers` (socket
permissions, peer credentials), :mod:`.server` (asyncio server), :mod:`.cli` (wiring).  This
module only registers the command, so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import grp
import pwd
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add ``serve`` to the ``drivegate`` command line."""
    parser = sub.add_parser(
        "serve",
        help="run the decision service on a local socket",
        description="Serve decisions over a Unix socket (newline-delimited JSON, see docs/protocol.md), "
        "from a live CAN bus or a replayed log.  SIGTERM drains and exits 0; SIGHUP reloads the policy.",
    )
    parser.add_argument("--vehicle", required=True, help="vehicle profile (YAML beside its DBC)")
    parser.add_argument("--policy", required=True, help="policy file (YAML); SIGHUP reloads it from this path")
    parser.add_argument(
        "--policy-test",
        action="append",
        default=[],
        metavar="SUITE",
        help="on SIGHUP the new policy must also pass this test suite (repeatable); it is always linted",
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
        "--rate-limit", type=float, default=2000.0, metavar="N", help="requests per second per client (0 = no limit)"
    )
    parser.add_argument("--burst", type=float, default=200.0, metavar="N", help="requests a client may save up")
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
    parser.set_defaults(run=run)


def _uid(text: str) -> int:
    try:
        return int(text) if text.isdigit() else pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user: {text}") from None


def _gid(text: str) -> int:
    try:
        return int(text) if text.isdigit() else grp.getgrnam(text).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such group: {text}") from None


def run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM; 0 when it drained cleanly, 2 on unusable input."""
    from .cli import serve

    return serve(args)
