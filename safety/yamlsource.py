"""YAML with places: every value keeps the file, line and column it came from.

PyYAML's composer gives marks for every node; we keep them so that profile and policy
loaders can say ``file:line:col`` for every problem.  Duplicate keys, which PyYAML
silently accepts (the last wins), are reported: in a safety policy a silently dropped
rule is a defect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from safety.errors import DriveGateError, ErrorCollector, Location

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    constructor = yaml.SafeLoader("")
    node = _convert(path, root, constructor, collector if collector is not None else errors, error)
    errors.raise_if_any()
    return node


def _convert(
    path: str,
    ynode: Any,
    constructor: Any,
    errors: ErrorCollector,
    error: Callable[[str, Location, str], DriveGateError],
) -> Node:
    loc = _mark_loc(path, ynode.start_mark)
    if isinstance(ynode, yaml.MappingNode):
        values: dict[str, Node] = {}
        key_locs: dict[str, Location] = {}
        for key_node, value_node in ynode.value:
            key_loc = _mark_loc(path, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                errors.add(error("bad-key", key_loc, "a key must be a plain scalar"))
                continue
            key = constructor.construct_object(key_node)
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
            child = _convert(path, value_node, constructor, errors, error)
            child.key = key
            values[key_text] = child
        return Node(values, loc, key_locs)
    if isinstance(ynode, yaml.SequenceNode):
        return Node([_convert(path, item, constructor, errors, error) for item in ynode.value], loc)
    return Node(constructor.construct_object(ynode), loc)


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
