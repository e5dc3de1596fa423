"""The client of the decision service, with the wire protocol it shares with the server.

Lean on purpose: ``from safety import Client`` loads neither python-can, cantools,
cryptography nor the engine (a test and an import-linter contract keep it so).
"""

from typing import TYPE_CHECKING, Any

__all__ = ["AsyncClient", "Client", "Fallback"]

if TYPE_CHECKING:
    from safety.client.aio import AsyncClient
    from safety.client.base import Fallback
    from safety.client.client import Client

_EXPORTS = {"AsyncClient": "safety.client.aio", "Client": "safety.client.client", "Fallback": "safety.client.base"}


def __getattr__(name: str) -> Any:
    # Lazily, so the blocking client never loads asyncio.
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safety.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
