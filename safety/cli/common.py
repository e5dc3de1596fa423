"""What every ``drivegate`` command shares: exit codes, the parser shape, argument types, stdout.

Exit codes, the same for every command:

====  ==============================================================================
0     done, and clean: nothing found, every check passed
1     the command ran and found something: lint findings, a failed test, a bad signature
2     unusable input: a file that cannot be read or loaded, a bad argument (argparse too)
130   interrupted (Ctrl-C)
141   stdout was closed early (``drivegate ... | head -1``): the rest is dropped quietly
====  ==============================================================================
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from safety import builtin
from safety.errors import Location, PolicyTestError, TimeLimitError
from safety.jsontext import loads_strict

__all__ = [
    "BUILTIN_HINT",
    "DEFAULT_TIME_LIMIT_S",
    "EXIT_BROKEN_PIPE",
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNUSABLE",
    "Stdout",
    "add_command",
    "add_time_limit",
    "builtin_names",
    "builtin_suite",
    "describe",
    "examples_epilog",
    "json_arg",
    "output",
    "policy_arg",
    "policy_file_arg",
    "suite_arg",
    "suite_file_arg",
    "vehicle_arg",
    "with_time_limit",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe: scripts that
# check for it (`set -o pipefail`) see the same code as for any other Unix tool.
EXIT_BROKEN_PIPE = 141

# Help text is wrapped here, by hand, because the epilogs (the examples) must keep their line
# breaks, which needs RawDescriptionHelpFormatter -- and that formatter wraps no description.
# 78 columns: what argparse wraps the option help to in an 80-column terminal.
_WIDTH = 78

#: How a built-in name is spelled in help texts.
BUILTIN_HINT = "a built-in name or a path"


def add_command(
    sub: Any,
    name: str,
    *,
    help: str,
    description: str = "",
    examples: Sequence[str],
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Add subcommand ``name``: ``help`` is its one line in ``drivegate --help`` and the first line of
    its own ``--help``; ``description`` (wrapped) follows it; ``examples`` are command lines, shown
    as they are under "examples:" (at least one: every command's help shows how to call it)."""
    if not examples:
        raise ValueError(f"command {name!r} needs at least one example")
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=describe(help, description),
        epilog=examples_epilog(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def describe(summary: str, description: str = "") -> str:
    """A ``--help`` description: ``summary`` as a sentence on one line, then ``description``'s
    paragraphs (separated by blank lines) wrapped."""
    text = summary[:1].upper() + summary[1:] + "."
    if description:
        text += "\n\n" + "\n\n".join(textwrap.fill(p, _WIDTH) for p in description.split("\n\n"))
    return text


def examples_epilog(examples: Sequence[str]) -> str:
    """A ``--help`` epilog: "examples:" and the command lines, indented, as they are."""
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


# ---------------------------------------------------------------------- built-in names
def _name_or_text(text: str, path: Path) -> str:
    # A value that is not a built-in name comes back as typed, not as Path(text): Path drops a
    # leading "./" and doubled slashes, and file names appear in findings and JSON output.
    return text if path == Path(text) else str(path)


def vehicle_arg(text: str) -> str:
    """argparse type: a built-in vehicle name (``demo-sedan``) as its profile's path, or a path."""
    return _name_or_text(text, builtin.vehicle_path(text))


def add_vehicle_option(parser: argparse.ArgumentParser) -> None:
    """``--vehicle V`` (required), as every command that reads CAN frames takes it."""
    parser.add_argument(
        "--vehicle",
        required=True,
        type=vehicle_arg,
        help=f"vehicle profile (YAML beside its DBC): {BUILTIN_HINT}, e.g. demo-sedan",
    )


def policy_arg(text: str) -> str:
    """argparse type: a built-in policy name (``default``, ``speed-bands``) as its path, or a path."""
    return _name_or_text(text, builtin.policy_path(text))


def policy_file_arg(text: str) -> Path:
    """:func:`policy_arg` as a :class:`~pathlib.Path`, for commands that always took one."""
    return Path(policy_arg(text))


def builtin_suite(text: str) -> Path | None:
    """The suite shipped with built-in policy ``text``, when ``text`` is such a bare name."""
    name = builtin.bare_name(text, builtin.policy_names())
    return None if name is None else builtin.suite_path(name)


def suite_arg(text: str) -> str:
    """argparse type: a built-in policy name as the path of its suite, or a suite path."""
    suite = builtin_suite(text)
    return text if suite is None else str(suite)


def suite_file_arg(text: str) -> Path:
    """:func:`suite_arg` as a :class:`~pathlib.Path`."""
    return Path(suite_arg(text))


def builtin_names() -> str:
    """The built-in names, for help texts: ``vehicles: demo-sedan; policies: default, speed-bands``."""
    return f"vehicles: {', '.join(builtin.vehicle_names())}; policies: {', '.join(builtin.policy_names())}"


# ---------------------------------------------------------------------- time limits
DEFAULT_TIME_LIMIT_S = 60.0


def add_time_limit(parser: argparse.ArgumentParser) -> None:
    """``--time-limit SECONDS``: a hostile or huge input (a 20,000-rule policy) ends with an error."""
    parser.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT_S,
        metavar="S",
        help=f"stop with an error (exit 2) after this many seconds (default {DEFAULT_TIME_LIMIT_S:g})",
    )


def with_time_limit(run: Callable[[argparse.Namespace], int], command: str) -> Callable[[argparse.Namespace], int]:
    """``run`` stopped by ``TimeLimitError`` once ``args.time_limit`` seconds have passed.

    A real-time timer (SIGALRM) interrupts pure-Python work between bytecodes, wherever it is:
    no analysis loop needs to check a clock.  Past the limit it fires again every half second,
    so an ``except`` that happens to catch it once does not defeat it.  The CLI's main thread only.
    """

    def limited(args: argparse.Namespace) -> int:
        seconds = args.time_limit
        if not 0 < seconds <= 86_400:
            print(f"drivegate {command}: --time-limit must be more than 0 and at most 86400 s", file=sys.stderr)
            return EXIT_UNUSABLE

        def expired(signum: int, frame: object) -> None:
            raise TimeLimitError(
                f"drivegate {command} stopped after {seconds:g} s (--time-limit): the input is too large to "
                "finish in time; give a larger --time-limit to wait longer"
            )

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
        try:
            return run(args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return limited


# ---------------------------------------------------------------------- JSON arguments
def json_arg(text: str, option: str) -> Any:
    """``text`` parsed as JSON; unusable input (``PolicyTestError``, exit 2) if it is not JSON."""
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise PolicyTestError(
            f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", Location(file=option), code="bad-json"
        ) from exc
    except ValueError as exc:  # a duplicate key, an oversized integer
        raise PolicyTestError(f"invalid JSON: {exc}", Location(file=option), code="bad-json") from exc


# ---------------------------------------------------------------------- stdout
class Stdout:
    """stdout as a context manager that does not close it (``with open(...) if out else Stdout()``)."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def output(path: str | None) -> TextIO | Stdout:
    """Where a command writes: the file ``path`` (opened for writing, UTF-8), or stdout."""
    return open(path, "w", encoding="utf-8") if path else Stdout()
