"""The demo sedan's scripted drive: every CAN frame of a plausible two-minute trip.

``drivegate demo``, the tests and ``tools/gen_drive.py`` use it to have real traffic without a
car.  The drive is a list of :class:`Phase` objects (parked, pull out, city, red light, sharp
turn, highway, reverse parking, ...).  A small kinematic model, :class:`DriveModel`, turns them
into smooth speed and steering curves: every change is a raised-cosine ease, so speed,
acceleration, steering angle and steering rate are continuous -- nothing teleports, which a
plausibility checker downstream would rightly flag.

:func:`scripted_drive` samples the model at each message's DBC cycle time (with a small,
seeded, deterministic jitter), encodes the frames with cantools from ``dbc/demo_sedan.dbc`` and
seals the protected messages with their rolling counter and CRC-8 SAE J1850 checksum, as the
DBC's comment specifies.  Two runs with the same arguments give identical frames.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import can
import cantools
from cantools.database.can import Database, Signal

from safety import builtin
from safety.errors import DbcError, Location

__all__ = [
    "DEFAULT_SEED",
    "DEMO_DBC",
    "DEMO_PHASES",
    "DriveModel",
    "DriveState",
    "Phase",
    "RawFrame",
    "crc8_j1850",
    "drive_duration",
    "drive_frames",
    "frame_checksum",
    "load_demo_dbc",
    "phase_at",
    "render_drive",
    "scripted_drive",
]

#: The demo vehicle's DBC, found next to the package so the demo works from a checkout.
DEMO_DBC: Final = builtin.DEMO_DBC

#: Seed of the timing jitter; fixed so that every run gives the same frames.
DEFAULT_SEED: Final = 20_240_611

Gear = Literal["P", "R", "N", "D", "S"]
TurnSignal = Literal["off", "left", "right", "hazard"]

_KMH_PER_MPS: Final = 3.6
_GEARS: Final = ("P", "R", "N", "D", "S")
_TURN_SIGNALS: Final = ("off", "left", "right", "hazard")
_DBC_GEAR: Final = {"P": "PARK", "R": "REVERSE", "N": "NEUTRAL", "D": "DRIVE", "S": "SPORT"}
_DBC_TURN: Final = {"off": "OFF", "left": "LEFT", "right": "RIGHT", "hazard": "HAZARD"}

# Vehicle constants of the model.  Ratio and geometry only shape the wheel speeds and the
# engine noise; nothing DriveGate decides on depends on them.
_STEERING_RATIO: Final = 15.0
_WHEELBASE_M: Final = 2.8
_HALF_TRACK_M: Final = 0.8
_IDLE_RPM: Final = 750.0
# Upshift speeds (km/h) and engine rpm per km/h of the 6-speed automatic in each gear.
_UPSHIFT_KMH: Final = (15.0, 30.0, 45.0, 65.0, 85.0)
_RPM_PER_KMH: Final = (105.0, 62.0, 44.0, 34.0, 27.0, 22.0)
_REVERSE_RPM_PER_KMH: Final = 110.0

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
            target = phase.speed_kmh / _KMH_PER_MPS
            # A raised cosine over T seconds peaks at (pi/2) * dv / T: pick T for the phase's peak.
            ramp = 0.5 * math.pi * abs(target - speed) / phase.accel_mps2
            if phase.hold_s + ramp > phase.duration_s + 1e-9:
                raise ValueError(
                    f"phase '{phase.name}': going from {speed * _KMH_PER_MPS:.1f} to {phase.speed_kmh} km/h"
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
        v, a = _ease(t, t0, t0 + self._ramp_s[i], self._start_speed[i], phase.speed_kmh / _KMH_PER_MPS)
        return max(0.0, v * _KMH_PER_MPS), a

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


# -- checksums --------------------------------------------------------------------------------


def _crc8_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_J1850_TABLE: Final = _crc8_table(0x1D)


def crc8_j1850(data: bytes | bytearray) -> int:
    """CRC-8 SAE J1850: polynomial 0x1D, initial 0xFF, not reflected, final XOR 0xFF."""
    crc = 0xFF
    table = _CRC8_J1850_TABLE
    for byte in data:
        crc = table[crc ^ byte]
    return crc ^ 0xFF


def frame_checksum(data: bytes | bytearray) -> int:
    """The checksum a protected demo-sedan frame carries in byte 7: CRC-8 J1850 of bytes 0..6."""
    return crc8_j1850(data[:7])


# Protected messages: (counter signal, checksum signal).  The DBC puts every counter in bits
# 0..3 of byte 6 and every checksum in byte 7; _check_layout makes sure it still does.
_PROTECTED: Final = {
    "STEERING": ("SteeringCounter", "SteeringChecksum"),
    "BRAKE": ("BrakeCounter", "BrakeChecksum"),
    "VEHICLE_SPEED": ("SpeedCounter", "SpeedChecksum"),
    "TRANSMISSION": ("TransCounter", "TransChecksum"),
    "BODY_STATUS": ("BodyCounter", "BodyChecksum"),
}
_COUNTER_BYTE: Final = 6
_CHECKSUM_BYTE: Final = 7


def _signal_bits(signal: Signal) -> tuple[int, int]:
    """(first, last) bit of ``signal`` in LSB-first numbering (byte * 8 + bit)."""
    if signal.byte_order == "little_endian":
        return signal.start, signal.start + signal.length - 1
    # Motorola: start is the MSB; only signals within one byte are asked about here.
    return signal.start - signal.length + 1, signal.start


def _seal(data: bytearray, counter: int) -> None:
    """Write the rolling counter into byte 6 and the checksum over bytes 0..6 into byte 7."""
    data[_COUNTER_BYTE] = (data[_COUNTER_BYTE] & 0xF0) | (counter & 0x0F)
    data[_CHECKSUM_BYTE] = crc8_j1850(data[:_CHECKSUM_BYTE])


# -- frames -----------------------------------------------------------------------------------


class RawFrame(NamedTuple):
    """One frame of the drive: timestamp in seconds, 11-bit id and payload."""

    timestamp: float
    arbitration_id: int
    data: bytes


def load_demo_dbc() -> Database:
    """Load ``dbc/demo_sedan.dbc`` in cantools' strict mode."""
    db = cantools.database.load_file(str(DEMO_DBC), strict=True)
    if not isinstance(db, Database):  # load_file may also give a diagnostics database
        raise DbcError("not a CAN database", Location(file=str(DEMO_DBC)))
    return db


