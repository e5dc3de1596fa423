"""YAML with places: every value keeps the file, line and column it came from.

PyYAML's composer gives marks for every node; we keep them so that profile and policy
loaders can say ``file:line:col`` for every problem.  Duplicate keys, which PyYAML
silently accepts (the last wins), are reported: in a safety policy a silently dropped
rule is a defect.

Every YAML file DriveGate reads (policies, profiles, suites, probes) goes through this one
loader, and it assumes the file is hostile: the document size, the values aliases expand to
(a "billion laughs" bomb is a few hundred bytes), the nesting depth and the size of integers
are limited, recursive aliases and tags other than YAML's plain ones are errors.  Each limit
is an error at the place it was hit, found in bounded time, never a traceback or a hang.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safety.errors import DriveGateError, ErrorCollector, Location

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The largest YAML file read.  The shipped policies are ~20 kB; a generated 20,000-rule
#: policy is ~3 MB.
MAX_YAML_BYTES = 16 * 1024 * 1024
#: Values produced by expanding aliases, beyond the nodes written in the file.  Shared
#: conditions through anchors stay possible; a bomb expanding to millions does not.
MAX_ALIAS_VALUES = 10_000
#: Nesting depth of mappings and lists (the shipped files nest at most 7 deep).
MAX_DEPTH = 64
#: Digits in an integer (0x/0b prefixes and letters of hex included): every integer DriveGate
#: reads fits in 64 bits (a frame id, a raw value, a time in ms); a 400-digit one overflows
#: float() and a 5,000-digit one int() (Python's limit on converting text).
MAX_INT_DIGITS = 40
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)


def read_yaml_text(path: str | Path) -> str:
    """The text of the YAML file ``path``, reading at most :data:`MAX_YAML_BYTES`.

    Raises ``OSError`` (a file too large is ``EFBIG``) or ``UnicodeDecodeError`` as
    ``Path.read_text`` does, so callers report them as an unreadable file.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise OSError(errno.EFBIG, f"the file is larger than the {MAX_YAML_BYTES // 2**20} MiB DriveGate reads")
    return data.decode("utf-8")


