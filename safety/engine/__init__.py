"""The in-process API: :class:`~safety.engine.engine.Engine` (frames in, decisions out) and its
consistent read, :class:`~safety.engine.engine.EngineView`; :mod:`.gate` is what a policy must pass
before an engine enforces it.
"""

from safety.engine.engine import Engine, EngineView

__all__ = ["Engine", "EngineView"]
