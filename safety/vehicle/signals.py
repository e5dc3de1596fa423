"""The canonical signals: what DriveGate knows about a vehicle, whatever its DBC calls it.

One table gives each signal its kind, unit, COVESA VSS path and the physical limits used
to reject implausible values.  Vehicle profiles map DBC signals onto these names;
policies and the state tracker speak only these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SignalKind = Literal["number", "enum", "bool"]


@dataclass(frozen=True)
class CanonicalSignal:
    """One canonical signal.

    ``physical_range`` bounds every plausible value; ``max_rate`` bounds how fast a real
    vehicle can change it (units per second), and ``jump_tolerance`` absorbs sensor
    quantisation on top of that.  Values outside either are implausible.
    """

    name: str
    kind: SignalKind
    unit: str
    vss: str
    required: bool = False
    values: tuple[str, ...] = ()
    physical_range: tuple[float, float] | None = None
    max_rate: float | None = None
    jump_tolerance: float = 0.0
    description: str = ""


GEARS = ("P", "R", "N", "D")
TURN_SIGNALS = ("none", "left", "right", "hazard")

CANONICAL_SIGNALS: dict[str, CanonicalSignal] = {
    s.name: s
    for s in (
        CanonicalSignal(
            "speed",
            "number",
            "km/h",
            "Vehicle.Speed",
            required=True,
            physical_range=(-60.0, 400.0),
            # 40 km/h per s is about 1.13 g: beyond a road car's braking on dry asphalt (about
            # 1 g) and its acceleration.  The tolerance absorbs sensor jitter on top (the source's
            # own quantum is added per profile): the comma2k19 RAV4's SPEED moves at most about
            # 1 km/h between samples in real driving and glitches by 2-4 km/h.
            max_rate=40.0,
            jump_tolerance=1.0,
            description="vehicle speed; negative values, where a DBC gives them, mean reversing",
        ),
        CanonicalSignal(
            "gear",
            "enum",
            "",
            "Vehicle.Powertrain.Transmission.SelectedGear",
            required=True,
            values=GEARS,
            description="selected gear: P, R, N or D",
        ),
        CanonicalSignal(
            "steering_angle",
            "number",
            "deg",
            "Vehicle.Chassis.SteeringWheel.Angle",
            required=True,
            physical_range=(-1800.0, 1800.0),
            max_rate=3000.0,
            jump_tolerance=20.0,
            description="steering wheel angle, positive = left",
        ),
        CanonicalSignal(
            "steering_rate",
            "number",
            "deg/s",
            "Vehicle.Chassis.SteeringWheel.Angle (time derivative)",
            physical_range=(-5000.0, 5000.0),
            description="steering wheel angular rate; derived from the angle when not mapped",
        ),
        CanonicalSignal(
            "parking_brake",
            "bool",
            "",
            "Vehicle.Chassis.ParkingBrake.IsEngaged",
            description="parking brake engaged",
        ),
        CanonicalSignal(
            "turn_signal",
            "enum",
            "",
            "Vehicle.Body.Lights.DirectionIndicator.{Left,Right}.IsSignaling",
            values=TURN_SIGNALS,
            description="direction indicator: none, left, right or hazard",
        ),
        CanonicalSignal(
            "brake_pressed",
            "bool",
            "",
            "Vehicle.Chassis.Brake.IsDriverEmergencyBraking / PedalPosition > 0",
            description="driver presses the brake pedal",
        ),
        CanonicalSignal(
            "accelerator_pedal",
            "number",
            "%",
            "Vehicle.Chassis.Accelerator.PedalPosition",
            physical_range=(0.0, 100.0),
            description="accelerator pedal position",
        ),
        CanonicalSignal(
            "eyes_on_road",
            "bool",
            "",
            "Vehicle.Driver.IsEyesOnRoad",
            description="driver monitoring camera: eyes on the road",
        ),
    )
}

REQUIRED_SIGNALS = tuple(name for name, s in CANONICAL_SIGNALS.items() if s.required)