# Signal values as cantools encodes them: physical numbers, or value-table names.
_Values = Mapping[str, int | float | str]
_Signals = Callable[[DriveState], _Values]


def _engine_gear(state: DriveState) -> int:
    """Forward gear 1..6 the automatic would be in, 0 when not driving forward."""
    if state.gear not in ("D", "S"):
        return 0
    return 1 + sum(state.speed_kmh >= limit for limit in _UPSHIFT_KMH)


def _steering_signals(s: DriveState) -> _Values:
    # Split into the 1.5 deg coarse and 0.1 deg fine parts the way the sensor does: coarse to
    # the step whose remainder fits the fine signal's -0.8..0.7 deg.
    tenths = round(s.steering_deg * 10.0)
    coarse = (tenths + 8) // 15
    return {
        "SteeringSensorStatus": "OK",
        "SteeringAngle": coarse * 1.5,
        "SteeringAngleFine": (tenths - 15 * coarse) / 10.0,
        "SteeringRate": round(s.steering_rate_dps),
        "SteeringCounter": 0,
        "SteeringChecksum": 0,
    }


def _brake_signals(s: DriveState) -> _Values:
    return {
        "BrakePressed": int(s.brake_pressed),
        "BrakePressure": round(s.brake_pressure_bar, 2),
        "BrakeCounter": 0,
        "BrakeChecksum": 0,
    }


def _wheel_signals(s: DriveState) -> _Values:
    # Cornering: the inner wheels turn slower by yaw rate x half track.
    v = s.speed_kmh / _KMH_PER_MPS
    yaw = v * math.tan(math.radians(s.steering_deg / _STEERING_RATIO)) / _WHEELBASE_M
    left = max(0.0, (v - yaw * _HALF_TRACK_M) * _KMH_PER_MPS)
    right = max(0.0, (v + yaw * _HALF_TRACK_M) * _KMH_PER_MPS)
    return {
        "WheelSpeedFL": round(left, 2),
        "WheelSpeedFR": round(right, 2),
        "WheelSpeedRL": round(left, 2),
        "WheelSpeedRR": round(right, 2),
    }


def _speed_signals(s: DriveState) -> _Values:
    # LongAccel is along the vehicle's x axis: speeding up backwards is a negative acceleration.
    along_x = -s.accel_mps2 if s.gear == "R" else s.accel_mps2
    return {
        "VehicleSpeed": round(s.speed_kmh, 2),
        "StandStill": int(s.speed_kmh < 0.005),
        "LongAccel": round(along_x, 3),
        "SpeedCounter": 0,
        "SpeedChecksum": 0,
    }


