"""Vehicle profiles: where each canonical signal lives in one car's DBC.

A profile is a YAML file beside its DBC (see ``dbc/demo_sedan.yaml``).  Loading checks
every entry against the DBC and collects every problem, each naming the file, the line,
the key and what was expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cantools

from safety.builtin import vehicle_path
from safety.errors import DbcError, LoadError, Location, ProfileError
from safety.vehicle.decode import frame_label, j1939_pgn, signal_value_range
from safety.vehicle.e2e import Protection
from safety.vehicle.protection import parse_e2e
from safety.vehicle.signals import CANONICAL_SIGNALS, REQUIRED_SIGNALS
from safety.vehicle.state import CrossCheck
from safety.yamlsource import Checker, Node, load_yaml, read_yaml_text

PROFILE_KEYS = ("dbc", "signals", "name", "description", "e2e", "cross_check")
# A cross-check entry: a second source of a numeric signal, as a signal entry, and how far apart
# the two may be: ``tolerance`` in the signal's unit and ``tolerance_percent`` of the reference
# (the larger applies).
CROSS_CHECK_KEYS = ("tolerance", "tolerance_percent")
#: The name the state gives the reference of a cross-checked signal (``speed`` -> ``speed_reference``).
REFERENCE_SUFFIX = "_reference"
SIGNAL_KEYS = (
    "message",
    "signal",
    "signals",
    "combine",
    "scale",
    "offset",
    "invert",
    "map",
    "max_age_ms",
    "bus",
    "fd",
    "pgn",
    "source",
)
# J1939 source addresses: 0..253 name an ECU (254 is "null", 255 "global").
MAX_SOURCE_ADDRESS = 253
COMBINES = ("sum", "mean", "min", "max")
# Value-table names that mean "no valid value" in real DBCs (SNA = signal not available).
INVALID_CHOICE = re.compile(
    r"^(SNA|N/?A|NOT[_ ]?AVAILABLE|INVALID|INVALID[_ ].*|.*[_ ]INVALID|ERROR|FAULT|FAULTY|UNDEFINED|UNKNOWN|"
    r"NOT[_ ]?DEFINED|SIGNAL[_ ]?NOT[_ ]?AVAILABLE|INIT|INITIALI[SZ]ING)$",
    re.IGNORECASE,
)
# Without a max_age_ms in the profile, a signal is stale after this many DBC cycle times.
CYCLES_UNTIL_STALE = 3
MIN_DEFAULT_AGE_S = 0.1


@dataclass(frozen=True)
class SignalSource:
    """One canonical signal's place in the DBC, and how to turn raw values into canonical ones."""

    name: str
    frame_id: int
    is_extended: bool
    message: str
    signals: tuple[str, ...]
    combine: str
    scale: float
    offset: float
    invert: bool
    value_map: Mapping[int, Any] | None  # raw integer -> canonical value (enums and bools)
    max_age: float  # seconds
    bus: str | None
    loc: Location
    resolution: float = 0.0  # the smallest step of the canonical value (DBC scale x profile scale)
    require_fd: bool = False  # only CAN FD frames carry it
    pgn: int | None = None  # J1939: matched by parameter group number, not the exact id
    source_addresses: frozenset[int] | None = None  # J1939: the senders accepted (None: any)

    @property
    def frame(self) -> str:
        if self.pgn is not None:
            sources = (
                "any source"
                if self.source_addresses is None
                else "source " + ", ".join(f"0x{a:02X}" for a in sorted(self.source_addresses))
            )
            return f"PGN 0x{self.pgn:04X} ({self.pgn}) from {sources}"
        return f"0x{self.frame_id:0{8 if self.is_extended else 3}X}"


@dataclass(frozen=True)
class VehicleProfile:
    """A loaded profile: its DBC and the sources of the canonical signals it provides."""

    file: str
    dbc_file: str
    database: Any  # cantools.database.can.Database
    sources: Mapping[str, SignalSource]
    name: str = ""
    warnings: tuple[str, ...] = field(default=())
    e2e: Mapping[tuple[int, bool], Protection] = field(default_factory=dict)  # by (frame id, extended)
    cross_checks: Mapping[str, CrossCheck] = field(default_factory=dict)  # by canonical signal

    def max_ages(self) -> dict[str, float]:
        return {name: src.max_age for name, src in self.sources.items()}

    def resolutions(self) -> dict[str, float]:
        """The smallest step of each numeric canonical signal this car can send (for plausibility)."""
        return {name: src.resolution for name, src in self.sources.items() if src.resolution}


