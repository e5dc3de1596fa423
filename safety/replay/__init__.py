"""Replay: a recorded log through the engine, as a timeline of states and probe decisions."""

from safety.replay.timeline import (
    BUILTIN_PROBES,
    ReplaySummary,
    Timeline,
    VirtualPlayer,
    load_probes,
    profile_channel,
    replay_file,
    replay_virtual,
)

__all__ = [
    "BUILTIN_PROBES",
    "ReplaySummary",
    "Timeline",
    "VirtualPlayer",
    "load_probes",
    "profile_channel",
    "replay_file",
    "replay_virtual",
]
