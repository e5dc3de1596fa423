"""What both clients share, free of I/O: fallbacks, decisions from responses, backoff, events.

:class:`~safety.client.client.Client` (blocking sockets) and :class:`~safety.client.aio.AsyncClient`
(asyncio streams) each keep only their own I/O, so importing the blocking client loads no asyncio.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from safety.client.protocol import PROTOCOL_VERSION, encode
from safety.errors import ServiceError
from safety.model.decision import Decision, Outcome
from safety.model.rules import FALLBACK_RULE

# Reconnect backoff after a failure: first retry after 20 ms, doubling to at most 0.5 s.
BACKOFF_START_S = 0.02
BACKOFF_MAX_S = 0.5
# A subscriber that hears nothing (not even a heartbeat, sent every second) this long assumes
# the service is gone.
SUBSCRIBE_SILENCE_S = 3.0
# How long Client polls for a reply before it sleeps in recv (see _Spin).
DEFAULT_SPIN_S = 0.0002

Address = str | os.PathLike[str] | tuple[str, int]


@dataclass(frozen=True)
class Fallback:
    """What ``decide`` answers when the service cannot: never ``allow``."""

    outcome: Outcome = Outcome.DENY
    constraints: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if Outcome(self.outcome) is Outcome.ALLOW:
            raise ValueError("a fallback must not allow: the service being unavailable is no permission")

    def decision(self, request: Any, why: str) -> Decision:
        request_id = request.get("id") if isinstance(request, Mapping) else None
        outcome = Outcome(self.outcome)
        return Decision(
            outcome,
            (FALLBACK_RULE,),
            f"decision service unavailable ({why}); failing closed: {outcome.value}",
            dict(self.constraints),
            "",
            None,
            request_id if isinstance(request_id, str) else None,
        )


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
_TIME_TYPES = (type(None), int, float)
_ID_TYPES = (type(None), str)


def decision_from_response(response: Mapping[str, Any]) -> Decision:
    """The Decision in a ``decide`` response; ``ServiceError`` if it is an error or malformed.

    Every field is checked (an outcome this client does not know is malformed, never allow);
    written with exact type tests because it runs on every call.
    """
    _check_ok(response)
    outcome = _OUTCOMES.get(response.get("outcome"))  # type: ignore[arg-type]
    rules = response.get("rules")
    reason = response.get("reason")
    constraints = response.get("constraints", {})
    policy_hash = response.get("policy_hash", "")
    state_time = response.get("state_time")
    request_id = response.get("request_id")
    if (
        outcome is None
        or type(rules) is not list
        or not all(type(r) is str for r in rules)
        or type(reason) is not str
        or type(constraints) is not dict
        or type(policy_hash) is not str
        or type(state_time) not in _TIME_TYPES
        or type(request_id) not in _ID_TYPES
    ):
        raise ServiceError(f"not a decision: {str(dict(response))[:200]}", code="malformed-response")
    return Decision(outcome, tuple(rules), reason, constraints, policy_hash, state_time, request_id)


def _check_ok(response: Mapping[str, Any]) -> None:
    """Nothing for an ``ok`` response; the server's error (``ServiceError``) otherwise."""
    if response.get("ok") is not True:
        error = response.get("error")
        if isinstance(error, Mapping):
            raise _server_error(error)
        raise ServiceError("the response is neither ok nor an error", code="malformed-response")


def _server_error(error: Mapping[str, Any]) -> ServiceError:
    return ServiceError(str(error.get("message", "")), code=str(error.get("code", "error")))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ServiceError):
        if exc.code == "refused":
            return f"refused by the service: {exc.message}"
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer within the timeout"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return f"unreachable: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _check_response(raw: bytes, expected_id: int) -> dict[str, Any]:
    try:
        response = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(f"unreadable response: {exc}", code="malformed-response") from None
    if type(response) is not dict:
        raise ServiceError("the response is not an object", code="malformed-response")
    if response.get("id") != expected_id:
        error = response.get("error")
        if response.get("ok") is False and isinstance(error, Mapping):
            # Errors sent without an id (refused, line-too-long) are about this connection.
            raise _server_error(error)
        raise ServiceError(
            f"response id {response.get('id')!r} does not match {expected_id}", code="malformed-response"
        )
    return response


# --------------------------------------------------------------------------- the I/O-free half
# Client and AsyncClient share it; each keeps only its own I/O (a socket; asyncio streams).

_CLOSED = "the service closed the connection"
_SUBSCRIBE = encode({"v": PROTOCOL_VERSION, "op": "subscribe", "id": "subscribe"})


