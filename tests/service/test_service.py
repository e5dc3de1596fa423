"""drivegate serve on the demo drive: real server process, real sockets, clients in other processes.

One server replays the demo drive at 20x (about 7 s) for the whole module.  A client process,
started before the server, subscribes and decides all along the drive, and records what it
sees until the replay has ended and the state has gone stale; the other tests use the same
server meanwhile, as other clients would (garbage, oversize, half-sent and flooding clients, 64
at once), and check it keeps serving.  The helpers here (``Server``, ``short_dir``) are shared
with ``test_service_lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT

from safety.client.aio import AsyncClient
from safety.client.client import Client
from safety.client.protocol import MAX_LINE_BYTES
from safety.model.decision import Outcome

# Real server, player or benchmark processes: the slow part of the suite (CI runs it all).
pytestmark = pytest.mark.slow

VIDEO = {"kind": "interaction", "category": "media", "modality": "visual", "content": "video", "priority": "low"}
READ_ALOUD = {
    "kind": "notification",
    "category": "message",
    "modality": "voice",
    "content": "text",
    "priority": "normal",
    "text_length": 80,
}
SPEED_MAX_AGE = 0.3  # dbc/demo_sedan.yaml: speed and gear (3 cycles of 100 ms)


def short_dir() -> Path:
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="dg-"))


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for sockets; no server is left behind when the test ends (shared by the
    service test modules, which import it)."""
    directory = short_dir()
    yield directory
    kill_leftovers()  # a failed test leaves no server behind
    shutil.rmtree(directory, ignore_errors=True)


RUNNING: list[Server] = []  # every server started, so a failed test leaves none behind


def kill_leftovers() -> None:
    while RUNNING:
        server = RUNNING.pop()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


class Server:
    """A ``drivegate serve`` subprocess; stderr goes to a file the test can read."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        policy: Path = DEFAULT_POLICY,
        name: str = "dg.sock",
        prefix: tuple[str, ...] = (),  # a command that runs the server (chrt, taskset, ...)
    ) -> None:
        self.socket = directory / name
        self.stderr_path = directory / f"{name}.err"
        self.args = [
            *prefix,
            sys.executable,
            "-m",
            "safety.cli",
            "serve",
            "--vehicle",
            str(DEMO_VEHICLE),
            "--policy",
            str(policy),
            "--socket",
            str(self.socket),
            *args,
        ]
        self.proc = self._start()
        RUNNING.append(self)

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.stderr_path, "ab") as err:
            return subprocess.Popen(self.args, cwd=ROOT, stderr=err, stdout=subprocess.DEVNULL)

    def restart(self) -> None:
        self.proc = self._start()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the server answers a ping, or refuses us: either way it listens."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with raw_connect(self.socket) as sock:
                    sock.sendall(b'{"v": 1, "op": "ping"}\n')
                    if read_line(sock, bytearray()) is not None:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready:\n{self.stderr}")
            time.sleep(0.02)

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{self.stderr}"
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def raw_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def read_line(sock: socket.socket, buffer: bytearray) -> dict[str, Any] | None:
    """The next line as JSON, None at end of stream."""
    while b"\n" not in buffer:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buffer += chunk
    end = buffer.index(b"\n")
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    result: dict[str, Any] = json.loads(line)
    return result


# The client that rides along the drive: subscribes (thread), decides every 10 ms, queues a
# deferred request when the workload is high, and stops once the replay has ended and the
# state went stale.  Prints "ready" once imported, then its record as JSON at the end.
DRIVE_CLIENT = r"""
import json, sys, threading, time
from safety.client.client import Client
path, video, read_aloud = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print("ready", flush=True)
import socket

while True:  # raw connects: the client's reconnect backoff would make this poll slower
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
        break
    except OSError:
        time.sleep(0.005)
    finally:
        probe.close()
client = Client(path, timeout=1.0)
events, done = [], threading.Event()
def listen():
    silent = False  # the drive ended parked and the state went unknown
    for event in Client(path).subscribe():
        events.append(event)
        if event["event"] == "driving_state" and event["value"] is None and event["previous"] == "parked":
            silent = True
        if event["event"] == "disconnected" or (silent and event["event"] == "restrictions"):
            break
    done.set()
threading.Thread(target=listen, daemon=True).start()
decisions, queued = [], None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    d = client.decide(video)
    decisions.append([d.state_time, d.outcome.value, list(d.rules)])
    if queued is None:
        q = client.decide({**read_aloud, "id": "defer-me", "ttl_ms": 600000})
        if q.outcome.value == "defer":
            queued = q.state_time
    if done.is_set():
        break
    time.sleep(0.01)
after = []
for _ in range(25):  # half a second more of silence: still failing closed
    d = client.decide(video)
    after.append([d.state_time, d.outcome.value, list(d.rules)])
    time.sleep(0.02)
