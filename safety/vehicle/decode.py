"""Fast CAN signal decoding, generated once per message from cantools' signal definitions.

``compile_message_reader`` turns the definitions of the requested signals into the text of a small
Python function (byte indexing, ``int.from_bytes`` on a slice, shifts, masks, ``struct`` for floats),
compiles it once and returns it.  Per frame nothing is interpreted: the reader is one straight-line
function, several times faster than ``cantools.database.can.Message.decode``, which unpacks *every*
signal of the message through bitstruct and builds a dict.

The reader gives exactly what ``message.decode(data, decode_choices=False, scaling=scaled,
allow_truncated=True)`` gives, with ``None`` where cantools leaves a signal out.  Where cantools gives
no result at all, the reader still decodes what it can, signal by signal:

* a multiplexer value that no child declares (cantools raises ``DecodeError``): the children are
  ``None``, the other signals decode;
* signals overlapping each other in the DBC (cantools raises "unpacking failed" for the whole
  message): each signal decodes from its own bits;
* a signal that reaches past the message's declared length: always ``None`` (cantools cuts longer
  payloads to the declared length before decoding, so it never reads those bits either).

cantools semantics reproduced on purpose:

* physical value = ``raw * scale + offset`` with cantools' own choice of ``int`` or ``float`` for
  scale and offset (integer scale/offset on an integer signal give an ``int``);
* a payload longer than the message is cut to the message length; a shorter one drops exactly the
  signals whose last bit is past the end of the payload;
* the multiplexer value that selects children is ``int()`` of the multiplexer's *decoded* value,
  so with ``scaled=True`` a scaled multiplexer selects by its physical value, with ``scaled=False``
  by its raw value (cantools does the same with ``decode_choices=False``).
"""

from __future__ import annotations

import hashlib
import linecache
import math
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

import cantools
import cantools.j1939
from cantools.database.conversion import (
    BaseConversion,
    IdentityConversion,
    LinearConversion,
    LinearIntegerConversion,
)

from safety.errors import DbcError, Location

__all__ = [
    "Payload",
    "Reader",
    "bytes_needed",
    "compile_message_reader",
    "frame_label",
    "j1939_pgn",
    "signal_value_range",
    "write_raw",
]

#: A frame payload.  python-can hands out ``bytearray``; readers take any of these, so they are
#: also valid wherever a ``Callable[[bytes], ...]`` is expected.
Payload = bytes | bytearray | memoryview

#: What a compiled reader is: payload in, one value per requested signal out, ``None`` when unknown.
Reader = Callable[[Payload], tuple[int | float | None, ...]]

# IEEE754 formats bitstruct (and so cantools) accepts for float signals, by bit length.
_FLOAT_CODES = {16: "e", 32: "f", 64: "d"}

# Spans of at most this many bytes are assembled by indexing; longer ones by int.from_bytes on a
# slice.  Measured on CPython 3.11: indexing wins for 1-2 bytes, from_bytes from 3 bytes on.
_MAX_INDEXED_BYTES = 2


def frame_label(message: cantools.database.can.Message) -> str:
    """The frame id as DriveGate prints it: ``0x0B4`` for 11-bit ids, ``0x18FEF100`` for 29-bit."""
    width = 8 if message.is_extended_frame else 3
    return f"0x{message.frame_id:0{width}X}"


def signal_value_range(signal: cantools.database.can.Signal) -> tuple[float | None, float | None]:
    """Return the declared physical ``(minimum, maximum)`` of ``signal``; ``None`` where undeclared.

    DBC files write ``[0|0]`` for "no range".  cantools maps only the literal text ``0|0`` to
    ``None``; ``[0.0|0.0]`` (found in real opendbc files) would come through as a range admitting
    only 0, so both ends equal to zero are treated as undeclared too.
    """
    minimum: float | None = signal.minimum
    maximum: float | None = signal.maximum
    if minimum == 0 and maximum == 0:
        return None, None
    return minimum, maximum


