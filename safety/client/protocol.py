"""The wire protocol of ``drivegate serve``: newline-delimited JSON, one request line, one response line.

Shared by the server and :mod:`safety.client.client`, and kept free of asyncio and of the engine so a
client imports only this.  ``docs/protocol.md`` is the language-neutral description; the
constants here are the ones it documents.

Every line is one UTF-8 JSON object ended by ``\\n``.  A request names its operation (``op``)
and may carry an ``id``, echoed back so a client can match responses; every response and event
carries ``"v": 1``.  A failure is ``{"ok": false, "error": {"code": ..., "message": ...}}`` with
one of the stable codes in :data:`ERROR_CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from safety.errors import ServiceError
from safety.jsontext import loads_strict, may_hide_duplicates

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# One line (without its newline) may be this long; a longer one is an error and closes the
# connection, so a client cannot make the server buffer without bound.
MAX_LINE_BYTES = 65536
# Operations a client may ask.  None of them can change the policy: that takes SIGHUP from
# whoever may signal the server process.
OPERATIONS = ("decide", "state", "status", "subscribe", "ping")

# Stable error codes (never renamed once released) and when each is sent.  ``closes``: the
# server closes the connection after sending it.
ERROR_CODES: Mapping[str, str] = {
    "bad-json": "the line is not a JSON object in UTF-8",
    "bad-request": "the object is not a valid request (op missing or not a string, id not a scalar, "
    "decide without a request object)",
    "unsupported-version": "v is not a protocol version this server speaks",
    "unknown-op": "op names no operation (there is no operation that changes the policy)",
    "rate-limited": "more requests (or explained decisions) than the rate allows; error.retry_after_ms says "
    "when to retry",
    "line-too-long": "a line longer than MAX_LINE_BYTES; closes",
    "refused": "the peer's uid/gid is not allowed; closes",
    "send-queue-full": "the client does not read what it is sent; closes",
    "too-many-connections": "the peer process (or the server) has as many connections open as allowed; closes",
    "internal": "the server failed to answer this request (a bug); the connection stays usable",
}
CLOSING_CODES = frozenset({"line-too-long", "refused", "send-queue-full", "too-many-connections"})

_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def encode(message: Mapping[str, Any]) -> bytes:
    """One wire line (with its newline) for ``message``."""
    return orjson.dumps(message, option=_DUMPS_OPTIONS)


def error_line(code: str, message: str, op: Any = None, request_id: Any = None, **extra: Any) -> bytes:
    """An error response line: ``{"v": 1, "ok": false, "op", "id", "error": {"code", "message", ...}}``."""
    return encode(
        {
            "v": PROTOCOL_VERSION,
            "ok": False,
            "op": op,
            "id": request_id,
            "error": {"code": code, "message": message, **extra},
        }
    )


def parse_message(line: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Decode one line (without its newline) into a JSON object; ``ServiceError`` if it is not one."""
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(f"not JSON: {exc}", code="bad-json") from None
    # bytes and bytearray are checked as they are (no copy on the hot path); str and memoryview
    # are turned into bytes.
    raw = line.encode() if isinstance(line, str) else line if isinstance(line, bytes | bytearray) else bytes(line)
    if may_hide_duplicates(raw, message):
        try:
            loads_strict(raw)
        except ValueError as exc:  # orjson read it, so only a duplicate key or a huge integer
            raise ServiceError(f"not JSON DriveGate accepts: {exc}", code="bad-json") from None
    if type(message) is not dict:
        raise ServiceError(f"a line must be a JSON object, got {type(message).__name__}", code="bad-json")
    return message


def check_envelope(message: Mapping[str, Any]) -> tuple[str, Any]:
    """The ``(op, id)`` of a request object; ``ServiceError`` if the envelope is wrong."""
    request_id = message.get("id")
    if request_id is not None and type(request_id) not in (str, int, float):
        raise ServiceError("id must be a string or a number", code="bad-request")
    version = message.get("v", PROTOCOL_VERSION)
    if version not in SUPPORTED_VERSIONS or type(version) is not int:
        raise ServiceError(
            f"protocol version {version!r} is not supported; this server speaks {list(SUPPORTED_VERSIONS)}",
            code="unsupported-version",
        )
    op = message.get("op")
    if type(op) is not str:
        raise ServiceError("op must be a string naming the operation", code="bad-request")
    return op, request_id
