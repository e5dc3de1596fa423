"""Polling instead of sleeping: the server's PollingSelector and the client's reply spin.

Both trade a little CPU for a scheduler wake-up; what must hold is that they never change what
is read or answered, that they stay within their bounds, and that the client's spin backs off
when replies are slow.  Real sockets throughout; no timing is asserted beyond generous bounds.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from safety.client.client import Client, _Spin
from safety.model.decision import Outcome
from safety.service.poller import PollingSelector

ANSWER = {"v": 1, "ok": True, "op": "decide", "outcome": "deny", "rules": ["video-lockout"], "reason": "moving"}
VIDEO = {"kind": "media", "category": "entertainment", "modality": "visual", "content": "video"}


# --------------------------------------------------------------------------- PollingSelector
@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, PollingSelector]]:
    ours, theirs = socket.socketpair()
    selector = PollingSelector(0.5)
    selector.register(ours, selectors.EVENT_READ)
    yield ours, theirs, selector
    selector.close()
    ours.close()
    theirs.close()


def test_without_client_activity_the_selector_sleeps_and_never_polls(
    pair: tuple[socket.socket, socket.socket, PollingSelector],
) -> None:
    _ours, theirs, selector = pair
    assert selector.select(0.01) == []
    assert selector.polls == 0
    theirs.send(b"x")
    assert [key.fd for key, _ in selector.select(None)] == [pair[0].fileno()]
    assert selector.polls == 0  # ready at once: nothing to poll for


def test_after_client_activity_it_polls_until_the_next_event(
    pair: tuple[socket.socket, socket.socket, PollingSelector],
) -> None:
    ours, theirs, selector = pair
    selector.client_active()
    timer = threading.Timer(0.02, theirs.send, (b"next request",))
    timer.start()
    ready = selector.select(None)  # the poll window is 0.5 s: the request lands within it
    timer.join()
    assert [key.fd for key, _ in ready] == [ours.fileno()]
    assert selector.polls == 1


def test_a_poll_never_outlasts_the_loops_timeout_or_its_window(
    pair: tuple[socket.socket, socket.socket, PollingSelector],
) -> None:
    _ours, _theirs, selector = pair
    selector.client_active()
    began = time.monotonic()
    assert selector.select(0.02) == []  # a timer due in 20 ms ends the poll
    assert time.monotonic() - began < 0.4
    assert selector.polls == 1
    selector.poll_s = 0.01
    selector.client_active()
    began = time.monotonic()
    assert selector.select(0.3) == []  # the window ends, then it sleeps out the timeout
    assert time.monotonic() - began > 0.25
    assert selector.select(0) == [] and selector.polls == 2  # select(0) never polls


def test_poll_zero_never_polls(pair: tuple[socket.socket, socket.socket, PollingSelector]) -> None:
    _ours, _theirs, selector = pair
    selector.poll_s = 0.0
    selector.client_active()
    assert selector.select(0.01) == []
    assert selector.polls == 0


# --------------------------------------------------------------------------- the client's spin
def test_spin_backs_off_while_replies_are_slow_and_probes_to_come_back() -> None:
    spin = _Spin(0.0002)
    assert spin.budget() == 0.0002
    budgets = []
    for _ in range(64):  # every polled reply came after the spin ran out
        budget = spin.budget()
        budgets.append(budget)
        if budget:
            spin.outcome(hit=False)
    assert budgets[:5] == [0.0002] * 5  # a few slow replies are not yet a trend
    assert budgets[10:].count(0.0002) == 2  # then only the probes, one call in 32, poll
    while not spin.budget():  # quick replies again: each probe counts
        pass
    for _ in range(200):
        if spin.budget():
            spin.outcome(hit=True)
    assert all(spin.budget() for _ in range(10))  # polling on every call again
    assert _Spin(0.0).budget() == 0.0


class SlowServer:
    """A Unix socket server on a thread that answers each decide line after ``delay`` seconds."""

    def __init__(self, path: str, delay: float) -> None:
        self.delay = delay
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        # The client may give up and close first (the timeout tests): that ends the thread quietly.
        with contextlib.suppress(OSError):
            self._answer()

    def _answer(self) -> None:
        conn, _ = self.listener.accept()
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    time.sleep(self.delay)
                    reply = {**ANSWER, "id": orjson.loads(line)["id"]}
                    # In two pieces: a reply may arrive split while the client polls.
                    data = orjson.dumps(reply) + b"\n"
                    conn.sendall(data[:10])
                    conn.sendall(data[10:])

    def close(self) -> None:
        self.listener.close()


def test_a_spinning_client_reads_every_reply_quick_or_slow_and_stops_spinning_on_slow_ones(tmp_path: Path) -> None:
    path = f"{tmp_path}/slow.sock"
    server = SlowServer(path, delay=0.0)
    client = Client(path, timeout=1.0, spin=0.0002)
    assert client.spin == 0.0002 and Client(path).spin == 0.0002  # the default
    try:
        for _ in range(20):
            decision = client.decide(VIDEO)
            assert decision.outcome is Outcome.DENY and decision.rules == ("video-lockout",)
        server.delay = 0.02  # far slower than the spin (100x: margin for a loaded machine): read by the blocking recv
        for _ in range(20):
            assert client.decide(VIDEO).rules == ("video-lockout",)
        assert client._spin.hit_rate < 0.5  # polling has stopped
    finally:
        client.close()
        server.close()


def test_spin_never_outlasts_the_timeout_and_is_never_negative(tmp_path: Path) -> None:
    path = f"{tmp_path}/slow.sock"
    server = SlowServer(path, delay=1.0)  # never answers in time
    client = Client(path, timeout=0.2, spin=5.0)  # a spin longer than the timeout
    try:
        began = time.monotonic()
        decision = client.decide(VIDEO)
        assert time.monotonic() - began < 0.35  # the timeout, not the spin and the timeout again
        assert decision.rules == ("client-fallback",)
        assert "no answer within the timeout" in decision.reason
    finally:
        client.close()
        server.close()
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="spin must be 0 or more seconds"):
            Client(path, spin=bad)
