"""Clients of ``drivegate serve``: :class:`Client` (blocking); :class:`~safety.client.aio.AsyncClient` is the asyncio one.

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

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from safety.client.base import (
    _CLOSED,
    _SUBSCRIBE,
    DEFAULT_SPIN_S,
    SUBSCRIBE_SILENCE_S,
    Address,
    Fallback,
    _check_response,
    _ClientBase,
    _connect,
    _decide_message,
    _describe,
    _Events,
    _ok,
    _server_error,
    _Spin,
    decision_from_response,
)
from safety.client.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, encode
from safety.errors import ServiceError
from safety.model.decision import Decision

# Re-exported: what callers of the blocking client use with it.
__all__ = ["DEFAULT_SPIN_S", "Client", "Fallback", "decision_from_response"]


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
        server_uid: int | Iterable[int] | None = None,
    ) -> None:
        super().__init__(path, timeout, fallback, server_uid)
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
            self._sock = _connect(self.address, max(deadline - time.monotonic(), 1e-6), self.server_uids)
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
            sock = _connect(self.address, max(self.timeout, 0.5), self.server_uids)
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
