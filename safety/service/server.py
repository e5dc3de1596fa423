"""The decision service: one asyncio loop for every socket; a CAN bus read on its own thread,
a ``--replay`` read on the loop from its player process (``safety.service.player``).

Requests are answered inline on the loop (``Engine.decide`` takes microseconds; a hop to a
worker thread would cost more than the decision).  Nothing a client does can block the loop
or the bus thread: lines are bounded (:data:`~safety.client.protocol.MAX_LINE_BYTES`), each
client has a token bucket, and what the server has not yet been able to send a client is
bounded too: past :attr:`ServiceConfig.max_send_queue` bytes the client is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safety.builtin import policy_path
from safety.client.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, check_envelope, encode, error_line, parse_message
from safety.engine.engine import Engine
from safety.errors import DriveGateError, Location, PolicyError, ServiceError
from safety.policy import compile_policy, parse_policy_text
from safety.service.clock import LiveClock
from safety.service.events import Watcher
from safety.service.inputs import BusReader, BusSpec, open_bus
from safety.service.peers import bind_unix, peer_groups, peercred
from safety.service.player import ReplayPlayer
from safety.service.poller import PollingSelector, realtime_policy
from safety.yamlsource import read_yaml_text


@contextlib.contextmanager
def _short_switch_interval(seconds: float = 0.0005) -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_in_daemon_thread(call: Callable[[], Any]) -> asyncio.Future[Any]:
    """``call()`` on a new daemon thread, as a future of the running loop.

    Not the loop's default executor: its threads are joined at exit, so a long reload (a huge
    policy's lint) would hold up SIGTERM; a daemon thread dies with the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            # The loop thread gets the GIL back within 0.5 ms (not Python's 5 ms) while this
            # CPU-bound work (a reload's load, lint and suites) runs beside the requests.
            with _short_switch_interval():
                result = call()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="drivegate-reload", daemon=True).start()
    return future


#: Lines of one client answered per turn of the loop (see :meth:`Connection.answer_lines`).
LINES_PER_TURN = 32


#: A ``session`` in a request's envelope: an unguessable token the client chooses (for TCP
#: clients, which have no peer credentials, to tie a request connection to an event one).
SESSION_CHARS = (16, 128)


def owner_of(conn: Connection, message: Mapping[str, Any]) -> Hashable:
    """Who a request speaks for: the connection's owner, narrowed by the envelope's ``session``."""
    session = message.get("session")
    if session is None:
        return conn.owner
    low, high = SESSION_CHARS
    if type(session) is not str or not low <= len(session) <= high:
        raise ServiceError(f"session must be a string of {low}..{high} characters", code="bad-request")
    # A session is the peer user's (a forked helper of the same app shares it); over TCP anyone's.
    peer = ("uid", conn.owner[1]) if conn.owner[0] == "process" else ("tcp",)
    return ("session", peer, session)


def log(message: str) -> None:
    """One line on stderr (journald keeps it under systemd)."""
    print(f"drivegate serve: {message}", file=sys.stderr, flush=True)


@dataclass
class ServiceConfig:
    """How the service listens and what it allows."""

    socket_path: Path
    policy_path: Path
    policy_tests: tuple[Path, ...] = ()  # suites a reloaded policy must pass (it is linted anyway)
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None  # set: only signed policies run
    tcp_port: int | None = None  # loopback only
    allow_uids: frozenset[int] = frozenset()
    allow_gids: frozenset[int] = frozenset()
    rate: float = 2000.0  # requests per second per client; 0 = unlimited
    burst: float = 200.0
    max_send_queue: int = 256 * 1024  # bytes a client may leave unread before it is dropped
    tick_s: float = 0.01  # how often state changes are looked for: push events come at most this late
    heartbeat_s: float = 1.0
    drain_s: float = 2.0  # SIGTERM: how long clients get to take their last responses
    # CPU priority of the CAN input threads below the sockets' (nice increment): on a busy
    # head unit the decision path gets the CPU first; input read late is detected and ages the
    # state (BusReader), so a starved reader fails closed rather than serving old frames.
    input_nice: int = 15
    # After a client's bytes, the loop polls this long for its next request before sleeping
    # (safety.service.poller); 0 = always sleep.
    poll_s: float = 0.0002
    # An explained decision costs ~100 plain ones (1.5 ms against 13 µs): explanations have their
    # own small rate per client and a hard cap for the whole server, so a client pipelining
    # explain: true cannot take the loop from everyone else.
    explain_rate: float = 20.0  # per client per second
    explain_rate_total: float = 100.0  # all clients together
    # Connections: a listen backlog the kernel really gets (asyncio's default of 100 would
    # override the socket's), and caps so one flooding process cannot take every descriptor.
    backlog: int = 512
    accept_batch: int = 16  # connections accepted per turn of the loop (the rest wait in the backlog)
    max_connections_per_peer: int = 128  # per peer process (Unix); for all TCP clients together
    max_connections: int = 512
    # SIGHUP: the policy file must read the same twice this far apart (a writer still writing
    # is waited for, up to this many times) before it is even parsed.
    reload_settle_s: float = 0.2
    reload_settle_tries: int = 25
    # How long a reload's load, lint and suites may take before it is given up (a huge policy):
    # the old policy stays, later reloads are not held up.
    reload_timeout_s: float = 120.0


