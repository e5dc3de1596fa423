"""Shared test helpers: a demo car that sends real frames, encoded with the real DBC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import can
import cantools
import pytest

from safety import Engine
from safety.vehicle.decode import write_raw
from safety.vehicle.e2e import seal as e2e_seal

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEMO_VEHICLE = ROOT / "dbc" / "demo_sedan.yaml"
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
SPEED_BANDS_POLICY = ROOT / "policies" / "speed-bands.yaml"
GEAR_RAW = {"P": "PARK", "R": "REVERSE", "N": "NEUTRAL", "D": "DRIVE", "SNA": "SNA"}


def shared(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test when the shared data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


class DemoCar:
    """Encodes the demo sedan's messages with cantools and feeds them to an engine as can.Message."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.db = cantools.database.load_file(str(ROOT / "dbc" / "demo_sedan.dbc"))
        self.counters: dict[str, int] = {}  # the next alive counter of each protected message

    def frame(self, name: str, t: float, *, seal: bool = True, **values: Any) -> can.Message:
        """One frame of ``name`` at ``t``; protected messages carry the next counter and a good checksum."""
        message = self.db.get_message_by_name(name)
        full: dict[str, Any] = {}
        for sig in message.signals:
            if sig.multiplexer_ids and values.get("BodyMux", 0) not in sig.multiplexer_ids:
                continue
            full[sig.name] = values.get(sig.name, 0)
        data = bytearray(message.encode(full, strict=False))
        protection = self.engine.profile.e2e.get((message.frame_id, False))
        if protection is not None and seal:
            counter = self.counters.get(name, 0)
            self.counters[name] = counter + 1
            e2e_seal(protection, data, counter, lambda d, s, raw: write_raw(d, message.get_signal_by_name(s), raw))
        return can.Message(
            timestamp=t, arbitration_id=message.frame_id, is_extended_id=False, data=data, channel="can0"
        )

    def send(self, name: str, t: float, **values: Any) -> None:
        self.engine.on_frame(self.frame(name, t, **values))

    def state(
        self,
        t: float,
        *,
        speed: float = 0.0,
        gear: str = "P",
        angle: float = 0.0,
        rate: float = 0.0,
        parking_brake: str = "ENGAGED",
        turn: str = "OFF",
        brake: int = 0,
    ) -> None:
        """Send one frame of every mapped message at time t."""
        coarse = round(angle / 1.5) * 1.5
        self.send("VEHICLE_SPEED", t, VehicleSpeed=speed)
        self.send("TRANSMISSION", t, GearPosition=GEAR_RAW.get(gear, gear))
        self.send("STEERING", t, SteeringAngle=coarse, SteeringAngleFine=round(angle - coarse, 1), SteeringRate=rate)
        self.send("BODY_STATUS", t, BodyMux=0, ParkingBrake=parking_brake, TurnSignal=turn)
        self.send("BRAKE", t, BrakePressed=brake)

    def hold(self, t0: float, t1: float, step: float = 0.01, **kwargs: Any) -> None:
        """Keep sending the same state every ``step`` seconds from t0 to t1 (inclusive)."""
        n = round((t1 - t0) / step)
        for i in range(n + 1):
            self.state(t0 + i * step, **kwargs)


@pytest.fixture
def engine() -> Engine:
    return Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)


@pytest.fixture
def car(engine: Engine) -> DemoCar:
    return DemoCar(engine)


def request(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "notification",
        "category": "message",
        "modality": "visual",
        "content": "text",
        "priority": "normal",
        "text_length": 80,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def killed_after(script: str) -> None:
    """Run Python ``script`` (which prints "ready" when done, then waits) and SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script + "print('ready', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def stderr_on_a_terminal(command: list[str]) -> str:
    """Run ``command`` with stderr on a pseudo-terminal; what it wrote there."""
    main, child = os.openpty()
    try:
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child, timeout=300, check=False)
    finally:
        os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return b"".join(chunks).decode()


T = TypeVar("T")


def with_peak_memory(work: Callable[[], T]) -> tuple[T, int]:
    """``work()``'s result and the most memory Python held while it ran (tracemalloc, bytes)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