def _make_error(code: str, loc: Location, message: str) -> ProfileError:
    return ProfileError(message, loc, code=code)


def load_dbc(path: str | Path) -> Any:
    """Load a DBC leniently (real DBCs often fail strict checks); name the file and cantools' reason."""
    name = str(path)
    try:
        return cantools.database.load_file(name, strict=False)
    except FileNotFoundError as exc:
        raise LoadError([DbcError("DBC file not found", Location(file=name), code="dbc-missing")]) from exc
    except Exception as exc:  # cantools raises many types; all mean the same to the user
        raise LoadError(
            [DbcError(f"cantools cannot load this DBC: {exc}", Location(file=name), code="dbc-invalid")]
        ) from exc


def load_profile(path: str | Path) -> VehicleProfile:
    """Read a vehicle profile (or a built-in: ``demo-sedan``) and its DBC; raise LoadError listing every problem."""
    path = vehicle_path(path)
    name = str(path)
    try:
        text = read_yaml_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(
            [ProfileError(f"cannot read the profile: {exc}", Location(file=name), code="unreadable")]
        ) from exc
    check = Checker(_make_error)
    root = load_yaml(name, text, _make_error, check.errors)
    if not check.mapping(root, "the profile", PROFILE_KEYS, ("dbc", "signals")):
        check.errors.raise_if_any()
    dbc_node = root.value.get("dbc")
    dbc_text = check.string(dbc_node, "dbc") if dbc_node is not None else None
    if dbc_text is None or dbc_node is None:
        check.errors.raise_if_any()
        raise AssertionError("unreachable")
    dbc_path = Path(dbc_text) if Path(dbc_text).is_absolute() else Path(name).parent / dbc_text
    if not dbc_path.is_file():
        found = "is a directory, expected a DBC file" if dbc_path.is_dir() else "not found"
        check.error("dbc-missing", dbc_node.loc, f"DBC file '{dbc_text}' {found} (looked at {dbc_path})")
        check.errors.raise_if_any()
    try:
        database = load_dbc(dbc_path)
    except LoadError as exc:
        for err in exc.errors:
            check.error(err.code, dbc_node.loc, f"{err.message} ({dbc_path})")
        check.errors.raise_if_any()
        raise
    sources: dict[str, SignalSource] = {}
    warnings: list[str] = []
    signals_node = root.value.get("signals")
    if signals_node is not None and check.mapping(signals_node, "signals", tuple(CANONICAL_SIGNALS)):
        for canonical, entry in signals_node.items():
            if canonical not in CANONICAL_SIGNALS:
                continue
            src = _parse_source(canonical, entry, database, dbc_path.name, check)
            if src is not None:
                sources[canonical] = src
        for required in REQUIRED_SIGNALS:
            if required not in signals_node.value:
                # A partial logger (GNSS, OBD) may record only some signals: it still replays.
                what = (
                    "and so is the driving state (fail closed)"
                    if required in ("speed", "gear")
                    else "(fail closed), and workload triggers on it are ignored"
                )
                warnings.append(
                    f"{root.key_loc('signals')}: the profile does not map the required signal '{required}' "
                    f"({CANONICAL_SIGNALS[required].description}): it is always unknown{',' if what[0] == 'a' else ''} "
                    f"{what}"
                )
    e2e: dict[tuple[int, bool], Protection] = {}
    if (e2e_node := root.value.get("e2e")) is not None:
        e2e = parse_e2e(e2e_node, database, dbc_path.name, check, _lookup_message)
        read = {(src.frame_id, src.is_extended) for src in sources.values()}
        for key, protection in e2e.items():
            if key not in read:
                warnings.append(
                    f"{protection.loc}: e2e protects message '{protection.message}', which no mapped signal reads"
                )
    cross_checks: dict[str, CrossCheck] = {}
    if (cross_node := root.value.get("cross_check")) is not None:
        cross_checks, references = _parse_cross_checks(cross_node, sources, database, dbc_path.name, check)
        sources.update(references)
    title = root.value.get("name")
    check.errors.raise_if_any()
    return VehicleProfile(
        file=name,
        dbc_file=str(dbc_path),
        database=database,
        sources=sources,
        name=str(title.value) if title is not None else Path(name).stem,
        warnings=tuple(warnings),
        e2e=e2e,
        cross_checks=cross_checks,
    )


