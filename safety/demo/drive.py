"""The demo sedan's scripted drive: every CAN frame of a plausible two-minute trip.

``drivegate demo``, the tests and ``tools/gen_drive.py`` use it to have real traffic without a
car.  The drive is a list of :class:`~safety.demo.script.Phase` objects (parked, pull out, city, red light, sharp
turn, highway, reverse parking, ...).  A small kinematic model, :class:`~safety.demo.script.DriveModel`, turns them
into smooth speed and steering curves: every change is a raised-cosine ease, so speed,
acceleration, steering angle and steering rate are continuous -- nothing teleports, which a
plausibility checker downstream would rightly flag.

:func:`scripted_drive` samples the model at each message's DBC cycle time (with a small,
seeded, deterministic jitter), encodes the frames with cantools from ``dbc/demo_sedan.dbc`` and
seals the protected messages with their rolling counter and CRC-8 SAE J1850 checksum, as the
DBC's comment specifies.  Two runs with the same arguments give identical frames.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final, NamedTuple

import can
import cantools
from cantools.database.can import Database, Signal
from fastcrc.crc8 import sae_j1850 as _sae_j1850

from safety import builtin
from safety.demo.script import (
    DEMO_PHASES,
    KMH_PER_MPS,
    DriveModel,
    DriveState,
    Phase,
    drive_duration,
    phase_at,
)
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

# -- checksums --------------------------------------------------------------------------------


def crc8_j1850(data: bytes | bytearray) -> int:
    """CRC-8 SAE J1850: polynomial 0x1D, initial 0xFF, not reflected, final XOR 0xFF (fastcrc's)."""
    return _sae_j1850(bytes(data))


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
    v = s.speed_kmh / KMH_PER_MPS
    yaw = v * math.tan(math.radians(s.steering_deg / _STEERING_RATIO)) / _WHEELBASE_M
    left = max(0.0, (v - yaw * _HALF_TRACK_M) * KMH_PER_MPS)
    right = max(0.0, (v + yaw * _HALF_TRACK_M) * KMH_PER_MPS)
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
