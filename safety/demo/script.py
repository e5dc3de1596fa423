"""The demo sedan's drive script: the phases of a plausible two-minute trip and the kinematic model.

The drive is a list of :class:`Phase` objects (parked, pull out, city, red light, sharp turn,
highway, reverse parking, ...).  A small kinematic model, :class:`DriveModel`, turns them into
smooth speed and steering curves: every change is a raised-cosine ease, so speed, acceleration,
steering angle and steering rate are continuous -- nothing teleports, which a plausibility
checker downstream would rightly flag.  :mod:`safety.demo.drive` turns the model into frames.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Gear = Literal["P", "R", "N", "D", "S"]
TurnSignal = Literal["off", "left", "right", "hazard"]

KMH_PER_MPS: Final = 3.6
_GEARS: Final = ("P", "R", "N", "D", "S")
_TURN_SIGNALS: Final = ("off", "left", "right", "hazard")

# The brake switch closes when the model decelerates harder than coasting would, or when the
# car waits in gear at a standstill (an automatic creeps otherwise).
_BRAKE_DECEL_MPS2: Final = 0.3
_STANDSTILL_KMH: Final = 1.0

# -- phases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One stretch of the drive.

    Speed eases (raised cosine) from the previous phase's target to ``speed_kmh``, starting
    ``hold_s`` into the phase and peaking at ``accel_mps2``; it then holds.  The steering angle
    eases through ``steering`` knots, each ``(time into the phase in s, angle in deg)``, from
    the angle the previous phase ended on, then holds the last knot; ``weave_deg`` adds a gentle
    lane-keeping sway of that amplitude that is zero (with zero rate) at both ends of the phase.
    ``brake`` forces the brake switch; ``None`` lets the model decide (decelerating, or waiting
    in gear).  Gears are canonical: P, R, N, D, S (sport, a forward gear).
    """

    name: str
    duration_s: float
    speed_kmh: float = 0.0
    gear: Gear = "D"
    accel_mps2: float = 2.0
    hold_s: float = 0.0
    steering: tuple[tuple[float, float], ...] = ()
    weave_deg: float = 0.0
    weave_period_s: float = 8.0
    turn_signal: TurnSignal = "off"
    brake: bool | None = None
    parking_brake: bool = False

    def __post_init__(self) -> None:
        where = f"phase '{self.name}'"
        if not self.name:
            raise ValueError("a phase needs a name")
        if not self.duration_s > 0:
            raise ValueError(f"{where}: duration_s must be positive, got {self.duration_s}")
        if not 0 <= self.speed_kmh <= 250:
            raise ValueError(f"{where}: speed_kmh must be in 0..250, got {self.speed_kmh}")
        if self.gear not in _GEARS:
            raise ValueError(f"{where}: gear must be one of {', '.join(_GEARS)}, got {self.gear!r}")
        if self.turn_signal not in _TURN_SIGNALS:
            raise ValueError(f"{where}: turn_signal must be one of {', '.join(_TURN_SIGNALS)}")
        if not 0 < self.accel_mps2 <= 10:
            raise ValueError(f"{where}: accel_mps2 must be in (0, 10], got {self.accel_mps2}")
        if not 0 <= self.hold_s < self.duration_s:
            raise ValueError(f"{where}: hold_s must be in [0, duration_s), got {self.hold_s}")
        if self.weave_deg and not self.weave_period_s > 0:
            raise ValueError(f"{where}: weave_period_s must be positive")
        previous = 0.0
        for when, _angle in self.steering:
            # A knot at the phase start would be a jump from the previous phase's angle.
            if not previous < when <= self.duration_s:
                raise ValueError(f"{where}: steering knot times must increase within (0, duration_s], got {when}")
            previous = when
        if self.gear in ("P", "N") and self.speed_kmh > 0:
            raise ValueError(f"{where}: cannot drive at {self.speed_kmh} km/h in {self.gear}")
        if self.parking_brake and self.speed_kmh > 0:
            raise ValueError(f"{where}: cannot drive with the parking brake on")