def write_raw(data: bytearray, signal: cantools.database.can.Signal, raw: int) -> None:
    """Put ``raw`` (an integer; negative ones in two's complement) into ``signal``'s bits of ``data``.

    The sender's side of the reader, for generators and fault injection: the same bit geometry.
    """
    length: int = signal.length
    mask = (1 << length) - 1
    if signal.byte_order == "little_endian":
        whole = int.from_bytes(data, "little")
        shift = signal.start
        whole = (whole & ~(mask << shift)) | ((raw & mask) << shift)
        data[:] = whole.to_bytes(len(data), "little")
        return
    msb = 8 * (signal.start // 8) + (7 - signal.start % 8)
    shift = 8 * len(data) - msb - length
    whole = int.from_bytes(data, "big")
    whole = (whole & ~(mask << shift)) | ((raw & mask) << shift)
    data[:] = whole.to_bytes(len(data), "big")


def bytes_needed(signal: cantools.database.can.Signal, message_length: int) -> int:
    """How many payload bytes a frame must have for ``signal`` to decode (cantools' ``allow_truncated`` rule)."""
    need: int = _Extraction(signal, message_length).need
    return need


def j1939_pgn(frame_id: int) -> int:
    """The J1939 parameter group number of a 29-bit id (cantools' own arithmetic: priority bits
    dropped, the destination address of a PDU1 message too)."""
    pgn: int = cantools.j1939.pgn_from_frame_id(frame_id)  # type: ignore[no-untyped-call]
    return pgn


def compile_message_reader(
    message: cantools.database.can.Message,
    signal_names: Sequence[str],
    *,
    scaled: bool = True,
    dbc_file: str = "",
) -> Reader:
    """Compile a function that decodes ``signal_names`` of ``message`` from a frame payload.

    The returned function takes the payload (``bytes``, ``bytearray`` or anything indexable the same
    way) and returns a tuple with one value per requested name, in order: the physical value when
    ``scaled`` (as ``message.decode(data, decode_choices=False)``), else the raw value (``int``, or
    ``float`` for IEEE754 signals).  A value is ``None`` when the payload is too short to hold the
    signal or when the frame's multiplexer value does not select it.

    ``dbc_file`` only goes into error locations.  Raises :class:`DbcError` for a name the message
    does not have, or for a float signal whose length IEEE754 does not define.
    """
    frame = frame_label(message)
    by_name: dict[str, Any] = {signal.name: signal for signal in message.signals}
    wanted = []
    for name in signal_names:
        signal = by_name.get(name)
        if signal is None:
            raise DbcError(
                f"message '{message.name}' ({frame}) has no signal '{name}'",
                Location(file=dbc_file, frame=frame),
            )
        wanted.append(signal)
    return _ReaderBuilder(message, by_name, scaled=scaled, frame=frame, dbc_file=dbc_file).build(wanted)


class _Extraction:
    """Where one signal's bits are and how to turn them into its raw value."""

    def __init__(self, signal: Any, message_length: int) -> None:
        self.signal = signal
        length: int = signal.length
        if signal.byte_order == "little_endian":
            first_bit = signal.start  # LSB, counted LSB-first through the payload
            self.first = first_bit // 8
            self.last = (first_bit + length - 1) // 8
            self.shift = first_bit % 8
            self.top = 8 * (self.last - self.first + 1) - self.shift - length
            end_bit = first_bit + length
        else:
            # cantools' start is the MSB in DBC "sawtooth" numbering; turn it into the network
            # (MSB-first) bit number, exactly as cantools.database.utils.start_bit does.
            msb = 8 * (signal.start // 8) + (7 - signal.start % 8)
            self.first = msb // 8
            self.last = (msb + length - 1) // 8
            self.top = msb % 8
            self.shift = 8 * (self.last - self.first + 1) - self.top - length
            end_bit = msb + length
        # Bytes the payload must have for cantools (allow_truncated) to keep the signal.
        self.need = (end_bit + 7) // 8
        # cantools cuts payloads to the message length, so bits past it are never decoded.
        self.beyond = end_bit > 8 * message_length


class _ReaderBuilder:
    """Writes the source text of one reader and compiles it."""

    def __init__(self, message: Any, by_name: dict[str, Any], *, scaled: bool, frame: str, dbc_file: str) -> None:
        self.message = message
        self.by_name = by_name
        self.scaled = scaled
        self.frame = frame
        self.dbc_file = dbc_file
        # Objects the generated code refers to by name (helpers, non-literal constants, id sets).
        self.namespace: dict[str, Any] = {"__builtins__": {"len": len, "bytes": bytes}}
        # Multiplexer signal name -> local variable holding its number (None: never decoded), and
        # the lines defining those variables for full and for short payloads, parents first.
        self.mux_vars: dict[str, str | None] = {}
        self.mux_lines_full: list[str] = []
        self.mux_lines_short: list[str] = []
        self.need = 0  # bytes every requested signal (and its multiplexers) fits in
        self._visiting: set[str] = set()

    # -- constants and helpers --------------------------------------------------------------

    def _name(self, prefix: str, value: Any) -> str:
        name = f"_{prefix}{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def _literal(self, value: Any) -> str:
        # Literals are LOAD_CONST in the generated code; repr() of a finite float round-trips exactly.
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            text = repr(value)
            return f"({text})" if text.startswith("-") else text
        return self._name("k", value)

    def _error(self, text: str) -> DbcError:
        return DbcError(text, Location(file=self.dbc_file, frame=self.frame))

    # -- expressions -----------------------------------------------------------------------

    def _raw(self, ext: _Extraction) -> str:
        """Expression for the raw value (int, or float for IEEE754 signals) from ``data``."""
        signal = ext.signal
        little = signal.byte_order == "little_endian"
        if signal.is_float:
            code = _FLOAT_CODES.get(signal.length)
            if code is None:
                raise self._error(
                    f"signal '{signal.name}' of message '{self.message.name}' is a {signal.length}-bit float;"
                    " only 16, 32 and 64 bits are defined"
                )
            if ext.shift == 0 and ext.top == 0:
                # Byte-aligned: struct reads it straight from the payload.
                unpack = self._name("f", struct.Struct(("<" if little else ">") + code).unpack_from)
                return f"{unpack}(data, {ext.first})[0]"
            # bitstruct reads the signal's bits MSB first and interprets them as a big-endian float.
            unpack = self._name("f", struct.Struct(">" + code).unpack)
            return f"{unpack}({self._raw_bits(ext)}.to_bytes({signal.length // 8}, 'big'))[0]"
        expr = self._raw_bits(ext)
        if signal.is_signed:
            sign = 1 << (signal.length - 1)
            # Two's complement without a branch: flip the sign bit, then subtract its weight.
            expr = f"(({expr} ^ {sign:#x}) - {sign:#x})"
        return expr

    def _raw_bits(self, ext: _Extraction) -> str:
        """Expression for the signal's bits as an unsigned int."""
        little = ext.signal.byte_order == "little_endian"
        count = ext.last - ext.first + 1
        if count == 1:
            expr = f"data[{ext.first}]"
        elif count <= _MAX_INDEXED_BYTES:
            parts = []
            for i in range(count):
                weight = 8 * (i if little else count - 1 - i)
                parts.append(f"(data[{ext.first + i}] << {weight})" if weight else f"data[{ext.first + i}]")
            expr = f"({' | '.join(parts)})"
        else:
            order = "little" if little else "big"
            expr = f"_from_bytes(data[{ext.first}:{ext.last + 1}], '{order}')"
            self.namespace["_from_bytes"] = int.from_bytes
        if ext.shift:
            expr = f"({expr} >> {ext.shift})"
        if ext.top:
            expr = f"({expr} & {(1 << ext.signal.length) - 1:#x})"
        return expr

    def _conversion(self, signal: Any) -> BaseConversion:
        conversion: BaseConversion = signal.conversion
        if conversion.choices is not None:
            # A NamedSignalConversion scales through the conversion the factory builds without the
            # choices; build the same one so int/float types and arithmetic are cantools' own.
            conversion = BaseConversion.factory(
                scale=conversion.scale, offset=conversion.offset, choices=None, is_float=conversion.is_float
            )
        return conversion

    def _physical(self, signal: Any, raw: str) -> str:
        """Expression for the physical value computed exactly as cantools' ``raw_to_scaled``."""
        conversion = self._conversion(signal)
        if isinstance(conversion, IdentityConversion):
            return raw
        if isinstance(conversion, (LinearIntegerConversion, LinearConversion)):
            scale, offset = conversion.scale, conversion.offset
            expr = f"{raw} * {self._literal(scale)}"
            # "+ 0" is a no-op unless it would turn a -0.0 product into 0.0, which needs a float raw
            # value or a negative scale; keep it in those cases so results are bit-identical.
            if offset != 0 or signal.is_float or scale < 0:
                expr = f"{expr} + {self._literal(offset)}"
            return f"({expr})"
        # Unknown conversion kind: defer to cantools itself (slow but exact).
        return f"{self._name('c', conversion.raw_to_scaled)}({raw}, False)"

    def _value(self, signal: Any, ext: _Extraction) -> str:
        raw = self._raw(ext)
        return self._physical(signal, raw) if self.scaled else raw

    def _mux_number(self, signal: Any, ext: _Extraction) -> str:
        """Expression for the number that selects children: ``int()`` of the decoded value."""
        value = self._value(signal, ext)
        conversion = self._conversion(signal)
        integral = not signal.is_float and (
            not self.scaled or isinstance(conversion, (IdentityConversion, LinearIntegerConversion))
        )
        if integral:
            return value
        # int(nan) and int(inf) raise inside cantools; here they select no child.
        self.namespace["_mux_int"] = _mux_int
        return f"_mux_int({value})"

    # -- multiplexing --------------------------------------------------------------------

    def _selector(self, signal: Any) -> str | None:
        """Condition under which cantools decodes ``signal``: ``""`` always, ``None`` never."""
        parent_name = signal.multiplexer_signal
        if parent_name is None:
            return ""
        parent = self.by_name.get(parent_name)
        ids = signal.multiplexer_ids
        # cantools only descends into signals flagged as multiplexers, and only keeps children that
        # list the ids they belong to; anything else is never decoded.
        if parent is None or not parent.is_multiplexer or ids is None:
            return None
        variable = self._mux_variable(parent)
        if variable is None:
            return None
        ids = sorted(set(ids))
        if len(ids) == 1:
            return f"{variable} == {ids[0]}"
        return f"{variable} in {self._name('ids', frozenset(ids))}"

    def _mux_variable(self, signal: Any) -> str | None:
        """Name of the local holding this multiplexer's number (``None`` there when not decoded)."""
        name = signal.name
        if name in self.mux_vars:
            return self.mux_vars[name]
        if name in self._visiting:  # a multiplexer cycle: cantools never reaches it either
            return None
        self._visiting.add(name)
        try:
            ext = _Extraction(signal, self.message.length)
            selector = self._selector(signal)
            if selector is None or ext.beyond:
                variable = None
            else:
                variable = f"m{len(self.mux_vars)}"
                number = self._mux_number(signal, ext)
                self.need = max(self.need, ext.need)
                self.mux_lines_full.append(f"{variable} = {_guard(number, selector)}")
                short_selector = _and(f"n >= {ext.need}", selector)
                self.mux_lines_short.append(f"{variable} = {_guard(number, short_selector)}")
        finally:
            self._visiting.discard(name)
        self.mux_vars[name] = variable
        return variable

    # -- the reader ------------------------------------------------------------------------

    def build(self, signals: list[Any]) -> Reader:
        # Selectors first: they define the multiplexer variables, which the values below may reuse.
        selectors = [self._selector(signal) for signal in signals]
        full: list[str] = []
        short: list[str] = []
        for signal, selector in zip(signals, selectors, strict=True):
            ext = _Extraction(signal, self.message.length)
            if selector is None or ext.beyond:
                full.append("None")
                short.append("None")
                continue
            value = self._value(signal, ext)
            self.need = max(self.need, ext.need)
            if (variable := self.mux_vars.get(signal.name)) and self._mux_number(signal, ext) == value:
                # A multiplexer asked for by name is already in its variable (None when not decoded).
                full.append(variable)
                short.append(variable)
                continue
            full.append(_guard(value, selector))
            short.append(_guard(value, _and(f"n >= {ext.need}", selector)))

        lines = ["def read(data):"]
        if self.need:
            # Frames shorter than the requested signals need take the (rarer) checked path.
            lines.append(f"    if len(data) < {self.need}:")
            lines.append("        return read_short(data)")
        lines += [f"    {line}" for line in self.mux_lines_full]
        lines.append(f"    return {_tuple(full)}")
        lines += [
            "",
            "def read_short(data):",
            "    n = len(data)",
            # Pad so every expression can run; values whose bytes were missing are dropped below.
            f"    data = bytes(data) + bytes({self.need} - n)",
        ]
        lines += [f"    {line}" for line in self.mux_lines_short]
        lines.append(f"    return {_tuple(short)}")
        source = "\n".join(lines) + "\n"

        # Registered so tracebacks through a reader show its source.  Named by a digest of the
        # source, so compiling the same reader again reuses the entry instead of adding one.
        digest = hashlib.blake2b(source.encode(), digest_size=6).hexdigest()
        filename = f"<drivegate reader {self.message.name} {self.frame} {digest}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.namespace)
        reader: Reader = self.namespace["read"]
        label = re.sub(r"\W", "_", str(self.message.name))
        reader.__name__ = reader.__qualname__ = f"read_{label}"
        reader.__doc__ = f"Decode {[s.name for s in signals]} of {self.message.name} ({self.frame})."
        setattr(reader, "source", source)  # noqa: B010 - Callable has no such attribute for mypy; for debugging
        return reader


def _mux_int(value: float) -> int | None:
    """``int(value)`` for a multiplexer number, ``None`` when it is NaN or infinite."""
    return int(value) if math.isfinite(value) else None


def _and(first: str, second: str) -> str:
    return f"{first} and {second}" if second else first


def _guard(value: str, condition: str) -> str:
    return f"({value} if {condition} else None)" if condition else value


def _tuple(items: list[str]) -> str:
    if len(items) == 1:
        return f"({items[0]},)"
    return f"({', '.join(items)})"
