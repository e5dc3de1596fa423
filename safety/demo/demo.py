"""``drivegate demo``: the scripted drive on a virtual bus, decisions shown as they change."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from safety import builtin
from safety.demo.drive import drive_duration, phase_at, scripted_drive
from safety.engine.engine import Engine
from safety.io.logs import Frame
from safety.replay.timeline import BUILTIN_PROBES, Timeline, VirtualPlayer

# The drive lasts about 136 s; four times real time shows it in about 35 s.
# DRIVEGATE_DEMO_SPEED overrides it (tests run the demo much faster).
DEMO_SPEED = float(os.environ.get("DRIVEGATE_DEMO_SPEED", "4"))
SHOWN = ("message-text", "read-aloud", "video", "keyboard", "list", "critical-call")
SHORT = {"allow": "allow", "deny": "DENY", "defer": "defer", "degrade": "degr."}


def run_demo(vehicle: Path, policy: Path, speed: float = DEMO_SPEED) -> int:
    """Play the scripted drive at ``speed`` times real time (0: as fast as possible) onto a virtual
    bus, decide along it with ``vehicle`` and ``policy`` and print each change; 0 unless the player
    failed (1)."""
    engine = Engine.load(vehicle, policy)
    start = 0.0
    pace = f"{speed:g}x real time" if speed > 0 else "full speed (unpaced)"
    print(
        f"DriveGate demo: {engine.profile.name} on a virtual CAN bus, policy '{engine.policy.name}' "
        f"({engine.policy.hash}); the {drive_duration():.0f} s drive at {pace}."
    )
    header = f"{'t (s)':>6}  {'phase':<22} {'km/h':>6} {'gear':>4} {'angle':>6}  {'state':<10} {'load':<5} " + " ".join(
        f"{name[:9]:>9}" for name in SHOWN
    )
    print(header)
    print("-" * len(header))

    def show(line: dict[str, Any]) -> None:
        t = line["t"] - start
        speed_text = "-" if line["speed"] is None else f"{line['speed']:.1f}"
        angle = "-" if line["steering_angle"] is None else f"{line['steering_angle']:.0f}"
        decisions = " ".join(f"{SHORT[line['decisions'][name]]:>9}" for name in SHOWN)
        print(
            f"{t:6.1f}  {phase_at(t):<22} {speed_text:>6} {line['gear'] or '-':>4} {angle:>6}  "
            f"{line['driving_state'] or 'UNKNOWN':<10} {line['workload'] or '?':<5} {decisions}",
            flush=True,
        )

    frames = (
        Frame(m.timestamp, m.arbitration_id, m.is_extended_id, bytes(m.data), str(m.channel))
        for m in scripted_drive(start_time=start)
    )
    timeline = Timeline(engine, BUILTIN_PROBES, None, sample_every=10.0, on_line=show)
    player = VirtualPlayer(frames, timeline.channel, speed)
    try:
        player.start()
        summary = timeline.run(player.received())
    finally:
        player.stop()
    print()
    print(summary.format())
    print("\nLegend: degr. = degraded (read aloud, voice input, list cut); defer = held until the drive is calmer.")
    return 0 if player.error is None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(
        run_demo(
            builtin.DEMO_VEHICLE,
            builtin.DEFAULT_POLICY,
        )
    )