# The demo trip: 136 s.  136 s is a multiple of 1.6 s, the time every protected message needs
# for a whole number of 16-step counter turns, so a repeated drive keeps its counters rolling
# without re-sealing a frame (see drive_frames).
DEMO_PHASES: Final[tuple[Phase, ...]] = (
    Phase("parked", 8.0, gear="P", parking_brake=True),
    # Foot on the brake, parking brake released, shift to D; pull out from the kerb.
    Phase(
        "pulling out",
        14.0,
        speed_kmh=45.0,
        accel_mps2=1.8,
        hold_s=1.5,
        steering=((3.0, 18.0), (6.0, 18.0), (9.0, -6.0), (11.0, 0.0)),
    ),
    Phase(
        "city driving",
        12.0,
        speed_kmh=45.0,
        weave_deg=12.0,
        weave_period_s=7.0,
        steering=((3.5, -10.0), (8.0, 8.0), (11.5, 0.0)),
    ),
    Phase("braking for red light", 10.0, speed_kmh=0.0, accel_mps2=2.0),
    Phase("waiting at red light", 10.0, speed_kmh=0.0),
    Phase("pulling away", 6.0, speed_kmh=15.0, accel_mps2=1.5, hold_s=0.5, turn_signal="left"),
    # A 90-degree left turn at 15 km/h: ~250 deg of wheel at up to ~245 deg/s.
    Phase(
        "sharp left turn",
        6.0,
        speed_kmh=15.0,
        turn_signal="left",
        steering=((0.4, 0.0), (2.0, 250.0), (3.5, 250.0), (5.5, 0.0)),
    ),
    Phase("highway on-ramp", 16.0, speed_kmh=115.0, accel_mps2=2.8, steering=((4.0, -8.0), (8.0, -8.0), (12.0, 0.0))),
    Phase("highway cruise", 14.0, speed_kmh=115.0, weave_deg=3.0, weave_period_s=5.0),
    Phase(
        "slowing down",
        15.0,
        speed_kmh=30.0,
        accel_mps2=2.5,
        turn_signal="right",
        steering=((5.0, -15.0), (10.0, -15.0), (14.0, 0.0)),
    ),
    Phase("stopping", 7.0, speed_kmh=0.0, accel_mps2=2.0),
    # Shift to R and reverse into a parking spot with the wheel near full lock.
    Phase(
        "reversing into spot",
        9.0,
        speed_kmh=6.0,
        gear="R",
        accel_mps2=0.8,
        hold_s=1.5,
        steering=((2.0, 0.0), (4.0, -320.0), (6.5, -320.0), (8.5, -40.0)),
    ),
    Phase("stopping in spot", 4.0, speed_kmh=0.0, gear="R", accel_mps2=1.0, steering=((3.0, 0.0),)),
    Phase("parked again", 5.0, gear="P", parking_brake=True),
)


def drive_duration(phases: Sequence[Phase] = DEMO_PHASES) -> float:
    """Total drive time of ``phases`` in seconds."""
    return math.fsum(p.duration_s for p in phases)


def phase_at(t: float, phases: Sequence[Phase] = DEMO_PHASES) -> str:
    """Name of the phase at drive time ``t`` (seconds from the drive's start).

    Times before the start give the first phase and times after the end the last one, so a
    display never fails on a frame a little outside the drive.  For a repeated drive pass
    ``t % drive_duration(phases)``.
    """
    if not phases:
        raise ValueError("no phases")
    ends = _phase_ends(phases)
    return phases[min(bisect.bisect_right(ends, t), len(phases) - 1)].name


def _phase_ends(phases: Sequence[Phase]) -> list[float]:
    ends: list[float] = []
    total = 0.0
    for phase in phases:
        total += phase.duration_s
        ends.append(total)
    return ends


# -- the kinematic model ----------------------------------------------------------------------


@dataclass(frozen=True)
class DriveState:
    """The vehicle as the model has it at one instant of the drive."""

    t: float
    phase: str
    speed_kmh: float  # never negative; the gear gives the direction
    accel_mps2: float  # d(speed)/dt: positive = speeding up, in either direction
    gear: Gear
    steering_deg: float  # steering wheel, positive = left
    steering_rate_dps: float
    turn_signal: TurnSignal
    brake_pressed: bool
    brake_pressure_bar: float
    parking_brake: bool


def _ease(t: float, t0: float, t1: float, a: float, b: float) -> tuple[float, float]:
    """Raised-cosine ease from ``a`` at ``t0`` to ``b`` at ``t1``: (value, derivative).

    The derivative is zero at both ends, so consecutive eases join without a kink.
    """
    if t <= t0:
        return a, 0.0
    if t >= t1:
        return b, 0.0
    span = t1 - t0
    u = math.pi * (t - t0) / span
    return a + (b - a) * 0.5 * (1.0 - math.cos(u)), (b - a) * 0.5 * math.pi * math.sin(u) / span