status = client.status()
print(json.dumps({"events": events, "decisions": decisions, "after": after, "queued": queued, "status": status}))
"""


class Drive:
    def __init__(self, directory: Path, log: Path) -> None:
        self.rider = subprocess.Popen(
            [sys.executable, "-c", DRIVE_CLIENT, str(directory / "dg.sock"), json.dumps(VIDEO), json.dumps(READ_ALOUD)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.rider.stdout is not None
        assert self.rider.stdout.readline().strip() == "ready"  # imported: it will not miss the start
        self.server = Server(directory, "--replay", str(log), "--speed", "20")
        self._record: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        if self._record is None:
            out, _ = self.rider.communicate(timeout=60)
            assert self.rider.returncode == 0
            self._record = json.loads(out)
        return self._record


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drive]:
    log = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(log), "--quiet"], check=True)
    directory = short_dir()
    ride = Drive(directory, log)
    ride.server.wait_ready()
    yield ride
    if ride.rider.poll() is None:
        ride.rider.kill()
    try:
        assert ride.server.stop() == 0
    finally:
        kill_leftovers()
        shutil.rmtree(directory, ignore_errors=True)


def test_socket_file_is_0660_or_stricter(drive: Drive) -> None:
    mode = stat.S_IMODE(os.stat(drive.server.socket).st_mode)
    assert stat.S_ISSOCK(os.stat(drive.server.socket).st_mode)
    assert mode & ~0o660 == 0, oct(mode)
    assert mode == 0o660


def test_garbage_oversize_and_half_sent_requests_get_errors_while_others_are_served(drive: Drive) -> None:
    path = drive.server.socket
    good = Client(path, timeout=1.0)
    assert good.decide(VIDEO).rules != ("client-fallback",)

    half = raw_connect(path)
    half.sendall(b'{"v": 1, "op": "decide", "request": {"kind": "notif')  # and never the rest
    garbage = raw_connect(path)
    buffer = bytearray()
    for line, code in [
        (b"this is not json\n", "bad-json"),
        (b"[1, 2, 3]\n", "bad-json"),
        (b'{"v": 1}\n', "bad-request"),
        (b'{"v": 1, "op": "decide"}\n', "bad-request"),
        (b'{"v": 1, "op": "decide", "id": [1], "request": {}}\n', "bad-request"),
        (b'{"v": 2, "op": "ping"}\n', "unsupported-version"),
        (b'{"v": 1, "op": "reload", "id": "r"}\n', "unknown-op"),
        (b"\xff\xfe\x00garbage\n", "bad-json"),
    ]:
        garbage.sendall(line)
        response = read_line(garbage, buffer)
        assert response is not None and response["ok"] is False, line
        assert response["error"]["code"] == code, (line, response)
        assert good.decide(VIDEO).rules != ("client-fallback",)
    # The garbage client is still served after its errors.
    garbage.sendall(b'{"v": 1, "op": "ping", "id": "still-here"}\n')
    response = read_line(garbage, buffer)
    assert response is not None and response["ok"] is True and response["id"] == "still-here"
    # An invalid decision request is no protocol error: it is denied.
    garbage.sendall(json.dumps({"v": 1, "op": "decide", "id": 3, "request": {"kind": "x"}}).encode() + b"\n")
    response = read_line(garbage, buffer)
    assert response is not None and response["ok"] is True and response["outcome"] == "deny"
    assert response["rules"] == ["request-invalid"]

    oversize = raw_connect(path)
    oversize.sendall(b'{"v": 1, "op": "ping", "pad": "' + b"x" * (MAX_LINE_BYTES + 10))
    obuffer = bytearray()
    response = read_line(oversize, obuffer)
    assert response is not None and response["error"]["code"] == "line-too-long"
    assert read_line(oversize, obuffer) is None  # and disconnected

    half.close()  # mid-request
    assert good.decide(VIDEO).rules != ("client-fallback",)
    assert good.ping()["ok"] is True
    for sock in (garbage, oversize):
        sock.close()


def test_rate_limit_per_client(drive: Drive) -> None:
    flood = raw_connect(drive.server.socket)
    n = 1000
    flood.sendall(b"".join(b'{"v": 1, "op": "ping", "id": %d}\n' % i for i in range(n)))
    buffer = bytearray()
    responses = [read_line(flood, buffer) for _ in range(n)]
    flood.close()
    assert all(r is not None for r in responses)
    limited = [r for r in responses if r is not None and not r["ok"]]
    assert limited and all(r["error"]["code"] == "rate-limited" for r in limited)
    assert all(r["error"]["retry_after_ms"] >= 1 for r in limited)
    assert [r["id"] for r in responses if r is not None] == list(range(n))  # answered in order
    # Another client has its own bucket.
    assert Client(drive.server.socket, timeout=1.0).ping()["ok"] is True


def test_a_client_that_never_reads_is_dropped_without_stalling_others(drive: Drive) -> None:
    path = drive.server.socket
    hog = raw_connect(path)
    hog.sendall(b'{"v": 1, "op": "subscribe"}\n')
    line = json.dumps({"v": 1, "op": "decide", "request": VIDEO}).encode() + b"\n"
    sent = threading.Event()

    def flood() -> None:
        # About 4 MB of requests, never reading an answer.
        try:
            for _ in range(400):
                hog.sendall(line * 50)
        except OSError:
            pass  # dropped by the server
        sent.set()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    good = Client(path, timeout=1.0)
    served = 0
    while not sent.is_set():
        assert good.decide(VIDEO).rules != ("client-fallback",)
        served += 1
        time.sleep(0.002)
    flooder.join(timeout=10)
    assert served > 0
    status = good.status()
    assert status["dropped"] >= 1
    assert "dropped pid" in drive.server.stderr
    hog.close()


def test_64_concurrent_clients(drive: Drive) -> None:
    async def one(i: int) -> list[str]:
        async with AsyncClient(drive.server.socket, timeout=2.0) as client:
            outcomes = []
            for _ in range(20):
                decision = await client.decide({**VIDEO, "id": f"c{i}"})
                assert decision.rules != ("client-fallback",), decision.reason
                assert decision.request_id == f"c{i}"
                outcomes.append(decision.outcome.value)
            status = await client.status()
            assert status["clients"] >= 1
            return outcomes

    async def many() -> list[list[str]]:
        return await asyncio.gather(*(one(i) for i in range(64)))

    results = asyncio.run(many())
    assert len(results) == 64 and all(len(r) == 20 for r in results)


def test_state_and_status(drive: Drive) -> None:
    client = Client(drive.server.socket, timeout=1.0)
    state = client.state()
    assert set(state["values"]) >= {"speed", "gear", "steering_angle", "driving_state", "workload"}
    assert state["driving_state"] in (None, "parked", "stationary", "moving")
    status = client.status()
    deadline = time.monotonic() + 10
    while status["frames_total"] == 0 and time.monotonic() < deadline:  # run alone: the replay is starting
        time.sleep(0.05)
        status = client.status()
    assert status["input"] == "replay" and status["policy_name"] == "default"
    assert status["frames_total"] > 0 and status["uptime_s"] > 0
    for key in ("policy_hash", "frames_per_s", "stale_signals", "bus_errors", "clients", "replay"):
        assert key in status
    # The loop polled for this client's next request (after state) rather than sleeping at once.
    assert status["poll_us"] == 200.0 and status["idle_polls"] >= 1


def test_decisions_and_events_follow_the_drive_then_fail_closed_when_it_ends(drive: Drive) -> None:
    record = drive.record()
    events, decisions, status = record["events"], record["decisions"], record["status"]
    assert events[0]["event"] == "snapshot"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # driving_state in order: parked -> ... stationary/moving ... -> parked -> unknown (silence).
    states = [events[0]["driving_state"]] + [e["value"] for e in events if e["event"] == "driving_state"]
    while states and states[0] is None:
        states.pop(0)
    assert states[0] == "parked"
    assert states[-1] is None and states[-2] == "parked"
    middle = states[1:-2]
    assert "moving" in middle and "stationary" in middle and "parked" not in middle
    assert all(a != b for a, b in itertools.pairwise(states))  # only changes are pushed

    # The silence is announced: stale signals, then driving_state unknown, after the last frame.
    last_frame = status["last_frame_time"]
    assert status["replay"]["done"] is True
    stale = [e for e in events if e["event"] == "stale" and e["signals"]]
    assert stale and stale[-1]["time"] > last_frame
    assert {"speed", "gear"} & set(stale[-1]["signals"])  # what driving_state needs
    assert any(e["event"] == "driving_state" and e["value"] is None and e["time"] > last_frame for e in events)
    restrictions = [e for e in events if e["event"] == "restrictions"]
    assert restrictions[-1]["restrictions"]["video"] == "deny"

    # Decisions changed with the drive: video allowed parked, denied while driving.
    outcomes = [(outcome, rules) for _, outcome, rules in decisions]
    assert ("allow", ["parked-allow"]) in outcomes
    assert ("deny", ["lockout-video"]) in outcomes
    assert all(rules != ["client-fallback"] for _, rules in outcomes)
    # Fail closed within max_age: no allow once gear and speed are older than their max age.
    late = [d for d in decisions + record["after"] if d[0] is not None and d[0] > last_frame + SPEED_MAX_AGE + 1e-3]
    assert late and all(outcome != "allow" for _, outcome, _ in late)
    assert all(outcome == "deny" for _, outcome, _ in record["after"])

    # The request deferred under high workload was released by an event when the workload dropped.
    assert record["queued"] is not None
    released = [e for e in events if e["event"] == "deferred" and e["request_id"] == "defer-me"]
    assert released and released[0]["kind"] == "deliverable"
    assert released[0]["decision"]["outcome"] in (Outcome.ALLOW, Outcome.DEGRADE)
    assert released[0]["time"] > record["queued"]
