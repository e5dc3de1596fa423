"""The asyncio client of ``drivegate serve``: :class:`AsyncClient`, the same calls as :class:`~safety.client.client.Client`, awaited.

It fails closed the same way (see :mod:`safety.client.client`); it does not poll for replies:
its event loop owns the waiting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from safety.client.base import (
    _CLOSED,
    _SUBSCRIBE,
    SUBSCRIBE_SILENCE_S,
    Address,
    Fallback,
    _check_response,
    _ClientBase,
    _decide_message,
    _describe,
    _Events,
    _ok,
    check_server,
    decision_from_response,
)
from safety.client.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, encode
from safety.errors import ServiceError
from safety.model.decision import Decision


class AsyncClient(_ClientBase):
    """The asyncio client: the same calls, awaited.  Calls on one client are serialised."""

    def __init__(
        self,
        path: Address,
        timeout: float = 0.05,
        fallback: Fallback | None = None,
        *,
        server_uid: int | Iterable[int] | None = None,
    ) -> None:
        super().__init__(path, timeout, fallback, server_uid)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        limit = MAX_LINE_BYTES * 4
        if isinstance(self.address, tuple):
            return await asyncio.open_connection(*self.address, limit=limit)
        reader, writer = await asyncio.open_unix_connection(os.fspath(self.address), limit=limit)
        try:
            check_server(writer.get_extra_info("socket"), self.address, self.server_uids)
        except ServiceError:
            writer.close()
            raise
        return reader, writer

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