class DriveModel:
    """Smooth speed and steering curves through a sequence of phases.

    Raises ``ValueError`` for a drive no car could do: a speed change too large for its phase
    at the phase's acceleration, or a gear change while moving.
    """

    def __init__(self, phases: Sequence[Phase] = DEMO_PHASES) -> None:
        if not phases:
            raise ValueError("a drive needs at least one phase")
        self.phases: tuple[Phase, ...] = tuple(phases)
        self._starts: list[float] = []
        self._start_speed: list[float] = []  # m/s at the start of each phase
        self._ramp_s: list[float] = []  # duration of each phase's speed ease
        self._start_angle: list[float] = []
        t = 0.0
        speed = 0.0  # every drive starts at rest
        angle = 0.0
        gear: str | None = None
        for phase in self.phases:
            target = phase.speed_kmh / KMH_PER_MPS
            # A raised cosine over T seconds peaks at (pi/2) * dv / T: pick T for the phase's peak.
            ramp = 0.5 * math.pi * abs(target - speed) / phase.accel_mps2
            if phase.hold_s + ramp > phase.duration_s + 1e-9:
                raise ValueError(
                    f"phase '{phase.name}': going from {speed * KMH_PER_MPS:.1f} to {phase.speed_kmh} km/h"
                    f" at {phase.accel_mps2} m/s^2 takes {ramp:.1f} s, more than the phase has"
                )
            if gear is not None and phase.gear != gear and speed > 0:
                raise ValueError(f"phase '{phase.name}': shifting from {gear} to {phase.gear} while moving")
            self._starts.append(t)
            self._start_speed.append(speed)
            self._ramp_s.append(ramp)
            self._start_angle.append(angle)
            t += phase.duration_s
            speed = target
            if phase.steering:
                angle = phase.steering[-1][1]
            gear = phase.gear
        self.duration: float = t
        if speed > 0:
            raise ValueError("the drive must end at a standstill")

    def phase_index(self, t: float) -> int:
        """Index of the phase at drive time ``t`` (clamped to the drive)."""
        return max(0, min(bisect.bisect_right(self._starts, t) - 1, len(self.phases) - 1))

    def speed(self, t: float) -> tuple[float, float]:
        """Speed in km/h and acceleration in m/s^2 at drive time ``t``."""
        i = self.phase_index(t)
        phase = self.phases[i]
        t0 = self._starts[i] + phase.hold_s
        v, a = _ease(t, t0, t0 + self._ramp_s[i], self._start_speed[i], phase.speed_kmh / KMH_PER_MPS)
        return max(0.0, v * KMH_PER_MPS), a

    def steering(self, t: float) -> tuple[float, float]:
        """Steering wheel angle in degrees and its rate in deg/s at drive time ``t``."""
        i = self.phase_index(t)
        phase = self.phases[i]
        tau = min(max(t - self._starts[i], 0.0), phase.duration_s)
        angle, rate = self._start_angle[i], 0.0
        previous_t = 0.0
        for when, target in phase.steering:
            if tau <= when:
                angle, rate = _ease(tau, previous_t, when, angle, target)
                break
            previous_t, angle = when, target
        if phase.weave_deg:
            # sin^2 window x sine: zero value and zero slope at the phase's ends.
            d, p, a = phase.duration_s, phase.weave_period_s, phase.weave_deg
            window = math.sin(math.pi * tau / d) ** 2
            window_rate = math.pi / d * math.sin(2.0 * math.pi * tau / d)
            wave = math.sin(2.0 * math.pi * tau / p)
            wave_rate = 2.0 * math.pi / p * math.cos(2.0 * math.pi * tau / p)
            angle += a * window * wave
            rate += a * (window_rate * wave + window * wave_rate)
        return angle, rate

    def state_at(self, t: float) -> DriveState:
        """The full vehicle state at drive time ``t`` (clamped to the drive)."""
        i = self.phase_index(t)
        phase = self.phases[i]
        speed, accel = self.speed(t)
        angle, rate = self.steering(t)
        waiting = speed < _STANDSTILL_KMH and accel <= 0.05 and phase.gear not in ("P", "N")
        pressed = phase.brake if phase.brake is not None else accel < -_BRAKE_DECEL_MPS2 or waiting
        # Roughly 15 bar per m/s^2 of deceleration; holding a car at rest takes ~12 bar.
        pressure = max(-accel * 15.0, 12.0 if waiting else 4.0) if pressed else 0.0
        return DriveState(
            t=t,
            phase=phase.name,
            speed_kmh=speed,
            accel_mps2=accel,
            gear=phase.gear,
            steering_deg=angle,
            steering_rate_dps=rate,
            turn_signal=phase.turn_signal,
            brake_pressed=pressed,
            brake_pressure_bar=min(pressure, 250.0),
            parking_brake=phase.parking_brake,
        )
