"""The generated readers of ``safety.vehicle.decode`` against cantools' own ``Message.decode``.

The reference is ``message.decode(data, decode_choices=False, scaling=..., allow_truncated=True)``.
Where cantools raises for the whole message (a multiplexer value no child declares, signals that
overlap in a sloppy DBC), the reference walks cantools' own codec tree node by node and, for a node
bitstruct cannot unpack, decodes each of its signals alone with cantools' ``decode_data``: the bits
always come from cantools, never from code written here.
"""

from __future__ import annotations

import contextlib
import math
import random
from functools import cache
from pathlib import Path
from typing import Any

import can
import cantools
import pytest
from cantools.database.can import Database as CanDatabase
from cantools.database.can import Message, Signal
from cantools.database.conversion import BaseConversion
from cantools.database.errors import DecodeError
from cantools.database.utils import create_encode_decode_formats, decode_data, encode_data
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.errors import DbcError, Location
from safety.vehicle.decode import compile_message_reader, frame_label, signal_value_range

SHARED_DATA = SHARED
RAV4_DIR = SHARED_DATA / "comma2k19_rav4_2017"
RAV4_DBC = RAV4_DIR / "toyota_new_mc_pt_generated.dbc"
RAV4_LOG = RAV4_DIR / "comma2k19_rav4_2018-08-02_seg40.log.gz"

# Covers: LE/BE at odd start bits and across bytes, signed (incl. 1-bit), 33- and 64-bit signals,
# float32/float64 aligned and not, integer / float / negative scale, offsets, choices (which must
# not change the numbers), CAN FD lengths, simple, nested and multi-value (SG_MUL_VAL_)
# multiplexing, a scaled multiplexer, an extended frame id, and a [0.0|0.0] "no range".
INLINE_DBC = """\
VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 180 SPEED: 8 ECU
 SG_ SPEED : 47|16@0+ (0.01,0) [0|250] "km/h" ECU

BO_ 256 LE_MIX: 8 ECU
 SG_ U1 : 0|1@1+ (1,0) [0|1] "" ECU
 SG_ S12_ODD : 3|12@1- (0.25,-10) [-522|501.75] "" ECU
 SG_ U7 : 15|7@1+ (2,-100) [0|0] "" ECU
 SG_ S1 : 22|1@1- (1,0) [0|0] "" ECU
 SG_ U33 : 23|33@1+ (0.5,0) [0|0] "" ECU
 SG_ NEG : 56|8@1- (-0.5,0) [0|0] "" ECU

BO_ 257 BE_MIX: 8 ECU
 SG_ B3 : 5|3@0+ (1,0) [0|7] "" ECU
 SG_ B13 : 2|13@0- (0.1,0.5) [0|0] "" ECU
 SG_ B1 : 21|1@0+ (1,0) [0|0] "" ECU
 SG_ B20 : 20|20@0+ (0.001,0) [0.0|0.0] "" ECU
 SG_ B25 : 32|25@0- (1,0.5) [0|0] "" ECU

BO_ 258 WIDE_LE: 8 ECU
 SG_ U64 : 0|64@1+ (1,0) [0|0] "" ECU

BO_ 259 WIDE_BE: 8 ECU
 SG_ S64 : 7|64@0- (0.001,0) [0|0] "" ECU

BO_ 260 FLOATS: 32 ECU
 SG_ F32_LE : 0|32@1- (1,0) [0|0] "" ECU
 SG_ F32_BE_ODD : 36|32@0- (1,0) [0|0] "" ECU
 SG_ F64_LE_ODD : 75|64@1- (0.5,1) [0|0] "" ECU
 SG_ F64_BE : 199|64@0- (1,0) [0|0] "" ECU

BO_ 261 FD64: 64 ECU
 SG_ HEAD : 0|16@1+ (1,0) [0|0] "" ECU
 SG_ MID_BE : 253|21@0- (0.01,0) [0|0] "" ECU
 SG_ TAIL_BE : 447|8@0+ (1,0) [0|0] "" ECU
 SG_ TAIL64 : 448|64@1+ (1,0) [0|0] "" ECU

BO_ 262 MUXED: 8 ECU
 SG_ MUX M : 0|8@1+ (1,0) [0|0] "" ECU
 SG_ A m0 : 8|16@1+ (0.1,0) [0|0] "" ECU
 SG_ B m1 : 8|16@1- (1,0) [0|0] "" ECU
 SG_ C m1 : 31|8@0+ (1,0) [0|0] "" ECU
 SG_ ALWAYS : 56|8@1+ (1,0) [0|0] "" ECU

BO_ 263 EXT_MUX: 8 ECU
 SG_ MUX_A M : 0|4@1+ (1,0) [0|0] "" ECU
 SG_ A_1 m1 : 8|8@1- (1,0) [0|0] "" ECU
 SG_ MUX_B m2M : 8|4@1+ (1,0) [0|0] "" ECU
 SG_ B_0 m0 : 16|8@1- (1,0) [0|0] "" ECU
 SG_ B_1 m1 : 24|8@1+ (1,0) [0|0] "" ECU
 SG_ MULTI m3 : 32|16@1+ (0.5,0) [0|0] "" ECU

BO_ 264 SCALED_MUX: 8 ECU
 SG_ SMUX M : 0|4@1+ (2,0) [0|30] "" ECU
 SG_ X m1 : 8|8@1+ (1,0) [0|0] "" ECU
 SG_ Y m2 : 16|8@1+ (1,0) [0|0] "" ECU

BO_ 2566844926 EXT_ID: 8 ECU
 SG_ E : 0|8@1+ (1,0) [0|0] "" ECU

VAL_ 257 B3 0 "ZERO" 1 "ONE" ;
VAL_ 257 B13 5 "FIVE" ;
SIG_VALTYPE_ 260 F32_LE : 1;
SIG_VALTYPE_ 260 F32_BE_ODD : 1;
SIG_VALTYPE_ 260 F64_LE_ODD : 2;
SIG_VALTYPE_ 260 F64_BE : 2;
SG_MUL_VAL_ 263 A_1 MUX_A 1-1;
SG_MUL_VAL_ 263 MUX_B MUX_A 2-2, 4-6;
SG_MUL_VAL_ 263 B_0 MUX_B 0-0;
SG_MUL_VAL_ 263 B_1 MUX_B 1-3;
SG_MUL_VAL_ 263 MULTI MUX_A 3-3, 7-9;
"""

