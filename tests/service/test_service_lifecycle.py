"""drivegate serve life cycle: kill and restart, hang, refusal, SIGTERM, SIGHUP, TCP, bus input.

Each test runs its own server process.  Servers without CAN input start fastest and are used
wherever the input does not matter: with no frames every decision fails closed, which is a
decision of the server all the same (not the client's fallback).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, ROOT
from test_service import (
    VIDEO,
    Server,
    raw_connect,
    read_line,
)
from test_service import sockdir as shared_sockdir

from safety.client.client import Client, Fallback
from safety.errors import ServiceError
from safety.model.decision import Outcome
from safety.policy import load_policy
from safety.policy.signing import generate_key, load_private_key, sign_policy

# Real server, player or benchmark processes: the slow part of the suite (CI runs it all).
sockdir = shared_sockdir  # the service modules' shared fixture, by the name the tests ask for
pytestmark = pytest.mark.slow

FALLBACK = ("client-fallback",)


@pytest.fixture(scope="module")
def looping_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(log), "--quiet"], check=True)
    return log


def test_killed_or_hung_server_fails_closed_within_the_timeout_and_recovers(sockdir: Path) -> None:
    server = Server(sockdir)
    server.wait_ready()
    voice = Fallback(Outcome.DEGRADE, {"modality": "voice"})
    client = Client(server.socket, timeout=0.05, fallback=voice)
    assert client.decide(VIDEO).rules != FALLBACK

    # Hung (stopped, socket open): the call gives up after its timeout, with the fallback.
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        decision = client.decide({**VIDEO, "id": "v1"})
        elapsed = time.monotonic() - started
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert decision.rules == FALLBACK and decision.outcome is Outcome.DEGRADE
    assert decision.constraints == {"modality": "voice"} and decision.request_id == "v1"
    assert "timeout" in decision.reason
    assert elapsed < 1.0  # bounded by the 50 ms timeout, not by the server (generous for a loaded CI)

    # Killed: fails closed at once; the socket file stays behind, as after a crash.
    server.proc.kill()
    server.proc.wait()
    for _ in range(3):
        decision = client.decide(VIDEO)
        assert decision.rules == FALLBACK and decision.outcome is not Outcome.ALLOW
    assert "unreachable" in decision.reason or "reconnecting" in decision.reason
    with pytest.raises(ServiceError, match=r"unavailable|unreachable"):
        client.status()

    # Restarted on the same path (the stale socket file is replaced): the same client recovers.
    server.restart()
    server.wait_ready()
    deadline = time.monotonic() + 10
    while (decision := client.decide(VIDEO)).rules == FALLBACK:
        assert time.monotonic() < deadline, decision.reason
        time.sleep(0.02)
    assert decision.outcome is Outcome.DENY  # no frames: the server fails closed by itself
    assert server.stop() == 0


def test_refused_uid_is_disconnected_with_an_error_and_logged(sockdir: Path) -> None:
    other_uid, our_gid = os.getuid() + 4242, os.getgid()
    refused = Server(sockdir, "--allow-uid", str(other_uid), name="refused.sock")
    by_group = Server(sockdir, "--allow-uid", str(other_uid), "--allow-gid", str(our_gid), name="group.sock")
    refused.wait_ready()
    by_group.wait_ready()
    sock = raw_connect(refused.socket)
    buffer = bytearray()
    response = read_line(sock, buffer)
    assert response is not None and response["ok"] is False and response["error"]["code"] == "refused"
    assert read_line(sock, buffer) is None  # disconnected
    sock.close()
    decision = Client(refused.socket, timeout=0.5).decide(VIDEO)
    assert decision.rules == FALLBACK and decision.outcome is Outcome.DENY
    assert "refused" in decision.reason
    for _ in range(20):  # the server may close before the request is sent: a race, so run it often
        events = list(Client(refused.socket, timeout=0.5).subscribe())  # the refusal ends the subscription
        assert [e["event"] for e in events] == ["disconnected"]
        assert events[0]["reason"].startswith("refused by the service: "), events[0]["reason"]
    refused.wait_log(f"refused pid {os.getpid()} uid {os.getuid()}")

    assert Client(by_group.socket, timeout=0.5).decide(VIDEO).rules != FALLBACK  # our gid is allowed
    assert refused.stop() == 0 and by_group.stop() == 0


def test_sigterm_drains_and_exits_0(sockdir: Path, looping_log: Path) -> None:
    decisions = sockdir / "decisions.jsonl"
    server = Server(sockdir, "--replay", str(looping_log), "--speed", "20", "--loop", "--decision-log", str(decisions))
    server.wait_ready()
    events = Client(server.socket).subscribe()
    assert next(events)["event"] == "snapshot"
    client = Client(server.socket, timeout=0.5)
    assert client.decide(VIDEO).rules != FALLBACK
    assert client.decide({**VIDEO, "id": "last"}).rules != FALLBACK
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    # The decision log is finished: every record, and nothing past the last one.
    records = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert len(records) == 2 and records[-1]["request"]["id"] == "last"
    kinds = [event["event"] for event in events]
    assert kinds[-2:] == ["shutdown", "disconnected"]
    assert not server.socket.exists()  # the socket file is removed
    assert client.decide(VIDEO).rules == FALLBACK
    assert "draining" in server.stderr and "stopped" in server.stderr


def test_sighup_reloads_the_policy_and_keeps_the_old_one_when_the_new_is_broken_or_fails_its_tests(
    sockdir: Path,
) -> None:
    policy = sockdir / "policy.yaml"
    original = DEFAULT_POLICY.read_text()
    policy.write_text(original)
    server = Server(sockdir, "--policy-test", str(ROOT / "policies" / "tests" / "default.yaml"), policy=policy)
    server.wait_ready()
    client = Client(server.socket, timeout=0.5)
    old_hash = client.status()["policy_hash"]
    assert old_hash == load_policy(policy).hash
    events = Client(server.socket).subscribe()
    assert next(events)["policy_hash"] == old_hash

    policy.write_text(original.replace("rules:", "rules:\n  - id: [broken\n", 1))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload failed, keeping policy")
    assert client.status()["policy_hash"] == old_hash  # still serving the old policy
    assert client.decide(VIDEO).policy_hash == old_hash

    # Loads and lints, but fails its test suite (video allowed while driving): refused too.
    unsafe = original.replace("content: video}\n    outcome: deny", "content: video}\n    outcome: allow", 1)
    assert unsafe != original
    policy.write_text(unsafe)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while server.stderr.count("reload failed, keeping policy") < 2:
        assert time.monotonic() < deadline, server.stderr
        time.sleep(0.02)
    assert "video is locked out while moving" in server.stderr  # the failing case is named
    assert client.status()["policy_hash"] == old_hash

    policy.write_text(original.replace("name: default", "name: default-v2", 1))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload active")
    new_hash = load_policy(policy).hash
    assert new_hash != old_hash
    status = client.status()
    assert status["policy_hash"] == new_hash and status["policy_name"] == "default-v2"
    assert client.decide(VIDEO).policy_hash == new_hash
    event = next(e for e in events if e["event"] == "policy")
    assert event["policy_hash"] == new_hash and event["previous"] == old_hash
    assert server.stop() == 0


def test_serve_with_trusted_keys_runs_only_signed_policies(sockdir: Path) -> None:
    key = load_private_key(generate_key(sockdir / "k")[0])
    policy = sockdir / "policy.yaml"
    original = DEFAULT_POLICY.read_text()
    policy.write_text(original)
    unsigned = Server(sockdir, "--trusted-key", str(sockdir / "k.pub"), policy=policy, name="u.sock")
    assert unsigned.proc.wait(timeout=30) == 2
    assert f"{policy}.sig: signature-missing: {policy} is not signed" in unsigned.stderr

    sign_policy(policy, key)
    server = Server(sockdir, "--trusted-key", str(sockdir / "k.pub"), policy=policy)
    server.wait_ready()
    client = Client(server.socket, timeout=0.5)
    status = client.status()
    key_id = status["policy_signed_by"]
    assert key_id is not None and len(key_id) == 16
    old_hash = status["policy_hash"]

    policy.write_text(original.replace("name: default", "name: default-v2", 1))  # edited, not signed again
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload failed, keeping policy")
    assert "signature-mismatch: policy.yaml has changed since it was signed" in server.stderr
    assert client.status()["policy_hash"] == old_hash

    sign_policy(policy, key)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload active")
    status = client.status()
    assert (status["policy_name"], status["policy_signed_by"]) == ("default-v2", key_id)
    assert server.stop() == 0


def test_tcp_on_loopback_and_a_python_can_bus(sockdir: Path) -> None:
    server = Server(sockdir, "--tcp-port", "0", "--bus", "virtual:drivegate-test,receive_own_messages=false")
    server.wait_ready()
    server.wait_log("tcp:127.0.0.1:")
    match = re.search(r"tcp:127\.0\.0\.1:(\d+)", server.stderr)
    assert match is not None
    client = Client(("127.0.0.1", int(match.group(1))), timeout=0.5)
    status = client.status()
    assert status["input"] == "bus" and status["frames_total"] == 0
    assert client.decide(VIDEO).outcome is Outcome.DENY  # nothing on the bus: fail closed
    assert "reading CAN bus virtual:drivegate-test" in server.stderr
    with socket.socket(socket.AF_INET) as probe:  # not reachable on another address
        probe.settimeout(0.5)
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            assert probe.connect_ex((other, int(match.group(1)))) != 0
    assert server.stop() == 0


def test_flat_out_replay_of_a_log_with_a_bad_line(sockdir: Path, looping_log: Path) -> None:
    # The player process reports the bad line, plays every other frame, and the end of the log
    # is a silence: decisions fail closed.
    lines = looping_log.read_text().splitlines(keepends=True)[:200]
    log = sockdir / "bad.log"
    log.write_text("".join(lines[:50]) + "garbage line here\n" + "".join(lines[50:]))
    server = Server(sockdir, "--replay", str(log), "--speed", "0")
    server.wait_ready()
    client = Client(server.socket, timeout=0.5)
    deadline = time.monotonic() + 20
    while not (status := client.status())["replay"]["done"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["replay"] == {
        "frames_sent": 200,
        "passes": 1,
        "done": True,
        "backlog": 0,
        "log_errors": 1,
        "error": None,
    }
    assert status["frames_total"] == 200
    server.wait_log(f"replay: {log}:51: log-format: bad timestamp: found 'garbage'")
    time.sleep(0.6)  # past every signal's max_age_ms
    assert client.decide(VIDEO).outcome is Outcome.DENY
    assert set(client.status()["stale_signals"]) >= {"speed", "gear"}
    assert server.stop() == 0


def test_unusable_arguments_exit_2(sockdir: Path) -> None:
    bad_bus = Server(sockdir, "--bus", "no-colon-here", name="a.sock")
    bad_log = Server(sockdir, "--replay", str(sockdir / "missing.log"), name="b.sock")
    bad_speed = Server(sockdir, "--speed", "3", name="c.sock")
    bad_poll = Server(sockdir, "--poll-us", "-5", name="e.sock")
    assert bad_bus.proc.wait(timeout=30) == 2 and "expected INTERFACE:CHANNEL" in bad_bus.stderr
    assert bad_log.proc.wait(timeout=30) == 2 and "missing.log" in bad_log.stderr
    assert bad_speed.proc.wait(timeout=30) == 2 and "--speed and --loop go with --replay" in bad_speed.stderr
    assert bad_poll.proc.wait(timeout=30) == 2 and "--poll-us must be 0..10000" in bad_poll.stderr

    no_bus = Server(sockdir, "--bus", "socketcan:nope0", name="d.sock")  # no such interface here
    assert no_bus.proc.wait(timeout=30) == 2 and "cannot open the CAN bus socketcan:nope0" in no_bus.stderr
    assert not no_bus.socket.exists()  # it had listened: the socket file is removed again

    (sockdir / "taken.sock").write_text("not a socket")
    taken = Server(sockdir, name="taken.sock")
    assert taken.proc.wait(timeout=30) == 2 and "not a socket" in taken.stderr
    assert (sockdir / "taken.sock").read_text() == "not a socket"  # left alone


def test_poll_us_0_and_a_real_time_policy_never_poll(sockdir: Path) -> None:
    server = Server(sockdir, "--poll-us", "0")
    server.wait_ready()
    client = Client(server.socket, timeout=0.5)
    assert all(client.decide(VIDEO).rules != FALLBACK for _ in range(20))
    status = client.status()
    assert (status["poll_us"], status["idle_polls"]) == (0.0, 0)
    assert server.stop() == 0

    chrt = shutil.which("chrt")
    if chrt is None or subprocess.run([chrt, "-f", "1", "true"], capture_output=True).returncode != 0:
        pytest.skip("no permission to run under SCHED_FIFO here")
    realtime = Server(sockdir, name="rt.sock", prefix=(chrt, "-f", "1"))
    realtime.wait_ready()
    client = Client(realtime.socket, timeout=0.5)
    assert all(client.decide(VIDEO).rules != FALLBACK for _ in range(20))
    status = client.status()
    assert (status["poll_us"], status["idle_polls"]) == (0.0, 0)
    assert "not polling for requests (--poll-us) under the real-time policy SCHED_FIFO" in realtime.stderr
    assert realtime.stop() == 0


def test_a_failed_call_backs_off_the_next_connect_and_a_success_ends_the_backoff(sockdir: Path) -> None:
    client = Client(sockdir / "dg.sock", timeout=0.5)
    first = client.decide(VIDEO)
    assert first.rules == FALLBACK and "unreachable" in first.reason
    second = client.decide(VIDEO)  # at once: not even tried while backing off
    assert second.rules == FALLBACK and re.search(r"reconnecting in (1\d|20) ms", second.reason), second.reason
    server = Server(sockdir)
    server.wait_ready()
    time.sleep(0.05)
    assert client.decide(VIDEO).rules != FALLBACK  # reconnected (no input: the server's own deny)
    assert server.stop() == 0
    assert client.decide(VIDEO).rules == FALLBACK
    # The success ended the backoff: it starts again from its first step, not from where it was.
    again = client.decide(VIDEO)
    assert re.search(r"reconnecting in (1\d|20) ms", again.reason), again.reason
