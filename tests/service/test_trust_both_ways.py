"""#11 items 8 and 9: trust between server and client, across users, on real sockets and processes.

Reproduced first (as root, with a second user): ``Client`` took the answer of whoever owned the
socket path (a squatter in a world-writable directory made it return allow), and a ``serve``
facing another user's stale socket died with a PermissionError traceback (exit 1, not 2).
These tests need root, to run processes as other users; they skip elsewhere.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_VEHICLE, ROOT
from test_service import READ_ALOUD, kill_leftovers, short_dir

from safety.client.aio import AsyncClient
from safety.client.client import Client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="running processes as other users needs root"),
]
NOBODY, DAEMON = 65534, 1

# A squatter: answers every decide with allow.
SQUATTER = r"""
import json, os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX); server.bind(path); os.chmod(path, 0o666); server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    for line in conn.makefile("rb"):
        message = json.loads(line)
        reply = {"v": 1, "ok": True, "op": message.get("op"), "id": message.get("id"), "outcome": "allow",
                 "rules": ["squatter"], "reason": "trust me", "constraints": {}, "policy_hash": "x",
                 "state_time": 0.0, "request_id": None}
        conn.sendall(json.dumps(reply).encode() + b"\n")
"""


@pytest.fixture
def sticky() -> Iterator[Path]:
    """A world-writable directory with the sticky bit, as /tmp."""
    directory = short_dir()
    directory.chmod(0o1777)
    yield directory
    kill_leftovers()


@functools.cache
def as_nobody() -> tuple[list[str], dict[str, str]]:
    """A Python command line (and environment) user nobody can run with DriveGate importable.

    This interpreter may live under /root (pyenv); the system's python3 of the same version can
    then run with this environment's site-packages and the project on its path.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])}
    for python in (sys.executable, shutil.which("python3.11") or "", "/usr/bin/python3"):
        if not python:
            continue
        try:
            ok = (
                subprocess.run(
                    [python, "-c", "import safety.cli, orjson, yaml, cantools"],
                    user=NOBODY,
                    env=env,
                    capture_output=True,
                    timeout=60,
                    cwd="/",
                ).returncode
                == 0
            )
        except OSError:
            ok = False
        if ok:
            return [python], env
    pytest.skip("no Python that user nobody can run with DriveGate importable")


def squatter(path: Path) -> subprocess.Popen[str]:
    python, env = as_nobody()
    proc = subprocess.Popen(
        [*python, "-c", SQUATTER, str(path)], user=NOBODY, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_the_client_fails_closed_on_a_server_of_another_user(sticky: Path) -> None:
    path = sticky / "dg.sock"
    proc = squatter(path)
    try:
        decision = Client(path, timeout=1.0).decide(READ_ALOUD)
        assert decision.outcome.value == "deny" and decision.rules == ("client-fallback",)
        assert decision.reason == (
            f"decision service unavailable (untrusted-server: the process on {path} runs as uid {NOBODY}, "
            "not 0 (server_uid): not the decision service); failing closed: deny"
        )
        # Pinned to that user, the same client believes it: the check is the peer's uid.
        assert Client(path, timeout=1.0, server_uid=NOBODY).decide(READ_ALOUD).rules == ("squatter",)

        async def asynchronous() -> str:
            async with AsyncClient(path, timeout=1.0) as client:
                return (await client.decide(READ_ALOUD)).rules[0]

        import asyncio

        assert asyncio.run(asynchronous()) == "client-fallback"
    finally:
        proc.kill()
        proc.wait()


def stale_socket(path: Path, owner: int, mode: int) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # bound, never listening: what a killed server leaves
    os.chown(path, owner, owner)
    path.chmod(mode)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            0o600,
            "{path} belongs to uid 1 and this user may not connect to it, so cannot tell whether a server listens "
            "there; remove it (as its owner) or choose another --socket",
        ),
        (
            0o666,
            "cannot remove the stale socket {path} (uid 1): Operation not permitted; remove it as its owner or "
            "choose another --socket",
        ),
    ],
    ids=["cannot-connect", "cannot-remove"],
)
def test_serve_facing_another_users_stale_socket_exits_2_with_the_reason(sticky: Path, mode: int, message: str) -> None:
    path = sticky / "dg.sock"
    stale_socket(path, DAEMON, mode)
    started = time.monotonic()
    python, env = as_nobody()
    result = subprocess.run(
        [
            *python,
            "-m",
            "safety.cli",
            "serve",
            "--vehicle",
            str(DEMO_VEHICLE),
            "--policy",
            "default",
            "--socket",
            str(path),
        ],
        cwd="/",
        env=env,
        user=NOBODY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"socket-in-use: {message.format(path=path)}" in result.stderr
    assert path.exists() and time.monotonic() - started < 60