@dataclass
class Counters:
    decisions: int = 0
    requests: int = 0
    errors: int = 0
    refused: int = 0
    dropped: int = 0
    connections: int = 0
    rate_samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=8))


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per request."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.tokens, self.stamp = self.burst, time.monotonic()

    def take(self) -> float:
        """0 when a request may go ahead, else seconds until one may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class Connection(asyncio.Protocol):
    """One client: splits lines, bounds them, answers them in order."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.bucket = TokenBucket(service.config.rate, service.config.burst)
        self.explain_bucket = TokenBucket(service.config.explain_rate, max(service.config.explain_rate / 4, 1.0))
        self.subscribed = False
        self.closing = False
        self.paused = False  # reading paused while a pipelined backlog is answered a turn at a time
        self.peer = "?"
        self.peer_key: tuple[Any, ...] = ("tcp",)  # whose connection count this one is in
        # Who this connection speaks for (deferred requests are queued per owner): the peer
        # process (uid, pid) on a Unix socket, so a process's request and event connections
        # share it; on TCP, which has no peer credentials, this connection alone.
        service.connection_serial += 1
        self.owner: tuple[Any, ...] = ("connection", service.connection_serial)
        self.event_owners: set[Hashable] = set()  # whose deferred events a subscriber gets

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        service = self.service
        service.counters.connections += 1
        refusal = service.check_peer(transport)
        self.peer = service.describe_peer(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                pid, uid, _ = peercred(sock)
                self.owner = ("process", uid, pid)
        if refusal is not None:
            service.counters.refused += 1
            log(f"refused {self.peer}: {refusal}")
            self.close_with("refused", refusal)
            return
        self.peer_key = self.owner if self.owner[0] == "process" else ("tcp",)
        too_many = service.over_connection_caps(self.peer_key)
        if too_many is not None:
            service.counters.refused += 1
            if service.counters.refused <= 10 or service.counters.refused % 1000 == 0:
                log(f"refused {self.peer}: {too_many} ({service.counters.refused} refused so far)")
            self.close_with("too-many-connections", too_many)
            return
        service.connections.add(self)
        service.peer_connections[self.peer_key] = service.peer_connections.get(self.peer_key, 0) + 1

    def connection_lost(self, exc: Exception | None) -> None:
        # A half-sent request dies with its buffer: nothing of it ever reached the engine.
        self.closing = True
        self.buffer.clear()
        self.forget()

    def forget(self) -> None:
        """Take this connection out of the service's sets and counts (once)."""
        service = self.service
        if self in service.connections:
            service.connections.discard(self)
            left = service.peer_connections.get(self.peer_key, 1) - 1
            if left > 0:
                service.peer_connections[self.peer_key] = left
            else:
                service.peer_connections.pop(self.peer_key, None)
        service.subscribers.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        poller = self.service.poller
        if poller is not None:
            poller.client_active()
        self.buffer += data
        self.answer_lines()

    def answer_lines(self) -> None:
        """Answer the whole lines buffered, at most :data:`LINES_PER_TURN` per turn of the loop.

        A client that pipelines thousands of lines gets them answered a few dozen at a time,
        its reading paused meanwhile, so the other clients' requests are answered in between
        (it cannot take the loop for the tens of milliseconds its backlog costs).
        """
        buffer = self.buffer
        start = 0
        answered = 0
        handle = self.service.handle_line
        while not self.closing:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if end - start > MAX_LINE_BYTES:
                self.too_long(end - start)
                return
            line = buffer[start:end]
            start = end + 1
            if line and not line.isspace():  # blank lines (keep-alives) are ignored
                handle(self, line)
                answered += 1
                if answered >= LINES_PER_TURN and buffer.find(b"\n", start) >= 0:
                    del buffer[:start]
                    self._pause(True)
                    asyncio.get_running_loop().call_soon(self.answer_lines)
                    return
        if self.closing:
            return
        del buffer[:start]
        self._pause(False)
        if len(buffer) > MAX_LINE_BYTES:
            self.too_long(len(buffer))

    def _pause(self, paused: bool) -> None:
        transport = self.transport
        if paused == self.paused or transport is None or transport.is_closing():
            return
        self.paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # ------------------------------------------------------------------ sending
    def send(self, line: bytes) -> None:
        """Queue ``line``; drop the client when too much is waiting unread."""
        transport = self.transport
        if transport is None or self.closing:
            return
        transport.write(line)
        if transport.get_write_buffer_size() > self.service.config.max_send_queue:
            self.service.counters.dropped += 1
            log(f"dropped {self.peer}: more than {self.service.config.max_send_queue} bytes unread")
            self.close_with("send-queue-full", "the client does not read its responses or events; disconnected")

    def too_long(self, size: int) -> None:
        log(f"closed {self.peer}: a line of {size} bytes or more (limit {MAX_LINE_BYTES})")
        self.close_with("line-too-long", f"a line is longer than {MAX_LINE_BYTES} bytes; disconnected")

    def close_with(self, code: str, message: str) -> None:
        """Send one error line (where it can still be sent) and close the connection."""
        transport = self.transport
        if transport is None or self.closing:
            return
        self.closing = True
        self.buffer.clear()
        self.forget()
        transport.write(error_line(code, message))
        if transport.get_write_buffer_size() == 0:  # sent at once (the usual case): close now
            transport.close()
            return
        transport.close()  # flushes what it can; a client that never reads is aborted below
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, transport.abort)