def _engine_signals(s: DriveState) -> _Values:
    gear = _engine_gear(s)
    if gear:
        rpm = s.speed_kmh * _RPM_PER_KMH[gear - 1]
    elif s.gear == "R":
        rpm = s.speed_kmh * _REVERSE_RPM_PER_KMH
    else:
        rpm = 0.0
    # A slow idle hunt, so the noise is not a constant.
    rpm = max(rpm, _IDLE_RPM + 8.0 * math.sin(2.0 * math.pi * s.t / 3.1))
    pedal = 0.0 if s.brake_pressed else min(100.0, max(0.0, 25.0 * s.accel_mps2 + s.speed_kmh / 8.0))
    return {
        "EngineSpeed": round(rpm * 4) / 4,
        "AccelPedal": round(pedal / 0.4) * 0.4,
        "CoolantTemp": 88,
        "EngineRunning": "RUNNING",
    }


def _transmission_signals(s: DriveState) -> _Values:
    return {
        "GearPosition": _DBC_GEAR[s.gear],
        "CurrentGear": _engine_gear(s),
        "TransOilTemp": 76,
        "TransCounter": 0,
        "TransChecksum": 0,
    }


def _body_page0(s: DriveState) -> _Values:
    return {
        "BodyMux": 0,
        "ParkingBrake": "ENGAGED" if s.parking_brake else "RELEASED",
        "TurnSignal": _DBC_TURN[s.turn_signal],
        "Headlights": "LOW",
        "BodyCounter": 0,
        "BodyChecksum": 0,
    }


def _body_page1(s: DriveState) -> _Values:
    return {
        "BodyMux": 1,
        "DoorOpen": 0,
        "TrunkOpen": 0,
        "WiperSpeed": "OFF",
        "BodyCounter": 0,
        "BodyChecksum": 0,
    }


def _climate_signals(s: DriveState) -> _Values:
    return {"CabinTemp": 21.5, "SetTemp": 21.0, "FanSpeed": 2, "AcOn": 1, "OutsideTemp": 12.5}


# Message -> its pages, sent back to back each cycle (one page for a plain message).
_MESSAGES: Final[dict[str, tuple[_Signals, ...]]] = {
    "STEERING": (_steering_signals,),
    "BRAKE": (_brake_signals,),
    "WHEEL_SPEEDS": (_wheel_signals,),
    "VEHICLE_SPEED": (_speed_signals,),
    "ENGINE_RPM": (_engine_signals,),
    "TRANSMISSION": (_transmission_signals,),
    "BODY_STATUS": (_body_page0, _body_page1),
    "CLIMATE": (_climate_signals,),
}

# Timing: each ECU's first frame comes somewhere in its first cycle; each frame then deviates
# from its slot by Gaussian jitter, clipped so that a frame never leaves its slot and every
# frame of a drive lies strictly inside [0, duration) -- which keeps a repeated drive in order.
_JITTER_SIGMA_S: Final = 0.000_12
_JITTER_MAX_S: Final = 0.000_40
_PAGE_GAP_S: Final = 0.000_30  # a multiplexed page follows the previous one after ~1 frame time
_MARGIN_S: Final = 0.001


def _check_layout(db: Database, dbc_file: str) -> dict[str, float]:
    """Check that ``db`` has the messages the drive sends, counters and checksums where _seal
    writes them; return each message's cycle time in seconds."""
    cycles: dict[str, float] = {}
    for name in _MESSAGES:
        try:
            message = db.get_message_by_name(name)
        except KeyError:
            raise DbcError(f"the demo drive needs message '{name}'", Location(file=dbc_file)) from None
        if message.cycle_time is None or message.cycle_time <= 0:
            raise DbcError(f"message '{name}' has no GenMsgCycleTime", Location(file=dbc_file))
        cycles[name] = message.cycle_time / 1000.0
        if name not in _PROTECTED:
            continue
        counter, checksum = (message.get_signal_by_name(s) for s in _PROTECTED[name])
        expected = {
            counter.name: (8 * _COUNTER_BYTE, 8 * _COUNTER_BYTE + 3),
            checksum.name: (8 * _CHECKSUM_BYTE, 8 * _CHECKSUM_BYTE + 7),
        }
        for signal in (counter, checksum):
            if _signal_bits(signal) != expected[signal.name] or message.length != 8:
                raise DbcError(
                    f"signal '{signal.name}' of '{name}' is not where the demo drive seals it",
                    Location(file=dbc_file),
                )
    return cycles