# Loads only with strict=False: OVER_A/OVER_B overlap, PAST reaches beyond the 4-byte message.
BROKEN_DBC = """\
VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 300 BROKEN: 4 ECU
 SG_ OVER_A : 0|16@1+ (1,0) [0|0] "" ECU
 SG_ OVER_B : 8|16@1- (0.5,0) [0|0] "" ECU
 SG_ PAST : 24|16@1+ (1,0) [0|0] "" ECU
"""


def load_can_db(source: str | Path, *, strict: bool = True) -> CanDatabase:
    """A CAN database from DBC text or a DBC file (cantools' loaders are typed for diagnostics too)."""
    if isinstance(source, Path):
        db = cantools.database.load_file(source, strict=strict)
    else:
        db = cantools.database.load_string(source, "dbc", strict=strict)
    assert isinstance(db, CanDatabase)
    return db


INLINE_DB = load_can_db(INLINE_DBC)
INLINE_MESSAGES = [message.name for message in INLINE_DB.messages]


# -- reference and comparison ------------------------------------------------------------------


def cantools_reference(message: Any, data: bytes, scaled: bool) -> dict[str, Any]:
    """What cantools decodes from ``data``; a signal cantools leaves out is absent."""
    try:
        return dict(message.decode(data, decode_choices=False, scaling=scaled, allow_truncated=True))
    except DecodeError:
        # Private, but the codec tree is exactly what Message.decode walks (cantools is pinned <46).
        return _walk(message, message._codecs, data, scaled)