class _LimitHit(Exception):
    """A limit was hit while converting: stop at once (the rest could be a bomb)."""

    def __init__(self, loc: Location, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


@dataclass
class _Walk:
    """What converting one document has cost so far."""

    values: int = 0
    seen: set[int] = field(default_factory=set)
    path: set[int] = field(default_factory=set)
    # Where the outermost alias being expanded is used (its key, or its list): a composed
    # alias is the anchored node itself, whose marks are the anchor's.
    alias_site: Location | None = None


@dataclass
class Node:
    """A YAML value with its place.  ``value`` is a dict of Nodes, a list of Nodes, or a scalar."""

    value: Any
    loc: Location
    key_locs: dict[str, Location] = field(default_factory=dict)
    key: Any = None  # the key as YAML typed it (an int for ``0: P``) when this is a map value

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def items(self) -> Iterator[tuple[str, Node]]:
        assert isinstance(self.value, dict)
        yield from self.value.items()

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            found: Node | None = self.value.get(key)
            return found
        return None

    def key_loc(self, key: str) -> Location:
        return self.key_locs.get(key, self.loc)

    def plain(self) -> Any:
        """The value without places (plain dicts, lists and scalars)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _mark_loc(file: str, mark: Any) -> Location:
    return Location(file=file, line=mark.line + 1, col=mark.column + 1)


def load_yaml(
    path: str,
    text: str,
    error: Callable[[str, Location, str], DriveGateError],
    collector: ErrorCollector | None = None,
) -> Node:
    """Parse ``text`` (the content of ``path``) into a Node tree.

    ``error(code, location, message)`` builds the caller's error type.  A syntax error
    stops parsing and is raised as a ``LoadError``; other problems (duplicate keys) go to
    ``collector`` when given, so the caller reports them with its own, else are raised.
    """
    errors = ErrorCollector()
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _mark_loc(path, mark) if mark is not None else Location(file=path)
        problem = exc.problem or exc.context or "invalid YAML"
        errors.add(error("yaml-syntax", loc, f"invalid YAML: {problem}"))
        errors.raise_if_any()
        raise AssertionError("unreachable") from exc
    except yaml.YAMLError as exc:
        errors.add(error("yaml-syntax", Location(file=path), f"invalid YAML: {exc}"))
        errors.raise_if_any()
        raise AssertionError("unreachable") from exc
    if root is None:
        errors.add(error("empty-file", Location(file=path, line=1, col=1), "the file is empty"))
        errors.raise_if_any()
    if len(text) > MAX_YAML_BYTES:  # callers read with read_yaml_text; text given directly is checked here
        errors.add(error("yaml-limit", Location(file=path), f"the document is larger than {MAX_YAML_BYTES} bytes"))
        errors.raise_if_any()
    constructor = yaml.SafeLoader("")
    try:
        node = _convert(path, root, constructor, collector if collector is not None else errors, error, _Walk(), 0)
    except _LimitHit as hit:
        errors.add(error("yaml-limit", hit.loc, hit.message))
        errors.raise_if_any()
        raise AssertionError("unreachable") from hit
    errors.raise_if_any()
    return node


def _convert(
    path: str,
    ynode: Any,
    constructor: Any,
    errors: ErrorCollector,
    error: Callable[[str, Location, str], DriveGateError],
    walk: _Walk,
    depth: int,
    site: Location | None = None,
) -> Node:
    loc = _mark_loc(path, ynode.start_mark)
    identity = id(ynode)
    if identity in walk.path:
        raise _LimitHit(site or loc, "a recursive alias (a value that contains itself)")
    outermost = identity in walk.seen and walk.alias_site is None
    if outermost:
        walk.alias_site = site or loc
    try:
        return _convert_node(path, ynode, loc, constructor, errors, error, walk, depth)
    finally:
        if outermost:
            walk.alias_site = None


def _convert_node(
    path: str,
    ynode: Any,
    loc: Location,
    constructor: Any,
    errors: ErrorCollector,
    error: Callable[[str, Location, str], DriveGateError],
    walk: _Walk,
    depth: int,
) -> Node:
    identity = id(ynode)
    walk.values += 1
    walk.seen.add(identity)
    if walk.values - len(walk.seen) > MAX_ALIAS_VALUES:
        raise _LimitHit(
            walk.alias_site or loc, f"aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?)"
        )
    if depth > MAX_DEPTH:
        raise _LimitHit(loc, f"nested deeper than {MAX_DEPTH} levels")
    if ynode.tag not in _PLAIN_TAGS:
        errors.add(
            error(
                "yaml-tag",
                loc,
                f"unknown tag '{ynode.tag}'; DriveGate reads plain YAML (strings, numbers, true/false, null, "
                "lists and mappings)",
            )
        )
        return Node(None, loc)
    if isinstance(ynode, yaml.ScalarNode):
        return _scalar(ynode, loc, constructor, errors, error)
    walk.path.add(identity)
    try:
        return _collection(path, ynode, loc, constructor, errors, error, walk, depth)
    finally:
        walk.path.discard(identity)


def _scalar(
    ynode: Any,
    loc: Location,
    constructor: Any,
    errors: ErrorCollector,
    error: Callable[[str, Location, str], DriveGateError],
) -> Node:
    if ynode.tag == "tag:yaml.org,2002:int":
        digits = sum(ch.isalnum() for ch in ynode.value)
        if digits > MAX_INT_DIGITS:
            errors.add(error("yaml-limit", loc, f"an integer of {digits} digits; at most {MAX_INT_DIGITS} are read"))
            return Node(None, loc)
    try:
        return Node(constructor.construct_object(ynode), loc)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # a malformed timestamp, say
        errors.add(error("yaml-syntax", loc, f"invalid value {ynode.value!r}: {exc}".splitlines()[0]))
        return Node(None, loc)


def _collection(
    path: str,
    ynode: Any,
    loc: Location,
    constructor: Any,
    errors: ErrorCollector,
    error: Callable[[str, Location, str], DriveGateError],
    walk: _Walk,
    depth: int,
) -> Node:
    if isinstance(ynode, yaml.MappingNode):
        values: dict[str, Node] = {}
        key_locs: dict[str, Location] = {}
        for key_node, value_node in ynode.value:
            key_loc = _mark_loc(path, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                errors.add(error("bad-key", key_loc, "a key must be a plain scalar"))
                continue
            key = _scalar(key_node, key_loc, constructor, errors, error).value
            if isinstance(key, bool) or key is None:
                # YAML 1.1 reads OFF/ON/YES/NO/~ as booleans or null; as keys they are
                # names (a DBC value table's OFF), so keep the text as written.
                key = key_node.value
            key_text = str(key)
            if key_text in values:
                first = key_locs[key_text]
                errors.add(error("duplicate-key", key_loc, f"duplicate key '{key_text}' (first at line {first.line})"))
                continue
            key_locs[key_text] = key_loc
            child = _convert(path, value_node, constructor, errors, error, walk, depth + 1, key_loc)
            child.key = key
            values[key_text] = child
        return Node(values, loc, key_locs)
    return Node([_convert(path, item, constructor, errors, error, walk, depth + 1, loc) for item in ynode.value], loc)


class Checker:
    """Shape checks on Nodes that collect errors of one error class instead of raising."""

    def __init__(self, make: Callable[[str, Location, str], DriveGateError]) -> None:
        self.make = make
        self.errors = ErrorCollector()

    def error(self, code: str, loc: Location, message: str) -> None:
        self.errors.add(self.make(code, loc, message))

    def mapping(self, node: Node, what: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> bool:
        """Check that ``node`` is a mapping with only ``allowed`` keys and every ``required`` one."""
        if not node.is_map:
            self.error("expected-type", node.loc, f"{what} must be a mapping, got {_describe(node)}")
            return False
        for key in node.value:
            if key not in allowed:
                self.error(
                    "unknown-key",
                    node.key_loc(key),
                    f"unknown key '{key}' in {what}; expected one of: {', '.join(sorted(allowed))}",
                )
        for key in required:
            if key not in node.value:
                self.error("missing-key", node.loc, f"{what} lacks the required key '{key}'")
        return True

    def string(self, node: Node, what: str) -> str | None:
        if isinstance(node.value, str) and node.value:
            return node.value
        self.error("expected-type", node.loc, f"{what} must be a non-empty string, got {_describe(node)}")
        return None

    def number(self, node: Node, what: str, *, minimum: float | None = None) -> float | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error("expected-type", node.loc, f"{what} must be a number, got {_describe(node)}")
            return None
        if value != value or value in (float("inf"), float("-inf")):
            self.error("expected-type", node.loc, f"{what} must be a finite number, got {value}")
            return None
        if minimum is not None and value < minimum:
            self.error("out-of-range", node.loc, f"{what} must be at least {minimum}, got {value}")
            return None
        return float(value)

    def integer(self, node: Node, what: str, *, minimum: int, maximum: int) -> int | None:
        """A whole number within [minimum, maximum]."""
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.error("expected-type", node.loc, f"{what} must be a whole number, got {_describe(node)}")
            return None
        if not minimum <= value <= maximum:
            self.error("out-of-range", node.loc, f"{what} must be {minimum}..{maximum}, got {value}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node.value, bool):
            return node.value
        self.error("expected-type", node.loc, f"{what} must be true or false, got {_describe(node)}")
        return None

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str | None:
        if isinstance(node.value, str) and node.value in choices:
            return node.value
        self.error(
            "unknown-value",
            node.loc,
            f"{what} must be one of: {', '.join(choices)}; got {_describe(node)}",
        )
        return None


def _describe(node: Node) -> str:
    if node.is_map:
        return "a mapping"
    if node.is_seq:
        return "a list"
    if node.value is None:
        return "nothing (null)"
    return f"{type(node.value).__name__} {node.value!r}"