class Service:
    """The running service: engine, live clock, CAN input, listeners, clients and subscribers."""

    def __init__(
        self,
        engine: Engine,
        config: ServiceConfig,
        *,
        bus: BusSpec | None = None,
        replay: ReplayPlayer | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = LiveClock()
        self.watcher = Watcher(engine)
        self.replay = replay
        self.bus_spec = bus
        self.reader: BusReader | None = None
        self.connections: set[Connection] = set()
        self.subscribers: set[Connection] = set()
        self.connection_serial = 0
        self.peer_connections: dict[tuple[Any, ...], int] = {}  # open connections per peer process
        self.explain_bucket = TokenBucket(config.explain_rate_total, max(config.explain_rate_total / 4, 1.0))
        self.counters = Counters()
        self.started = time.monotonic()
        self.log_errors = 0
        self.servers: list[asyncio.AbstractServer] = []
        self.poller: PollingSelector | None = None  # set by run_service
        self._socket_inode: tuple[int, int] | None = None
        self._stop: asyncio.Event | None = None
        self._reloading: asyncio.Lock | None = None
        self._reload_waiting = False  # a reload task is queued and has not started yet
        self.ops: dict[str, Callable[[Connection, dict[str, Any], Any], bytes | None]] = {
            "decide": self.op_decide,
            "state": self.op_state,
            "status": self.op_status,
            "subscribe": self.op_subscribe,
            "ping": self.op_ping,
        }

    # ------------------------------------------------------------------ requests
    def handle_line(self, conn: Connection, line: bytearray) -> None:
        """Answer one request line; never raises (a failure is an error line)."""
        self.counters.requests += 1
        op: Any = None
        request_id: Any = None
        try:
            wait = conn.bucket.take()
            message = parse_message(line)
            op, request_id = check_envelope(message)
            if wait:
                self.counters.errors += 1
                conn.send(
                    error_line(
                        "rate-limited",
                        f"more than {self.config.rate:g} requests per second",
                        op,
                        request_id,
                        retry_after_ms=max(1, round(wait * 1000)),
                    )
                )
                return
            handler = self.ops.get(op)
            if handler is None:
                raise ServiceError(
                    f"unknown op {op!r}; expected one of: {', '.join(self.ops)}"
                    + (
                        " (the policy cannot be changed over the socket; send the server SIGHUP)"
                        if op == "reload"
                        else ""
                    ),
                    code="unknown-op",
                )
            response = handler(conn, message, request_id)
        except ServiceError as exc:
            self.counters.errors += 1
            extra = {} if exc.retry_after_ms is None else {"retry_after_ms": exc.retry_after_ms}
            conn.send(error_line(exc.code, exc.message, op, request_id, **extra))
            return
        except Exception as exc:  # a bug must cost one request, not the connection or the server
            self.counters.errors += 1
            log(f"internal error answering {op!r}: {exc!r}")
            conn.send(error_line("internal", f"internal error: {exc!r}", op, request_id))
            return
        if response is not None:
            conn.send(response)

    def over_connection_caps(self, peer_key: tuple[Any, ...]) -> str | None:
        """Why a new connection of ``peer_key`` is refused (a cap reached), or None."""
        cfg = self.config
        if len(self.connections) >= cfg.max_connections:
            return f"the server has {cfg.max_connections} connections open, its limit; try again later"
        if self.peer_connections.get(peer_key, 0) >= cfg.max_connections_per_peer:
            who = "this process has" if peer_key[0] == "process" else "TCP clients have"
            return (
                f"{who} {cfg.max_connections_per_peer} connections open already, the limit per peer; reuse a connection"
            )
        return None

    def op_decide(self, conn: Connection, message: dict[str, Any], request_id: Any) -> bytes:
        request = message.get("request")
        if type(request) is not dict:
            raise ServiceError("decide needs a request object", code="bad-request")
        explain = message.get("explain") is True
        if explain:
            wait = max(
                conn.explain_bucket.take(), self.explain_bucket.take() if self.config.explain_rate_total else 0.0
            )
            if wait:
                cfg = self.config
                raise ServiceError(
                    f"explanations are limited to {cfg.explain_rate:g} per second per client and "
                    f"{cfg.explain_rate_total:g} per second in all (each costs about 100 plain decisions); "
                    "ask without explain, or later",
                    code="rate-limited",
                    retry_after_ms=max(1, round(wait * 1000)),
                )
        decision = self.engine.decide(request, self.clock.now(), explain=explain, owner=owner_of(conn, message))
        self.counters.decisions += 1
        return encode({"v": PROTOCOL_VERSION, "ok": True, "op": "decide", "id": request_id, **decision.to_dict()})

    def op_state(self, conn: Connection, message: dict[str, Any], request_id: Any) -> bytes:
        snap = self.engine.state(self.clock.now())
        return encode(
            {
                "v": PROTOCOL_VERSION,
                "ok": True,
                "op": "state",
                "id": request_id,
                "time": snap.time,
                "driving_state": snap.values.get("driving_state"),
                "workload": snap.values.get("workload"),
                "values": dict(snap.values),
                "ages": dict(snap.ages),
                "unknown": dict(snap.unknown),
                "integrity": {message: dict(counts) for message, counts in snap.integrity.items()},
                "health": dict(snap.health),
            }
        )

    def op_status(self, conn: Connection, message: dict[str, Any], request_id: Any) -> bytes:
        return encode({"v": PROTOCOL_VERSION, "ok": True, "op": "status", "id": request_id, **self.status()})

    def op_subscribe(self, conn: Connection, message: dict[str, Any], request_id: Any) -> None:
        conn.subscribed = True
        conn.event_owners.update({conn.owner, owner_of(conn, message)})
        self.subscribers.add(conn)
        conn.send(encode({"v": PROTOCOL_VERSION, "ok": True, "op": "subscribe", "id": request_id}))
        conn.send(encode(self.watcher.snapshot_event()))
        return None

    def op_ping(self, conn: Connection, message: dict[str, Any], request_id: Any) -> bytes:
        return encode({"v": PROTOCOL_VERSION, "ok": True, "op": "ping", "id": request_id, "time": self.clock.now()})

    def status(self) -> dict[str, Any]:
        """What ``status`` answers: policy, uptime, input rates and counts, clients."""
        engine, reader, replay = self.engine, self.reader, self.replay
        samples = self.counters.rate_samples
        rate = 0.0
        if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
            rate = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
        counters = engine.counters
        pending = engine.pending_policy
        status: dict[str, Any] = {
            "policy_name": engine.policy.name,
            "policy_hash": engine.policy.hash,
            "policy_signed_by": engine.policy.signed_by,
            "pending_policy_hash": None if pending is None else pending.hash,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "time": self.clock.now(),
            "last_frame_time": self.clock.last_frame_time,
            "input": "replay" if replay is not None else "bus" if self.bus_spec is not None else "none",
            "frames_total": 0 if reader is None else reader.frames,
            "frames_per_s": round(rate, 1),
            "frames_seen": counters["frames_seen"],
            "frames_decoded": counters["frames_decoded"],
            "stale_signals": list(self.watcher.stale),
            "unknown_signals": dict(self.watcher.unknown),
            "frames_rejected": counters["frames_rejected"],
            "e2e": counters["e2e"],
            "integrity_failures": counters["integrity"],
            "implausible": counters["implausible"],
            "truncated": counters["truncated"],
            "input_lag_ms": 0.0 if reader is None else round(reader.last_lag * 1000, 3),
            "input_lag_max_ms": 0.0 if reader is None else round(reader.max_lag * 1000, 3),
            "bus_errors": 0 if reader is None else reader.bus_errors + reader.error_frames,
            "last_bus_error": None if reader is None or not reader.last_error else reader.last_error,
            "clients": len(self.connections),
            "subscribers": len(self.subscribers),
            "connections_total": self.counters.connections,
            "requests": self.counters.requests,
            "decisions": self.counters.decisions,
            "errors": self.counters.errors,
            "refused": self.counters.refused,
            "dropped": self.counters.dropped,
            "deferred_pending": counters["deferred_pending"],
            "deferred_refused": counters["deferred_refused"],
            "deferred_delivered": counters["deferred_delivered"],
            "decision_log_errors": counters["decision_log_errors"],
            "health": engine.health(),
            "poll_us": 0.0 if self.poller is None else round(self.poller.poll_s * 1e6, 1),
            "idle_polls": 0 if self.poller is None else self.poller.polls,
        }
        if replay is not None:
            status["replay"] = {
                "frames_sent": replay.frames_sent,
                "passes": replay.passes,
                "done": replay.done.is_set(),
                "backlog": replay.backlog(),  # sent onto the virtual bus, not yet read
                "log_errors": self.log_errors,
                "error": None if replay.error is None else repr(replay.error),
            }
        return status

    # ------------------------------------------------------------------ security
    def check_peer(self, transport: asyncio.Transport) -> str | None:
        """Why this peer is refused, or None.  SO_PEERCRED: the kernel's word on who connected."""
        cfg = self.config
        if not cfg.allow_uids and not cfg.allow_gids:
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return "no peer credentials on this transport"
        _, uid, gid = peercred(sock)
        if uid in cfg.allow_uids or gid in cfg.allow_gids:
            return None
        groups = peer_groups(sock)
        if cfg.allow_gids.intersection(groups):
            return None
        return f"uid {uid} gid {gid} (groups {sorted(groups)}) is not allowed"

    @staticmethod
    def describe_peer(transport: asyncio.Transport) -> str:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                pid, uid, gid = peercred(sock)
                return f"pid {pid} uid {uid} gid {gid}"
        return str(transport.get_extra_info("peername"))

    # ------------------------------------------------------------------ events
    def send_owned(self) -> None:
        """Each ``deferred`` event to the subscribers of the owner that queued the request, only."""
        for owner, event in self.watcher.take_owned():
            line = encode(event)
            for conn in list(self.subscribers):
                if owner in conn.event_owners:
                    conn.send(line)

    def broadcast(self, event: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        line = encode(event)
        for conn in list(self.subscribers):
            conn.send(line)

    async def _tick(self) -> None:
        """Look for state changes (push events), heartbeats, and the input's frame rate."""
        cfg = self.config
        next_heartbeat = next_sample = time.monotonic()
        while True:
            try:
                for event in self.watcher.check(self.clock.now()):
                    self.broadcast(event)
                self.send_owned()
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + 0.25
                    frames = 0 if self.reader is None else self.reader.frames
                    self.counters.rate_samples.append((now, frames))
                if now >= next_heartbeat:
                    next_heartbeat = now + cfg.heartbeat_s
                    if self.subscribers:
                        self.broadcast(self.watcher.heartbeat_event())
            except Exception as exc:  # keep pushing: one bad look must not end the events for good
                log(f"internal error while watching the state: {exc!r}")
            await asyncio.sleep(cfg.tick_s)

    # ------------------------------------------------------------------ policy reload
    async def reload_policy(self) -> None:
        """SIGHUP: reload the policy file through the Engine's atomic, validated path.

        Only a whole file is ever activated.  The bytes must be stable: read, then read again
        after :attr:`ServiceConfig.reload_settle_s` until two reads agree (a writer still
        writing is waited for, up to ``reload_settle_tries`` times); the policy is compiled from
        exactly those bytes (or, with trusted keys, from the bytes whose signature is verified).
        Then lint, the ``--policy-test`` suites and the suites the policy names (``tests:``)
        run on a daemon thread, so requests keep being answered and SIGTERM is never held up;
        the Engine swaps under its lock only a policy that passed them all, and keeps the old
        one otherwise.
        """
        assert self._reloading is not None
        async with self._reloading:
            self._reload_waiting = False
            path = policy_path(self.config.policy_path)  # a built-in name is its file
            old = self.engine.policy.hash
            log(f"SIGHUP: reloading the policy from {path}")
            cancelled = threading.Event()
            try:
                text = await self._settled_text(path)
                reloading = run_in_daemon_thread(functools.partial(self._reload_from, path, text, cancelled.is_set))
                # Given up or not, its outcome is taken (no "exception never retrieved" later).
                reloading.add_done_callback(lambda done: done.cancelled() or done.exception())
                try:
                    result = await asyncio.wait_for(asyncio.shield(reloading), self.config.reload_timeout_s)
                except TimeoutError:
                    cancelled.set()  # the thread may finish later: it will not swap
                    log(
                        f"reload failed, keeping policy {old}: its checks did not finish within "
                        f"{self.config.reload_timeout_s:g} s (--reload-timeout)"
                    )
                    return
            except DriveGateError as exc:
                log(f"reload failed, keeping policy {old}:\n{exc}")
                return
            except Exception as exc:  # an unexpected failure must not take the service down
                log(f"reload failed, keeping policy {old}: {exc!r}")
                return
            log(f"reload {result}: policy '{self.engine.policy.name}' {self.engine.policy.hash} (was {old})")

    async def _settled_text(self, path: Path) -> str | None:
        """The policy file's text once two reads ``reload_settle_s`` apart agree (None with trusted
        keys: the signature check reads the file itself, and a cut file fails it)."""
        if self.config.trusted_keys is not None:
            return None
        cfg = self.config
        try:
            before = read_yaml_text(path)
            for _ in range(cfg.reload_settle_tries):
                await asyncio.sleep(cfg.reload_settle_s)
                now = read_yaml_text(path)
                if now == before:
                    return now
                before = now
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read the policy: {exc}", Location(file=str(path)), code="unreadable") from None
        raise PolicyError(
            f"the file kept changing for {cfg.reload_settle_s * cfg.reload_settle_tries:g} s; not reloaded "
            "(write a temporary file and rename it over the policy)",
            Location(file=str(path)),
            code="unsettled",
        )

    def _reload_from(self, path: Path, text: str | None, cancelled: Callable[[], bool]) -> str:
        cfg = self.config
        if text is None:
            return self.engine.reload(path, tests=cfg.policy_tests, trusted_keys=cfg.trusted_keys, cancelled=cancelled)
        compiled = compile_policy(parse_policy_text(str(path), text))
        return self.engine.reload(compiled, tests=cfg.policy_tests, cancelled=cancelled)

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> int:
        """Listen, start the input, serve until SIGTERM/SIGINT, drain; the exit code."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()
        self.watcher.check(self.clock.now())  # the baseline, before anyone subscribes
        reloads: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

        def on_sighup() -> None:
            # Signals that arrive while a reload waits to start add nothing: it reads the file as
            # it is when it starts.  (A burst of SIGHUPs must not queue a reload each.)
            if self._reload_waiting:
                return
            self._reload_waiting = True
            task = loop.create_task(self.reload_policy())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        ticker: asyncio.Task[None] | None = None
        try:
            await self._listen()
            self._start_input()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
            ticker = loop.create_task(self._tick())
            await self._stop.wait()
            log("draining")
            await self._drain()
        finally:
            if ticker is not None:
                ticker.cancel()
            self._stop_input()
            self._remove_socket()
            self.engine.close()  # the decision log, trimmed to its last record
        log("stopped")
        return 0

    async def _listen(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        sock = bind_unix(cfg.socket_path)
        st = os.stat(cfg.socket_path)
        self._socket_inode = (st.st_dev, st.st_ino)
        # asyncio uses its backlog argument twice: for listen() and as how many connections one
        # turn of the loop accepts.  A flood must not take the loop from clients already
        # connected, so it accepts a few per turn, and listen() is then given the real backlog.
        self.servers.append(
            await loop.create_unix_server(lambda: Connection(self), sock=sock, backlog=cfg.accept_batch)
        )
        sock.listen(cfg.backlog)
        where = [f"unix:{cfg.socket_path} (mode {stat.S_IMODE(st.st_mode):04o})"]
        if cfg.tcp_port is not None:
            # Loopback only: the decision API is for processes on this head unit.
            tcp = socket.create_server(("127.0.0.1", cfg.tcp_port), backlog=cfg.backlog)
            server = await loop.create_server(lambda: Connection(self), sock=tcp, backlog=cfg.accept_batch)
            tcp.listen(cfg.backlog)
            self.servers.append(server)
            port = server.sockets[0].getsockname()[1]
            where.append(f"tcp:127.0.0.1:{port}")
        policy = self.engine.policy
        log(f"listening on {', '.join(where)}; policy '{policy.name}' {policy.hash}")

    def _start_input(self) -> None:
        if self.replay is not None:
            # Read on this loop, not on a thread (see safety.service.player); the reader's
            # thread is never started, only its per-frame handling used.
            self.reader = BusReader(self.replay.rx, self.engine, self.clock, sent_at=self.replay.sent_at)
            self.replay.start(asyncio.get_running_loop(), self.reader.handle)
            log(f"replaying {self.replay.log} at {self.replay.speed:g}x{' (looping)' if self.replay.loop else ''}")
        elif self.bus_spec is not None:
            bus = open_bus(self.bus_spec, self.engine)
            self.reader = BusReader(bus, self.engine, self.clock, nice=self.config.input_nice)
            self.reader.start()
            log(f"reading CAN bus {self.bus_spec}")
        else:
            log("no CAN input (--bus or --replay): every decision fails closed")

    def _stop_input(self) -> None:
        if self.replay is not None:
            self.replay.stop()  # the player and both sides of its virtual bus
        elif self.reader is not None:
            self.reader.stop()

    async def _drain(self) -> None:
        """Stop accepting, tell subscribers, let clients take their last responses, close."""
        for server in self.servers:
            server.close()
        self.broadcast(self.watcher.shutdown_event())
        for conn in list(self.connections):
            conn.closing = True
            if conn.transport is not None:
                conn.transport.close()  # stops reading; flushes what was answered
        deadline = time.monotonic() + self.config.drain_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _remove_socket(self) -> None:
        # Only our own socket file: a newer server may already have taken the path.
        path = self.config.socket_path
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._socket_inode:
                path.unlink()


def run_service(service: Service) -> int:
    """Run ``service`` on a new event loop whose selector polls after client activity
    (``ServiceConfig.poll_s``, see :mod:`safety.service.poller`); the exit code."""
    poll_s = service.config.poll_s
    realtime = realtime_policy()
    if poll_s and realtime is not None:
        log(f"not polling for requests (--poll-us) under the real-time policy {realtime}")
        poll_s = 0.0
    selector = PollingSelector(poll_s)
    service.poller = selector
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        return runner.run(service.run())
