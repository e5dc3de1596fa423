"""Clients of ``drivegate serve``: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Fail closed: when the service cannot be reached, does not answer within ``timeout``, refuses
the client, answers with an error, or answers something that is not a decision, ``decide``
returns a decision that is not ``allow`` -- ``deny``, or the caller's ``fallback`` (say, degrade
to voice) -- with rules ``("client-fallback",)`` and a reason saying why.  It never raises.
The next call after a failure reconnects by itself (after a short, growing backoff, so a dead
service costs a caller nothing but the fallback).

``state()`` and ``status()`` raise :class:`~safety.client.protocol.ServiceError` instead: they
have no safe default.  ``subscribe()`` opens its own connection and yields event objects (see
``docs/protocol.md``); when the connection is lost, or the server stays silent past three
heartbeats, it yields one ``{"event": "disconnected", "reason": ...}`` and ends.

    client = Client("/run/drivegate/drivegate.sock", timeout=0.05,
                    fallback=Fallback(Outcome.DEGRADE, {"modality": "voice"}))
    decision = client.decide({"kind": "notification", "category": "message", "modality": "visual",
                              "content": "text", "priority": "normal", "text_length": 80})
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from safety.client.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, encode
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

    def __init__(self, path: Address, timeout: float, fallback: Fallback | None) -> None:
        self.address: Address = path
        self.timeout = timeout
        self.fallback = fallback or Fallback()
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


def _connect(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(os.fspath(address))
    except BaseException:
        sock.close()
        raise
    return sock


class Client(_ClientBase):
    """A blocking client; one connection, reused, reopened after a failure.  Thread-safe (calls
    are serialised).

    ``spin`` (seconds, default 200 µs) is how long a call polls for its reply before it sleeps
    in ``recv``: a quick reply is read without waiting for the scheduler to wake the thread.
    Adaptive: it stops polling while replies take longer (see ``_Spin``); 0 never polls.
    """

    def __init__(
        self,
        path: Address,
        timeout: float = 0.05,
        fallback: Fallback | None = None,
        *,
        spin: float = DEFAULT_SPIN_S,
    ) -> None:
        super().__init__(path, timeout, fallback)
        if not spin >= 0.0:
            raise ValueError(f"spin must be 0 or more seconds, not {spin}")
        self._spin = _Spin(spin)
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        self._kernel_timeout = 0.0

    @property
    def spin(self) -> float:
        """Seconds a call polls for its reply before it sleeps (0: never)."""
        return self._spin.seconds

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def _call(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise TimeoutError("another call on this client is still waiting")
        try:
            request_id = self._start(message, self._sock is not None)
            with self._attempt:
                return self._roundtrip(message, request_id, deadline)
        finally:
            self._lock.release()

    def _roundtrip(self, message: dict[str, Any], request_id: int, deadline: float) -> dict[str, Any]:
        if self._sock is None:
            self._sock = _connect(self.address, max(deadline - time.monotonic(), 1e-6))
            # Blocking, with the deadline in the kernel (SO_RCVTIMEO/SO_SNDTIMEO): a call is one
            # send and one recv.  A Python socket timeout would add a poll() before each and an
            # fcntl() per change of timeout, and this call is all about its latency.
            self._sock.settimeout(None)
            self._kernel_timeout = 0.0
        sock = self._sock
        self._set_kernel_timeout(sock, deadline - time.monotonic())
        try:
            sock.sendall(encode(message))
        except BlockingIOError:
            raise TimeoutError("the service does not read its requests") from None
        except OSError:
            # The server may have said why before it closed (refused, line too long): that
            # beats "broken pipe" as the reason.
            self._raise_pending_error(sock)
            raise
        buffer = self._buffer
        spin = self._spin.budget()
        spin_until = min(time.monotonic() + spin, deadline) if spin else 0.0
        while True:
            end = buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = buffer[:end], buffer[end + 1 :]
                if spin:
                    self._spin.outcome(hit=spin_until > 0.0)
                return _check_response(line, request_id)
            if spin_until:
                try:
                    chunk = sock.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    if time.monotonic() >= spin_until:
                        spin_until = 0.0  # the spin ran out: sleep in recv, for what is left
                        self._set_kernel_timeout(sock, deadline - time.monotonic())
                    else:
                        os.sched_yield()  # anything else runnable here runs first
                    continue
            else:
                if buffer:  # a partial line: the next recv gets only what is left of the deadline
                    self._set_kernel_timeout(sock, deadline - time.monotonic(), exact=True)
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:  # SO_RCVTIMEO ran out
                    raise TimeoutError("no answer within the timeout") from None
            if not chunk:
                raise ConnectionError(_CLOSED)
            buffer += chunk
            if len(buffer) > MAX_LINE_BYTES * 4:
                raise ServiceError("response too long", code="malformed-response")

    def _set_kernel_timeout(self, sock: socket.socket, seconds: float, *, exact: bool = False) -> None:
        """Bound send and recv by ``seconds``; skipped (no syscall) while the bound set is close
        enough, which it is on every call but the first: the budget is the client's timeout."""
        if seconds <= 0:
            raise TimeoutError("no answer within the timeout")
        if not exact and abs(seconds - self._kernel_timeout) <= 0.1 * self._kernel_timeout:
            return
        whole = int(seconds)
        timeval = struct.pack("@ll", whole, max(1, int((seconds - whole) * 1e6)))  # 0 would mean never
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self._kernel_timeout = seconds

    def _raise_pending_error(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            pending = self._buffer + sock.recv(65536)
        except OSError:
            return
        line = pending.split(b"\n", 1)[0]
        try:
            response = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, Mapping):
            raise _server_error(error)

    def decide(self, request: Mapping[str, Any], *, explain: bool = False) -> Decision:
        """The service's decision, or the fallback (never allow) with the reason it could not be had."""
        try:
            return decision_from_response(self._call(_decide_message(request, explain)))
        except Exception as exc:  # fail closed, whatever went wrong
            return self.fallback.decision(request, _describe(exc))

    def state(self) -> dict[str, Any]:
        """The vehicle state (``ServiceError`` when the service cannot give it)."""
        return self._checked("state")

    def status(self) -> dict[str, Any]:
        """The service's status (``ServiceError`` when the service cannot give it)."""
        return self._checked("status")

    def ping(self) -> dict[str, Any]:
        return self._checked("ping")

    def _checked(self, op: str) -> dict[str, Any]:
        try:
            return _ok(self._call({"v": PROTOCOL_VERSION, "op": op}))
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError(_describe(exc), code="unavailable") from exc

    def subscribe(self, *, heartbeats: bool = False) -> Iterator[dict[str, Any]]:
        """Events as they come (the first is ``snapshot``), on a connection of their own.

        Ends after yielding a ``disconnected`` event when the connection is lost or silent.
        """
        events = _Events(heartbeats)
        try:
            sock = _connect(self.address, max(self.timeout, 0.5))
        except OSError as exc:
            yield events.lost(_describe(exc))
            return
        try:
            # A refused client may find the connection closed before it has sent this: what the
            # server said first (its error line) is still read below, and ends the subscription.
            with contextlib.suppress(OSError):
                sock.sendall(_SUBSCRIBE)
            sock.settimeout(SUBSCRIBE_SILENCE_S)
            while not events.done:
                try:
                    chunk = sock.recv(65536)
                except OSError as exc:
                    yield events.lost(_describe(exc))
                    return
                yield from events.feed(chunk)
        finally:
            sock.close()