def render_drive(
    db: Database | None = None,
    *,
    phases: Sequence[Phase] = DEMO_PHASES,
    seed: int = DEFAULT_SEED,
) -> list[RawFrame]:
    """Every frame of one pass of the drive, timestamps relative to its start, in bus order.

    Counters start at 0.  Timestamps are rounded to microseconds (the resolution of candump
    logs) and lie in ``(0, drive_duration(phases))``; equal timestamps are ordered by id, as
    CAN arbitration would.
    """
    dbc_file = ""
    if db is None:
        db, dbc_file = load_demo_dbc(), str(DEMO_DBC)
    cycles = _check_layout(db, dbc_file)
    model = DriveModel(phases)
    rng = random.Random(seed)
    frames: list[RawFrame] = []
    for name, pages in _MESSAGES.items():
        message = db.get_message_by_name(name)
        cycle = cycles[name]
        frame_id: int = message.frame_id
        protected = name in _PROTECTED
        # Room for the pages and the jitter before the end of each cycle and of the drive.
        room = (len(pages) - 1) * _PAGE_GAP_S + _JITTER_MAX_S + _MARGIN_S
        offset = rng.uniform(_MARGIN_S, cycle - room - _MARGIN_S)
        slots = math.ceil((model.duration - room - offset) / cycle)
        counter = 0
        for k in range(slots):
            t = offset + k * cycle
            for page_no, page in enumerate(pages):
                jitter = max(-_JITTER_MAX_S, min(_JITTER_MAX_S, rng.gauss(0.0, _JITTER_SIGMA_S)))
                if page_no:
                    # A later page follows the one before it on the bus, never overtakes it.
                    t += _PAGE_GAP_S + abs(jitter) * 0.25
                else:
                    t += jitter
                t = round(t, 6)
                data = bytearray(message.encode(page(model.state_at(t))))
                if protected:
                    _seal(data, counter)
                    counter = (counter + 1) & 0x0F
                frames.append(RawFrame(t, frame_id, bytes(data)))
    frames.sort()
    return frames


def drive_frames(
    db: Database | None = None,
    *,
    start_time: float = 0.0,
    phases: Sequence[Phase] = DEMO_PHASES,
    seed: int = DEFAULT_SEED,
    repeat: int | None = 1,
) -> Iterator[RawFrame]:
    """The drive as raw frames with absolute timestamps, ``repeat`` times (``None``: forever).

    Each repetition continues where the previous one ended: timestamps go on growing by the
    drive's duration and every rolling counter goes on from its last value (frames are
    re-sealed when a pass does not turn a counter a whole number of times; never for the demo).
    """
    if db is None:
        db = load_demo_dbc()
    frames = render_drive(db, phases=phases, seed=seed)
    duration = drive_duration(phases)
    per_pass: dict[int, int] = {}
    protected_ids = {db.get_message_by_name(name).frame_id for name in _PROTECTED}
    for frame in frames:
        if frame.arbitration_id in protected_ids:
            per_pass[frame.arbitration_id] = per_pass.get(frame.arbitration_id, 0) + 1
    n = 0
    while repeat is None or n < repeat:
        base = start_time + n * duration
        shifts = {fid: (n * count) & 0x0F for fid, count in per_pass.items()}
        for t, frame_id, data in frames:
            shift = shifts.get(frame_id, 0)
            if shift:
                sealed = bytearray(data)
                _seal(sealed, (data[_COUNTER_BYTE] & 0x0F) + shift)
                data = bytes(sealed)
            yield RawFrame(base + t, frame_id, data)
        n += 1


def scripted_drive(
    db: Database | None = None,
    *,
    start_time: float = 0.0,
    phases: Sequence[Phase] = DEMO_PHASES,
    channel: str = "can0",
    seed: int = DEFAULT_SEED,
    repeat: int | None = 1,
) -> Iterator[can.Message]:
    """Every frame of the scripted drive as ``can.Message`` objects, in timestamp order.

    ``db`` is a cantools database for the demo sedan (default: ``dbc/demo_sedan.dbc``, loaded
    strictly); ``start_time`` is the timestamp of drive time 0; ``seed`` fixes the timing
    jitter, so equal arguments give equal frames; ``repeat`` as in :func:`drive_frames`.
    """
    if db is None:
        db = load_demo_dbc()
    for timestamp, frame_id, data in drive_frames(db, start_time=start_time, phases=phases, seed=seed, repeat=repeat):
        yield can.Message(
            timestamp=timestamp,
            arbitration_id=frame_id,
            is_extended_id=False,
            data=data,
            channel=channel,
        )