def _walk(message: Any, node: Any, data: bytes, scaled: bool) -> dict[str, Any]:
    """Message._decode made tolerant: unknown multiplexer values and unpack failures skip, not raise."""
    length = message.length
    try:
        decoded: dict[str, Any] = dict(
            decode_data(data, length, node["signals"], node["formats"], False, scaled, True, True)
        )
    except DecodeError:
        decoded = {}
        for signal in node["signals"]:
            formats = create_encode_decode_formats([signal], length)
            # A signal reaching past the message raises here too: cantools can never decode it.
            with contextlib.suppress(DecodeError):
                decoded.update(decode_data(data, length, [signal], formats, False, scaled, True, True))
    for mux_name, children in node["multiplexers"].items():
        if mux_name not in decoded:
            continue
        try:
            child = children.get(int(decoded[mux_name]))
        except (ValueError, OverflowError):
            continue
        if child is not None:
            decoded.update(_walk(message, child, data, scaled))
    return decoded


def same_value(got: Any, want: Any) -> bool:
    """Equal and of the same type; floats bit-for-bit (NaN matches NaN, -0.0 only -0.0)."""
    if got is None or want is None:
        return got is want
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        if math.isnan(want):
            return math.isnan(got)
        return bool(got == want and math.copysign(1.0, got) == math.copysign(1.0, want))
    return bool(got == want)


def mismatches(message: Any, names: list[str], reader: Any, data: bytes, scaled: bool) -> list[str]:
    got = reader(data)
    assert len(got) == len(names)
    want = cantools_reference(message, data, scaled)
    return [
        f"{message.name}.{name} scaled={scaled} data={bytes(data).hex()}: got {value!r}, cantools {want.get(name)!r}"
        for name, value in zip(names, got, strict=True)
        if not same_value(value, want.get(name))
    ]


def signal_names(message: Any) -> list[str]:
    return list(dict.fromkeys(signal.name for signal in message.signals))


@cache
def inline_reader(name: str, scaled: bool) -> Any:
    message = INLINE_DB.get_message_by_name(name)
    return compile_message_reader(message, signal_names(message), scaled=scaled)


def force_mux_path(message: Any, target: Any, data: bytes, rng: random.Random) -> bytes | None:
    """``data`` with every multiplexer above ``target`` set (by cantools' encoder) to select it."""
    by_name = {signal.name: signal for signal in message.signals}
    bits = int.from_bytes(data, "big")
    child, seen = target, set()
    while child.multiplexer_signal is not None and child.multiplexer_ids:
        parent = by_name.get(child.multiplexer_signal)
        if parent is None or parent.name in seen:
            return None
        seen.add(parent.name)
        formats = create_encode_decode_formats([parent], message.length)
        try:
            encoded = encode_data({parent.name: rng.choice(child.multiplexer_ids)}, [parent], formats, False)
            bits = (bits & formats.padding_mask) | encoded
            data = bits.to_bytes(message.length, "big")
        except Exception:  # an id the multiplexer cannot hold, or one past the message: no such frame
            return None
        child = parent
    return data


# -- the inline DBC --------------------------------------------------------------------------


def _payloads(length: int) -> st.SearchStrategy[bytes]:
    # Full-length frames most, but also short (truncated) and over-long ones.
    return st.one_of(st.binary(min_size=length, max_size=length), st.binary(max_size=length + 3))


@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "raw"])
@pytest.mark.parametrize("name", INLINE_MESSAGES)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_inline_dbc_matches_cantools(name: str, scaled: bool, data: st.DataObject) -> None:
    message = INLINE_DB.get_message_by_name(name)
    payload = data.draw(_payloads(message.length), label="payload")
    assert mismatches(message, signal_names(message), inline_reader(name, scaled), payload, scaled) == []


@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "raw"])
@pytest.mark.parametrize("name", ["MUXED", "EXT_MUX", "SCALED_MUX"])
def test_inline_every_multiplexer_value(name: str, scaled: bool) -> None:
    message = INLINE_DB.get_message_by_name(name)
    names = signal_names(message)
    reader = inline_reader(name, scaled)
    rng = random.Random(name)
    selected: set[str] = set()
    for first in range(256):
        for second in range(0, 256, 17):
            rest = bytes(rng.getrandbits(8) for _ in range(message.length - 2))
            payload = bytes([first, second]) + rest
            assert mismatches(message, names, reader, payload, scaled) == []
            selected.update(n for n, v in zip(names, reader(payload), strict=True) if v is not None)
    expected = set(names)
    if name == "SCALED_MUX" and scaled:
        expected.discard("X")  # selected by physical value 1, which a scale of 2 never gives
    assert selected == expected, "every multiplexed signal is selected by some frame"