def _decide_message(request: Mapping[str, Any], explain: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": "decide", "request": request}
    if explain:
        message["explain"] = True
    return message


def _ok(response: dict[str, Any]) -> dict[str, Any]:
    """An ``ok`` response as is; the server's error (``ServiceError``) otherwise."""
    _check_ok(response)
    return response


class _Events:
    """One subscription: bytes received in, events to yield out; ``done`` after ``disconnected``."""

    def __init__(self, heartbeats: bool) -> None:
        self.heartbeats = heartbeats
        self.first = True  # the first line answers ``subscribe``
        self.done = False
        self.buffer = b""

    def lost(self, reason: str) -> dict[str, Any]:
        """The last event: ``disconnected``, saying why."""
        self.done = True
        return {"v": PROTOCOL_VERSION, "event": "disconnected", "reason": reason}

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """The events in ``data``, the next bytes received (empty: the service closed the connection)."""
        if not data:
            yield self.lost(_CLOSED)
            return
        self.buffer += data
        while not self.done and (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield self.lost("unreadable event line")
                return
            if self.first:
                self.first = False
                try:
                    _check_ok(event)
                except ServiceError as exc:
                    yield self.lost(_describe(exc))
            elif event.get("event") != "heartbeat" or self.heartbeats:
                yield event


class _ClientBase:
    """What both clients hold, and what they do around each call's I/O: ids, reconnect backoff."""

    def __init__(
        self, path: Address, timeout: float, fallback: Fallback | None, server_uid: int | Iterable[int] | None = None
    ) -> None:
        self.address: Address = path
        self.timeout = timeout
        self.fallback = fallback or Fallback()
        # Who may be the server: a squatter on the socket path (a world-writable directory, a
        # server that died and a stranger that bound the path) must never answer for it.
        if server_uid is None:
            self.server_uids = frozenset({0, os.geteuid()})
        elif isinstance(server_uid, int):
            self.server_uids = frozenset({server_uid})
        else:
            self.server_uids = frozenset(server_uid)
        self._ids = itertools.count(1)
        self._delay = 0.0  # the backoff after the last failure, 0 after a success
        self._retry_at = 0.0
        self._attempt = _Attempt(self)

    def _start(self, message: dict[str, Any], connected: bool) -> int:
        """Stamp ``message`` with a new id; while backing off after a failure, refuse at once."""
        wait = self._retry_at - time.monotonic()
        if not connected and wait > 0:
            raise ServiceError(f"reconnecting in {wait * 1000:.0f} ms", code="unavailable")
        request_id = next(self._ids)
        message["id"] = request_id
        return request_id

    def _drop(self) -> None:
        """Close the connection (each client has its own kind)."""
        raise NotImplementedError


class _Attempt:
    """``with client._attempt:`` around one call's I/O.  After any failure (the timeout's
    cancellation included) the connection is dropped -- a late answer on it must never be taken
    for the answer to a later request -- and reconnecting backs off; a success ends the backoff.

    One object per client, reused (calls on a client are serialised): a generator-based
    context manager would cost ~1 µs a call, this ~0.15 µs.
    """

    __slots__ = ("client",)

    def __init__(self, client: _ClientBase) -> None:
        self.client = client

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        client = self.client
        if exc_type is None:
            client._delay = 0.0
            return
        client._drop()
        client._delay = BACKOFF_START_S if client._delay == 0 else min(client._delay * 2, BACKOFF_MAX_S)
        client._retry_at = time.monotonic() + client._delay


class _Spin:
    """How long :class:`Client` polls for a reply before it sleeps in ``recv``, call by call.

    Why poll: a blocking ``recv`` puts the thread to sleep, and waking it when the reply lands
    costs a scheduler round trip -- on a VM, where an idle vCPU halts, 40-100 µs, more than the
    service takes to decide.  Polling (non-blocking ``recv`` and ``sched_yield`` in turn, so
    anything else runnable on this CPU runs first) keeps the CPU awake for a reply that is
    microseconds away; measured under a saturated replay, it halves the median round trip and
    takes 100 µs off the p99 (README, "Measured figures").  Adaptive, as glibc's adaptive
    mutexes are: when replies stop arriving within ``seconds`` (a loaded service, many clients
    sharing the CPUs), polling would only burn CPU the service needs, so it stops; one call in
    ``PROBE_EVERY`` still polls, to notice when replies are quick again.
    """

    __slots__ = ("calls", "hit_rate", "seconds")

    PROBE_EVERY = 32
    WEIGHT = 0.125  # of the latest call in the hit rate (an exponential moving average)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.hit_rate = 1.0  # the share of recent polled calls whose reply came within `seconds`
        self.calls = 0

    def budget(self) -> float:
        """Seconds to poll for this call's reply (0: sleep in recv at once)."""
        self.calls += 1
        if self.seconds and (self.hit_rate >= 0.5 or self.calls % self.PROBE_EVERY == 0):
            return self.seconds
        return 0.0

    def outcome(self, *, hit: bool) -> None:
        """A polled call's reply came within its budget (``hit``) or after it."""
        self.hit_rate += self.WEIGHT * ((1.0 if hit else 0.0) - self.hit_rate)


def peercred(sock: Any) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer of a connected Unix socket, from the kernel (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


def check_server(sock: Any, address: Address, uids: frozenset[int]) -> None:
    """Raise ``ServiceError`` (``untrusted-server``) unless the process serving ``sock`` runs as one of ``uids``.

    TCP carries no credentials: a TCP address is not checked (docs/service.md says so).
    """
    if sock is None or sock.family != socket.AF_UNIX:
        return
    _, uid, _ = peercred(sock)
    if uid not in uids:
        expected = ", ".join(str(u) for u in sorted(uids))
        raise ServiceError(
            f"the process on {address if isinstance(address, tuple) else os.fspath(address)} runs as uid {uid}, not {expected} (server_uid): "
            "not the decision service",
            code="untrusted-server",
        )


def _connect(address: Address, timeout: float, uids: frozenset[int] = frozenset()) -> socket.socket:
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        sock.settimeout(timeout)
        while True:
            try:
                sock.connect(os.fspath(address))
                break
            except BlockingIOError:
                # A Unix socket whose listen queue is full answers EAGAIN at once instead of
                # waiting (TCP waits): retry until the deadline, as a TCP connect would wait.
                # Under a connection flood by another process this is what gets a client in.
                if time.monotonic() >= deadline:
                    raise TimeoutError("the service's listen queue stayed full") from None
                time.sleep(0.0002)
        if uids:
            check_server(sock, address, uids)
    except BaseException:
        sock.close()
        raise
    return sock
