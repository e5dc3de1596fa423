"""#11 item 6: a policy file caught mid-write is never activated.

Reproduced first: SIGHUP while the file was being written, without ``--policy-test``, activated
a truncated prefix 4 times in 30 (50 of the 1,143 prefixes of ``default.yaml`` load and lint
clean), and a critical request then got a plain deny with no rule.  Two layers are tested on a
real server: the bytes must be stable (a slow writer is waited for), and the suites a policy
names itself (``tests:``) run on every reload, so a prefix that stays put long enough to settle
still fails.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT
from test_service import (
    Server,
)
from test_service import sockdir as shared_sockdir

from safety import Engine
from safety.client.client import Client
from safety.errors import DriveGateError
from safety.policy import compile_policy, parse_policy_text

sockdir = shared_sockdir  # the service modules' shared fixture, by the name the tests ask for
pytestmark = pytest.mark.slow


def versions(directory: Path, n: int) -> list[str]:
    """``n`` complete variants of the default policy, naming its suite near the top."""
    shutil.copy(ROOT / "policies" / "tests" / "default.yaml", directory / "suite.yaml")
    text = DEFAULT_POLICY.read_text()
    texts = []
    for i in range(n):
        head = f"version: 1\nname: default-v{i}\ntests: [suite.yaml]\n"
        texts.append(text.replace("version: 1\nname: default\n", head, 1))
    assert all(t != text for t in texts)
    return texts


def policy_hash(directory: Path, text: str) -> str:
    return compile_policy(parse_policy_text(str(directory / "policy.yaml"), text)).hash


def activations(server: Server) -> list[str]:
    return re.findall(r"reload active: policy '[^']*' ([0-9a-f]{16})", server.stderr)


def test_a_slow_writer_under_a_storm_of_sighups_never_activates_a_partial_file(sockdir: Path) -> None:
    texts = versions(sockdir, 5)
    policy = sockdir / "policy.yaml"
    policy.write_text(texts[0])
    complete = {policy_hash(sockdir, t) for t in texts}
    server = Server(sockdir, policy=policy)
    server.wait_ready()
    stop = threading.Event()

    def sighups() -> None:
        while not stop.is_set():
            server.proc.send_signal(signal.SIGHUP)
            time.sleep(0.03)

    storm = threading.Thread(target=sighups)
    storm.start()
    try:
        for text in texts[1:]:
            with policy.open("w") as handle:  # in place, 40 chunks 15 ms apart: 0.6 s mid-write
                step = len(text) // 40 + 1
                for start in range(0, len(text), step):
                    handle.write(text[start : start + step])
                    handle.flush()
                    time.sleep(0.015)
            time.sleep(1.5)  # whole for a while: a reload takes it
    finally:
        stop.set()
        storm.join()
    deadline = time.monotonic() + 30
    while policy_hash(sockdir, texts[-1]) not in activations(server):
        assert time.monotonic() < deadline, server.stderr[-3000:]
        time.sleep(0.1)
    active = activations(server)
    assert active and set(active) <= complete, [h for h in active if h not in complete]
    assert server.stop() == 0  # and SIGTERM still works after the storm


def test_a_prefix_that_settles_fails_the_suites_the_policy_names(sockdir: Path) -> None:
    (full,) = versions(sockdir, 1)
    # The prefixes cut at a rule boundary that load and lint clean: without the suites layer
    # each of these would be activated (the reproduction of the finding, in process).
    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    cuts = []
    for match in re.finditer(r"\n  - id:", full):
        prefix = full[: match.start() + 1].replace("tests: [suite.yaml]\n", "")
        with contextlib.suppress(DriveGateError):
            engine.reload(compile_policy(parse_policy_text(str(sockdir / "policy.yaml"), prefix)))
            cuts.append(match.start() + 1)
    assert len(cuts) >= 2, "no prefix loads and lints clean: the test would prove nothing"
    policy = sockdir / "policy.yaml"
    policy.write_text(full)
    server = Server(sockdir, policy=policy)
    server.wait_ready()
    for n, cut in enumerate(cuts, 1):
        policy.write_text(full[:cut])  # a writer that died (or paused for long) after this much
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while server.stderr.count("reload failed, keeping policy") < n:
            assert time.monotonic() < deadline, server.stderr[-3000:]
            time.sleep(0.05)
    assert activations(server) == []
    assert server.stderr.count("policy-check:") == len(cuts)
    # Dropping tests: from the file is refused too, while the running policy names its suites.
    policy.write_text(full.replace("tests: [suite.yaml]\n", ""))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("this one names none: a file cut short?")
    assert activations(server) == []
    assert server.stop() == 0


def test_an_alias_bomb_sent_by_sighup_is_refused_and_the_server_keeps_serving(sockdir: Path) -> None:
    """#11 item 5: a bomb by SIGHUP took the server from 109 MB to 1 GB, made pings take 1.7 s and
    kept SIGTERM from working (the reload thread was not a daemon)."""
    policy = sockdir / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text())
    server = Server(sockdir, policy=policy)
    server.wait_ready()
    levels = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 12)]
    policy.write_text("\n".join(levels) + "\n")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload failed, keeping policy")
    assert "yaml-limit: aliases expand to more than 10000 values (an alias bomb?)" in server.stderr
    with Client(server.socket, timeout=1.0) as client:
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started < 1.0
    stopped = time.monotonic()
    assert server.stop() == 0 and time.monotonic() - stopped < 5.0


def test_a_reload_that_takes_too_long_is_given_up_and_later_reloads_work(sockdir: Path) -> None:
    """#11 item 8: a 20,000-rule policy's load and lint take minutes; by SIGHUP it held every
    later reload behind it.  Past --reload-timeout it is given up and never activated."""
    policy = sockdir / "policy.yaml"
    original = DEFAULT_POLICY.read_text()
    policy.write_text(original)
    server = Server(sockdir, "--reload-timeout", "2", policy=policy)
    server.wait_ready()
    rules = "".join(
        f"  - id: r{i}\n    ref: x\n    when: {{text_length: {{gt: {i}}}}}\n    outcome: degrade\n"
        f"    constraints: {{max_text_length: {i}}}\n"
        for i in range(20_000)
    )
    policy.write_text(original.replace("rules:\n", "rules:\n" + rules, 1))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("its checks did not finish within 2 s (--reload-timeout)", timeout=60)
    renamed = original.replace("name: default\n", "name: default-v2\n", 1)
    policy.write_text(renamed)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("reload active: policy 'default-v2'", timeout=120)
    assert activations(server) == [policy_hash(sockdir, renamed)]
    assert server.stop() == 0