def test_inline_multiplexing_by_hand() -> None:
    ext = INLINE_DB.get_message_by_name("EXT_MUX")
    read = compile_message_reader(ext, ["MUX_A", "A_1", "MUX_B", "B_0", "B_1", "MULTI"])
    assert read(bytes([1, 0xFE, 0, 0, 0, 0, 0, 0])) == (1, -2, None, None, None, None)
    assert read(bytes([5, 0x02, 9, 7, 0, 0, 0, 0])) == (5, None, 2, None, 7, None)
    assert read(bytes([2, 0x00, 0xFF, 7, 0, 0, 0, 0])) == (2, None, 0, -1, None, None)
    assert read(bytes([8, 0, 0, 0, 3, 0, 0, 0])) == (8, None, None, None, None, 1.5)
    # MUX_A = 0 is declared by no child: cantools raises, the reader still gives what it can.
    assert read(bytes(8)) == (0, None, None, None, None, None)
    with pytest.raises(DecodeError):
        ext.decode(bytes(8))
    # The multiplexer value only counts if the frame holds it, and so do its children.
    assert read(bytes([1])) == (1, None, None, None, None, None)
    assert read(b"") == (None,) * 6


def test_scaled_multiplexer_selects_by_physical_value_like_cantools() -> None:
    # Surprising but cantools' rule: int() of the *decoded* multiplexer picks the children, so a
    # multiplexer with scale 2 and raw 1 selects m2 when scaling and m1 when not.
    message = INLINE_DB.get_message_by_name("SCALED_MUX")
    payload = bytes([1, 10, 20, 0, 0, 0, 0, 0])
    assert message.decode(payload, decode_choices=False) == {"SMUX": 2, "Y": 20}
    assert message.decode(payload, decode_choices=False, scaling=False) == {"SMUX": 1, "X": 10}
    assert compile_message_reader(message, ["SMUX", "X", "Y"])(payload) == (2, None, 20)
    assert compile_message_reader(message, ["SMUX", "X", "Y"], scaled=False)(payload) == (1, 10, None)


def test_values_types_and_order() -> None:
    speed = INLINE_DB.get_message_by_name("SPEED")
    read = compile_message_reader(speed, ["SPEED", "SPEED"])
    payload = bytes([0, 0, 0, 0, 0, 0x17, 0x4A, 0])
    kmh = 0x174A * 0.01  # 59.620000000000005, exactly as cantools computes it
    assert speed.decode_simple(payload)["SPEED"] == kmh
    assert read(payload) == (kmh, kmh)
    assert read(bytearray(payload)) == (kmh, kmh)
    assert read(memoryview(payload)) == (kmh, kmh)
    assert compile_message_reader(speed, ["SPEED"], scaled=False)(payload) == (0x174A,)
    assert compile_message_reader(speed, [])(payload) == ()
    # Integer scale and offset give an int, as in cantools.
    le_mix = INLINE_DB.get_message_by_name("LE_MIX")
    (u7,) = compile_message_reader(le_mix, ["U7"])(bytes([0, 0x80, 0x3F, 0, 0, 0, 0, 0]))
    assert u7 == 127 * 2 - 100 and type(u7) is int
    # Bytes past the message length are ignored; a frame short of a signal's last byte drops it.
    assert read(payload + b"\xff" * 8) == (kmh, kmh)
    assert read(payload[:7]) == (kmh, kmh)
    assert read(payload[:6]) == (None, None)


