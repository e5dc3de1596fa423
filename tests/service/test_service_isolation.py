"""#11 item 1 on a real server: a client's deferred requests are its own, whatever ids others send.

Reproduced first: a second client process sending a voice request with the victim's id
``msg-1`` replaced the victim's deferred visual request, and when the workload dropped every
subscriber (the victim too) got ``deferred msg-1 deliverable allow {}``.  Here two client
processes, each with a request connection and an event connection as the protocol recommends,
queue ``msg-1`` while the replayed car turns sharply; each must get exactly its own release.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, DemoCar
from test_service import Server, kill_leftovers, short_dir

from safety import Engine
from safety.io.frame import Frame
from safety.io.write import write_frames

pytestmark = pytest.mark.slow

TURN_S, DRIVE_S = 6.0, 16.0  # sharp turn (workload high), then straight (the IDIS hold ends 3 s later)


def turn_then_straight(path: Path) -> Path:
    """A candump log of the demo sedan: turning sharply at 15 km/h, then driving straight."""
    car = DemoCar(Engine.load(DEMO_VEHICLE, DEFAULT_POLICY))
    frames: list[can.Message] = []
    car.engine.on_frame = frames.append  # type: ignore[method-assign]  # collect instead of deciding
    step = 0.02
    for i in range(round(DRIVE_S / step)):
        t = i * step
        car.state(t, speed=15.0, gear="D", parking_brake="RELEASED", angle=200.0 if t < TURN_S else 0.0)
    write_frames(
        path,
        (Frame(m.timestamp, m.arbitration_id, m.is_extended_id, bytes(m.data), m.channel) for m in frames),
    )
    return path


# One client process: a request connection and an event connection.  Waits for high workload,
# queues msg-1, then prints every deferred event its event connection receives.
CLIENT = r"""
import json, socket, sys, time
path, modality, session = sys.argv[1], sys.argv[2], sys.argv[3] or None
def connect():
    if path.startswith("tcp:"):
        s = socket.create_connection(("127.0.0.1", int(path[4:])), timeout=20)
    else:
        s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(path)
    return s, bytearray()
def line(conn):
    s, buf = conn
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk: return None
        buf += chunk
    i = buf.index(b"\n"); out = json.loads(bytes(buf[:i])); del buf[: i + 1]; return out
def ask(conn, message):
    conn[0].sendall(json.dumps(message).encode() + b"\n"); return line(conn)
requests, events = connect(), connect()
envelope = {"session": session} if session else {}
events[0].sendall(json.dumps({"v": 1, "op": "subscribe", "id": "ev", **envelope}).encode() + b"\n")
while ask(requests, {"v": 1, "op": "state"})["workload"] != "high":
    time.sleep(0.02)
request = {"id": "msg-1", "kind": "notification", "category": "message", "modality": modality,
           "content": "text", "priority": "normal", "text_length": 80, "ttl_ms": 60000}
decided = ask(requests, {"v": 1, "op": "decide", "request": request, **envelope})
print(json.dumps({"decided": decided["outcome"], "reason": decided["reason"]}), flush=True)
deadline = time.monotonic() + 25
while time.monotonic() < deadline:
    event = line(events)
    if event is None: break
    if event.get("event") == "deferred":
        print(json.dumps(event), flush=True)
    if event.get("event") == "shutdown": break
"""


@pytest.fixture
def server() -> Iterator[Server]:
    directory = short_dir()
    log = turn_then_straight(directory / "turn.log")
    srv = Server(directory, "--replay", str(log), "--speed", "1", "--tcp-port", "0")
    srv.wait_ready()
    srv.wait_log("tcp:127.0.0.1:")
    yield srv
    srv.stop()
    kill_leftovers()


def run_client(address: Path | str, modality: str, session: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(address), modality, session], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def test_each_client_gets_its_own_deferred_release_and_no_one_elses(server: Server) -> None:
    (port,) = re.findall(r"tcp:127\.0\.0\.1:(\d+)", server.stderr)
    clients = {
        "victim": run_client(server.socket, "visual"),
        "attacker": run_client(server.socket, "voice"),
        # Over TCP there are no peer credentials: a session ties the two connections together.
        "tcp": run_client(f"tcp:{port}", "voice", "s-" + "7" * 30),
        "tcp without a session": run_client(f"tcp:{port}", "voice"),
    }
    outputs: dict[str, list[dict[str, Any]]] = {}
    for name, proc in clients.items():
        out, _ = proc.communicate(timeout=60)
        outputs[name] = [json.loads(line) for line in out.splitlines()]
    for name in outputs:
        first, *events = outputs[name]
        assert first["decided"] == "defer" and first["reason"].endswith("(queued until deliverable or expired)"), name
        expected = [] if name == "tcp without a session" else [("msg-1", "deliverable")]
        assert [(e["request_id"], e["kind"]) for e in events] == expected, (name, events)
    assert outputs["tcp"][1]["decision"]["outcome"] == "allow"
    victim_release = outputs["victim"][1]["decision"]
    attacker_release = outputs["attacker"][1]["decision"]
    assert (victim_release["outcome"], victim_release["constraints"]) == ("degrade", {"modality": "voice"})
    assert attacker_release["outcome"] == "allow"