class AsyncClient(_ClientBase):
    """The asyncio client: the same calls, awaited.  Calls on one client are serialised."""

    def __init__(self, path: Address, timeout: float = 0.05, fallback: Fallback | None = None) -> None:
        super().__init__(path, timeout, fallback)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        limit = MAX_LINE_BYTES * 4
        if isinstance(self.address, tuple):
            return await asyncio.open_connection(*self.address, limit=limit)
        return await asyncio.open_unix_connection(os.fspath(self.address), limit=limit)

    async def close(self) -> None:
        self._drop()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
        self._streams = None

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with asyncio.timeout(self.timeout), self._lock:
            request_id = self._start(message, self._streams is not None)
            with self._attempt:
                if self._streams is None:
                    self._streams = await self._open()
                reader, writer = self._streams
                writer.write(encode(message))
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise ConnectionError(_CLOSED)
                return _check_response(line, request_id)

    async def decide(self, request: Mapping[str, Any], *, explain: bool = False) -> Decision:
        """As :meth:`Client.decide`: the service's decision, or the fallback; never raises."""
        try:
            return decision_from_response(await self._call(_decide_message(request, explain)))
        except Exception as exc:  # fail closed, whatever went wrong (TimeoutError included)
            return self.fallback.decision(request, _describe(exc))

    async def state(self) -> dict[str, Any]:
        return await self._checked("state")

    async def status(self) -> dict[str, Any]:
        return await self._checked("status")

    async def _checked(self, op: str) -> dict[str, Any]:
        try:
            return _ok(await self._call({"v": PROTOCOL_VERSION, "op": op}))
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError(_describe(exc), code="unavailable") from exc

    async def subscribe(self, *, heartbeats: bool = False) -> AsyncIterator[dict[str, Any]]:
        """As :meth:`Client.subscribe`, as an async iterator."""
        events = _Events(heartbeats)
        try:
            reader, writer = await asyncio.wait_for(self._open(), max(self.timeout, 0.5))
        except (OSError, TimeoutError) as exc:
            yield events.lost(_describe(exc))
            return
        try:
            writer.write(_SUBSCRIBE)
            while not events.done:
                try:
                    line = await asyncio.wait_for(reader.readline(), SUBSCRIBE_SILENCE_S)
                except (OSError, TimeoutError, ValueError) as exc:
                    yield events.lost(_describe(exc))
                    return
                # A line cut short is all that is left of a closed connection.
                for event in events.feed(line if line.endswith(b"\n") else b""):
                    yield event
        finally:
            writer.close()