def test_wide_and_float_signals() -> None:
    wide = INLINE_DB.get_message_by_name("WIDE_LE")
    assert compile_message_reader(wide, ["U64"])(b"\xff" * 8) == (2**64 - 1,)
    wide_be = INLINE_DB.get_message_by_name("WIDE_BE")
    assert compile_message_reader(wide_be, ["S64"], scaled=False)(b"\x80" + bytes(7)) == (-(2**63),)
    floats = INLINE_DB.get_message_by_name("FLOATS")
    values = {"F32_LE": 1.5, "F32_BE_ODD": -2.25, "F64_LE_ODD": 1e300, "F64_BE": math.pi}
    payload = floats.encode(values, scaling=False)
    read = compile_message_reader(floats, list(values), scaled=False)
    assert read(payload) == tuple(values.values())
    assert compile_message_reader(floats, ["F64_LE_ODD"])(payload) == (1e300 * 0.5 + 1,)


def _float_message(length: int, byte_order: Any = "little_endian") -> Message:
    # DBC has no 16-bit floats, but cantools (bitstruct) decodes them for other formats.
    conversion = BaseConversion.factory(0.5, 3, is_float=True)
    signal = Signal("F", start=4, length=length, byte_order=byte_order, conversion=conversion)
    return Message(frame_id=0x7FF, name="HALF", length=8, signals=[signal])


@pytest.mark.parametrize("byte_order", ["little_endian", "big_endian"])
def test_half_float_matches_cantools(byte_order: str) -> None:
    message = _float_message(16, byte_order)
    rng = random.Random(byte_order)
    for scaled in (True, False):
        reader = compile_message_reader(message, ["F"], scaled=scaled)
        for _ in range(300):
            payload = bytes(rng.getrandbits(8) for _ in range(rng.choice((8, 8, 3, 1))))
            assert mismatches(message, ["F"], reader, payload, scaled) == []


def test_float_of_undefined_length_is_a_dbc_error() -> None:
    with pytest.raises(DbcError) as caught:
        compile_message_reader(_float_message(24), ["F"])
    assert caught.value.location == Location(frame="0x7FF")
    assert caught.value.message == (
        "signal 'F' of message 'HALF' is a 24-bit float; only 16, 32 and 64 bits are defined"
    )


def test_sloppy_dbc_overlapping_and_past_the_end() -> None:
    message = load_can_db(BROKEN_DBC, strict=False).get_message_by_name("BROKEN")
    payload = bytes([0x34, 0x12, 0xFE, 0x77])
    with pytest.raises(DecodeError):  # cantools cannot unpack overlapping signals at all
        message.decode(payload)
    read = compile_message_reader(message, ["OVER_A", "OVER_B", "PAST"])
    assert read(payload) == (0x1234, -0x1EE * 0.5, None)
    # PAST is beyond the declared length: never decoded, however long the frame.
    assert read(payload + b"\x55\x66") == (0x1234, -0x1EE * 0.5, None)
    for cut in range(6):
        assert mismatches(message, ["OVER_A", "OVER_B", "PAST"], read, payload[:cut], True) == []


# -- errors and ranges ---------------------------------------------------------------------


def test_unknown_signal_error_text() -> None:
    speed = INLINE_DB.get_message_by_name("SPEED")
    with pytest.raises(DbcError) as caught:
        compile_message_reader(speed, ["SPEED", "FOO"])
    error = caught.value
    assert error.code == "dbc"
    assert error.message == "message 'SPEED' (0x0B4) has no signal 'FOO'"
    assert error.location == Location(frame="0x0B4")
    assert str(error) == "frame 0x0B4: dbc: message 'SPEED' (0x0B4) has no signal 'FOO'"

    with pytest.raises(DbcError) as caught:
        compile_message_reader(speed, ["BAR"], scaled=False, dbc_file="cars/rav4.dbc")
    assert str(caught.value) == "cars/rav4.dbc frame 0x0B4: dbc: message 'SPEED' (0x0B4) has no signal 'BAR'"

    extended = INLINE_DB.get_message_by_name("EXT_ID")
    assert frame_label(extended) == "0x18FEF1FE"
    with pytest.raises(DbcError) as caught:
        compile_message_reader(extended, ["e"])
    assert str(caught.value) == "frame 0x18FEF1FE: dbc: message 'EXT_ID' (0x18FEF1FE) has no signal 'e'"


