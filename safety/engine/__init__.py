"""The in-process API: :class:`~safety.engine.engine.Engine` (frames in, decisions out) and its
consistent read, :class:`~safety.engine.engine.EngineView`.
"""