def _messages_numbered(database: Any, frame_id: int) -> list[Any]:
    """The DBC's messages with this number: the 11-bit one first, then the 29-bit one.

    cantools finds a 29-bit message numbered 0x7FF or less only when asked for an extended id.
    """
    found = []
    for extended in (False, True):
        try:
            message = database.get_message_by_frame_id(frame_id, force_extended_id=extended)
        except KeyError:
            continue
        if bool(message.is_extended_frame) == extended and message not in found:
            found.append(message)
    return found


def _lookup_message(node: Node, database: Any, dbc_name: str, what: str, check: Checker) -> Any:
    ref = node.value
    try:
        if isinstance(ref, bool):
            raise KeyError(ref)
        if isinstance(ref, int):
            found = _messages_numbered(database, ref)
            if len(found) > 1:
                check.error(
                    "ambiguous-message",
                    node.loc,
                    f"{what}: frame id 0x{ref:X} names both an 11-bit and a 29-bit message in {dbc_name} "
                    f"({', '.join(m.name for m in found)}); give the message name",
                )
                return None
            if found:
                return found[0]
            raise KeyError(ref)
        if isinstance(ref, str):
            return database.get_message_by_name(ref)
    except KeyError:
        pass
    if isinstance(ref, int) and not isinstance(ref, bool):
        check.error("unknown-message", node.loc, f"{what}: no message with frame id 0x{ref:X} in {dbc_name}")
    elif isinstance(ref, str):
        close = difflib.get_close_matches(ref, [m.name for m in database.messages], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        check.error("unknown-message", node.loc, f"{what}: no message '{ref}' in {dbc_name}{hint}")
    else:
        check.error("expected-type", node.loc, f"{what} must be a message name or a frame id, got {ref!r}")
    return None


def _by_pgn(node: Node, database: Any, dbc_name: str, what: str, check: Checker) -> tuple[Any, int | None]:
    """The DBC's 29-bit message with the PGN ``node`` names, and the PGN."""
    pgn = check.integer(node, what, minimum=0, maximum=0x3FFFF)
    if pgn is None:
        return None, None
    found = [m for m in database.messages if m.is_extended_frame and j1939_pgn(m.frame_id) == pgn]
    if not found:
        check.error(
            "unknown-message", node.loc, f"{what}: no 29-bit message with PGN 0x{pgn:04X} ({pgn}) in {dbc_name}"
        )
        return None, None
    if len(found) > 1:
        names = ", ".join(m.name for m in found)
        check.error(
            "ambiguous-message", node.loc, f"{what}: PGN {pgn} names several messages ({names}); give 'message'"
        )
        return None, None
    return found[0], pgn


def _j1939(
    v: dict[str, Node], message: Any, what: str, check: Checker
) -> tuple[int | None, frozenset[int] | None, bool]:
    """(pgn, accepted source addresses or None for any, ok) of an entry matched the J1939 way."""
    if not message.is_extended_frame:
        check.error("bad-key", v["source"].loc, f"{what}.source: J1939 matching needs a 29-bit message")
        return None, None, False
    pgn = j1939_pgn(message.frame_id)
    node = v.get("source")
    if node is None or node.value == "any":
        return pgn, None, True
    if not node.is_seq or not node.value:
        check.error("expected-type", node.loc, f"{what}.source must be 'any' or a list of source addresses (0..253)")
        return None, None, False
    addresses = [check.integer(a, f"{what}.source", minimum=0, maximum=MAX_SOURCE_ADDRESS) for a in node.value]
    if any(a is None for a in addresses):
        return None, None, False
    return pgn, frozenset(a for a in addresses if a is not None), True


def _parse_cross_checks(
    node: Node, sources: Mapping[str, SignalSource], database: Any, dbc_name: str, check: Checker
) -> tuple[dict[str, CrossCheck], dict[str, SignalSource]]:
    """The ``cross_check:`` section: per numeric mapped signal, its second source (a signal entry
    plus tolerances).  Returns the checks and the second sources, by their state names."""
    checks: dict[str, CrossCheck] = {}
    references: dict[str, SignalSource] = {}
    if not check.mapping(node, "cross_check", tuple(CANONICAL_SIGNALS)):
        return checks, references
    for canonical, entry in node.items():
        what = f"cross_check.{canonical}"
        spec = CANONICAL_SIGNALS.get(canonical)
        if spec is None:
            continue  # reported by check.mapping
        if spec.kind != "number":
            check.error(
                "bad-key",
                node.key_loc(canonical),
                f"{what}: '{canonical}' is not a number; only numbers are cross-checked",
            )
            continue
        if canonical not in sources:
            check.error(
                "bad-key",
                node.key_loc(canonical),
                f"{what}: '{canonical}' is not mapped under signals: nothing to check",
            )
            continue
        # The second source is parsed whatever its tolerances say, so that all its errors show.
        source = _parse_source(canonical, entry, database, dbc_name, check, what=what, extra_keys=CROSS_CHECK_KEYS)
        if not entry.is_map:
            continue
        v = entry.value
        tolerance = check.number(v["tolerance"], f"{what}.tolerance") if "tolerance" in v else 0.0
        percent = check.number(v["tolerance_percent"], f"{what}.tolerance_percent") if "tolerance_percent" in v else 0.0
        if tolerance is None or percent is None:
            continue
        if tolerance < 0 or percent < 0 or not (tolerance > 0 or percent > 0):
            check.error(
                "bad-value",
                entry.loc,
                f"{what}: needs a tolerance > 0 (in {spec.unit}) or a tolerance_percent > 0, and neither negative",
            )
            continue
        if source is None:
            continue
        count = len(source.signals)
        label = f"{source.message} {source.combine} of {count} signals" if count > 1 else source.message
        reference = canonical + REFERENCE_SUFFIX
        checks[canonical] = CrossCheck(canonical, reference, tolerance, percent, label, entry.loc)
        references[reference] = replace(source, name=reference)
    return checks, references


def _parse_source(
    canonical: str,
    node: Node,
    database: Any,
    dbc_name: str,
    check: Checker,
    *,
    what: str | None = None,
    extra_keys: tuple[str, ...] = (),
) -> SignalSource | None:
    what = what or f"signals.{canonical}"
    keys = SIGNAL_KEYS + extra_keys
    if not check.mapping(node, what, keys, () if "pgn" in (node.value or {}) else ("message",)):
        return None
    v = node.value
    spec = CANONICAL_SIGNALS[canonical]
    if ("signal" in v) == ("signals" in v):
        check.error("missing-key", node.loc, f"{what} needs exactly one of 'signal' or 'signals'")
        return None
    message = None
    if "message" in v:
        message = _lookup_message(v["message"], database, dbc_name, f"{what}.message", check)
    if "pgn" in v:
        by_pgn, pgn_named = _by_pgn(v["pgn"], database, dbc_name, f"{what}.pgn", check)
        if message is not None and by_pgn is not None and message is not by_pgn:
            check.error("bad-key", v["pgn"].loc, f"{what}.pgn: message '{message.name}' does not have PGN {pgn_named}")
            return None
        message = message or by_pgn
    if message is None:
        return None
    pgn: int | None = None
    source_addresses: frozenset[int] | None = None
    if "pgn" in v or "source" in v:
        pgn, source_addresses, j1939_ok = _j1939(v, message, what, check)
        if not j1939_ok:
            return None
    require_fd = bool(check.boolean(v["fd"], f"{what}.fd")) if "fd" in v else False
    names: list[str] = []
    if "signal" in v:
        one = check.string(v["signal"], f"{what}.signal")
        names = [one] if one else []
        name_nodes = [v["signal"]]
    else:
        group = v["signals"]
        if not group.is_seq or not group.value:
            check.error("expected-type", group.loc, f"{what}.signals must be a non-empty list of DBC signal names")
            return None
        names = [check.string(n, f"{what}.signals") or "" for n in group.value]
        name_nodes = list(group.value)
    known = {s.name: s for s in message.signals}
    for text, name_node in zip(names, name_nodes, strict=False):
        if text and text not in known:
            close = difflib.get_close_matches(text, list(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            check.error(
                "unknown-signal", name_node.loc, f"{what}: message '{message.name}' has no signal '{text}'{hint}"
            )
            return None
    if not all(names):
        return None
    combine = "sum"
    if "combine" in v:
        combine = check.choice(v["combine"], f"{what}.combine", COMBINES) or "sum"
    elif len(names) > 1:
        check.error("missing-key", node.loc, f"{what}: several signals need 'combine' ({', '.join(COMBINES)})")
    scale = check.number(v["scale"], f"{what}.scale") if "scale" in v else 1.0
    offset = check.number(v["offset"], f"{what}.offset") if "offset" in v else 0.0
    invert = bool(check.boolean(v["invert"], f"{what}.invert")) if "invert" in v else False
    bus = check.string(v["bus"], f"{what}.bus") if "bus" in v else None
    value_map = None
    if spec.kind != "number":
        if "map" not in v:
            check.error(
                "missing-key",
                node.loc,
                f"{what}: '{canonical}' takes the values {_values_text(spec)}; give a 'map' from DBC values",
            )
            return None
        if len(names) > 1:
            check.error("bad-map", node.loc, f"{what}: a mapped signal must be a single DBC signal")
            return None
        value_map = _parse_map(v["map"], known[names[0]], spec, what, check)
        if value_map is None:
            return None
        for key in ("scale", "offset", "invert", "combine"):
            if key in v:
                check.error("bad-key", node.key_loc(key), f"{what}: '{key}' applies only to numeric signals")
    elif "map" in v:
        check.error("bad-map", node.key_loc("map"), f"{what}: '{canonical}' is a number ({spec.unit}); it takes no map")
    max_age = _max_age(v.get("max_age_ms"), message, what, check, node.loc)
    if max_age is None or scale is None or offset is None:
        return None
    return SignalSource(
        name=canonical,
        frame_id=message.frame_id,
        is_extended=message.is_extended_frame,
        message=message.name,
        signals=tuple(names),
        combine=combine,
        scale=scale,
        offset=offset,
        invert=invert,
        value_map=value_map,
        max_age=max_age,
        bus=bus,
        loc=node.loc,
        resolution=0.0 if value_map is not None else max(abs(float(known[n].scale)) for n in names) * abs(scale),
        require_fd=require_fd,
        pgn=pgn,
        source_addresses=source_addresses,
    )


def _values_text(spec: Any) -> str:
    return "true, false" if spec.kind == "bool" else ", ".join(spec.values)


def _parse_map(node: Node, signal: Any, spec: Any, what: str, check: Checker) -> dict[int, Any] | None:
    if not node.is_map or not node.value:
        check.error(
            "expected-type", node.loc, f"{what}.map must be a non-empty mapping of DBC value -> canonical value"
        )
        return None
    choices = {str(name): int(raw) for raw, name in (signal.choices or {}).items()}
    allowed: tuple[Any, ...] = (False, True) if spec.kind == "bool" else spec.values
    out: dict[int, Any] = {}
    ok = True
    for text, target in node.items():
        key = target.key
        if isinstance(key, int) and not isinstance(key, bool):
            raw = key
        elif str(key) in choices:
            raw = choices[str(key)]
        else:
            names = ", ".join(choices) if choices else "none (use raw integers)"
            check.error(
                "bad-map",
                node.key_loc(text),
                f"{what}.map: '{text}' is not a value of DBC signal '{signal.name}'; its named values: {names}",
            )
            ok = False
            continue
        value = target.value
        if isinstance(value, bool) != (spec.kind == "bool") or value not in allowed:
            check.error(
                "bad-map",
                target.loc,
                f"{what}.map: {text} -> {value!r} is not a canonical value; expected one of: {_values_text(spec)}",
            )
            ok = False
            continue
        out[raw] = value
    return out if ok else None


def _max_age(node: Node | None, message: Any, what: str, check: Checker, entry: Location) -> float | None:
    if node is not None:
        ms = check.number(node, f"{what}.max_age_ms", minimum=1)
        return None if ms is None else ms / 1000.0
    if message.cycle_time:
        # Three cycles, but never under 100 ms: a loaded head unit delays frames by tens of ms.
        return max(CYCLES_UNTIL_STALE * float(message.cycle_time) / 1000.0, MIN_DEFAULT_AGE_S)
    check.error(
        "missing-key",
        entry,
        f"{what}: give max_age_ms; the DBC gives no cycle time (GenMsgCycleTime) for '{message.name}'",
    )
    return None


def raw_validity(signal: Any) -> tuple[frozenset[int], float | None, float | None]:
    """Raw values the DBC names as not available, and the physical range it declares."""
    invalid = frozenset(int(raw) for raw, name in (signal.choices or {}).items() if INVALID_CHOICE.match(str(name)))
    low, high = signal_value_range(signal)
    return invalid, low, high


__all__ = ["CrossCheck", "SignalSource", "VehicleProfile", "frame_label", "load_dbc", "load_profile", "raw_validity"]