def test_signal_value_range() -> None:
    def declared(message: str, signal: str) -> tuple[float | None, float | None]:
        return signal_value_range(INLINE_DB.get_message_by_name(message).get_signal_by_name(signal))

    assert declared("SPEED", "SPEED") == (0, 250)
    assert declared("LE_MIX", "S12_ODD") == (-522, 501.75)
    assert declared("LE_MIX", "U7") == (None, None)  # [0|0]: cantools already gives None
    assert declared("BE_MIX", "B20") == (None, None)  # [0.0|0.0]: cantools gives 0.0, 0.0
    assert declared("SCALED_MUX", "SMUX") == (0, 30)


# -- real DBCs -----------------------------------------------------------------------------


def _real_dbcs() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    paths = [RAV4_DBC, SHARED_DATA / "kuksa_tesla_model3_dbc" / "Model3CAN.dbc"]
    for folder in ("opendbc", "opendbc/generated", "cantools_test_dbc"):
        directory = SHARED_DATA / folder
        if directory.is_dir():
            paths += sorted(p for p in directory.iterdir() if p.suffix.lower() == ".dbc")
    return paths


REAL_DBCS = _real_dbcs()


def _dbc_id(path: Path) -> str:
    return str(path.relative_to(SHARED_DATA))


@pytest.mark.skipif(not REAL_DBCS, reason=f"shared data not found at {SHARED_DATA}")
@pytest.mark.parametrize("path", REAL_DBCS or [Path("absent")], ids=_dbc_id if REAL_DBCS else None)
def test_real_dbc_matches_cantools(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} not found")
    try:
        db = load_can_db(path, strict=False)
    except Exception as error:  # a real DBC cantools itself cannot read: nothing to compare with
        pytest.skip(f"cantools cannot load {path.name}: {type(error).__name__}")
    problems: list[str] = []
    compared = 0
    for message in db.messages:
        if message.is_container:
            continue
        names = signal_names(message)
        readers = {scaled: compile_message_reader(message, names, scaled=scaled) for scaled in (True, False)}
        rng = random.Random(f"{path.name}:{message.frame_id}")
        length = message.length
        payloads = [bytes(rng.getrandbits(8) for _ in range(length)) for _ in range(3)]
        payloads.append(payloads[0] + bytes(rng.getrandbits(8) for _ in range(4)))
        payloads += [payloads[1][: rng.randrange(length)] for _ in range(2) if length]
        muxed = [signal for signal in message.signals if signal.multiplexer_signal is not None]
        for target in rng.sample(muxed, min(4, len(muxed))):
            forced = force_mux_path(message, target, payloads[2], rng)
            if forced is not None:
                payloads += [forced, forced[: rng.randrange(length)]]
        for payload in payloads:
            for scaled, reader in readers.items():
                problems += mismatches(message, names, reader, payload, scaled)
                compared += 1
    assert problems[:10] == []
    assert compared or not db.messages


@pytest.mark.skipif(not RAV4_LOG.is_file() or not RAV4_DBC.is_file(), reason="RAV4 log or DBC not found")
def test_rav4_log_matches_cantools() -> None:
    db = load_can_db(RAV4_DBC, strict=False)
    messages = {frame_id: db.get_message_by_frame_id(frame_id) for frame_id in (0xB4, 0x25, 0x3BC, 0xAA)}
    readers = {
        (frame_id, scaled): compile_message_reader(message, signal_names(message), scaled=scaled)
        for frame_id, message in messages.items()
        for scaled in (True, False)
    }
    counts = dict.fromkeys(messages, 0)
    problems: list[str] = []
    for frame in can.LogReader(str(RAV4_LOG)):
        message = messages.get(frame.arbitration_id)
        if message is None or frame.is_error_frame or frame.is_remote_frame:
            continue
        counts[frame.arbitration_id] += 1
        payload = bytes(frame.data)
        for scaled in (True, False):
            reader = readers[frame.arbitration_id, scaled]
            problems += mismatches(message, signal_names(message), reader, payload, scaled)
        if len(problems) > 10:
            break
    assert problems == []
    # The INDEX documents ~2,487 SPEED and ~4,974 WHEEL_SPEEDS frames on can0 alone.
    assert counts[0xB4] >= 2400 and counts[0xAA] >= 4900 and counts[0x25] >= 4900 and counts[0x3BC] >= 60
