"""The ``drivegate`` command line: the parser, the commands (one module each) and the exit codes.

Exit codes, the same for every command (:mod:`safety.cli.common`): 0 done and clean; 1 the
command ran and found something (findings, failed checks, a bad signature); 2 unusable input
(a profile, policy, suite, key or log that cannot be loaded, a bad argument), with every
problem printed as ``file:line:col: code: message``; 130 interrupted; 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from safety import __version__
from safety.cli import (
    demo,
    explain,
    fleet,
    gen_drive,
    inject,
    keygen,
    lint,
    log_stats,
    log_summary,
    protocol,
    replay,
    report,
    schema,
    serve,
    sign,
    test,
    verify,
    whatif,
)
from safety.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_UNUSABLE,
    builtin_names,
    describe,
    examples_epilog,
)
from safety.errors import DriveGateError

# The commands, in the order `drivegate --help` lists them: each module has register(subparsers),
# which adds its parser with set_defaults(run=function(args) -> exit code).
COMMAND_MODULES: tuple[ModuleType, ...] = (
    replay,
    whatif,
    fleet,
    report,
    demo,
    gen_drive,
    inject,
    serve,
    protocol,
    lint,
    test,
    explain,
    schema,
    keygen,
    sign,
    verify,
    log_summary,
    log_stats,
)

_EPILOG = (
    examples_epilog(
        (
            "drivegate demo",
            "drivegate lint default speed-bands && drivegate test default",
            "drivegate gen-drive --out drive.log && drivegate replay drive.log --vehicle demo-sedan --policy default",
            "drivegate COMMAND --help",
        )
    )
    + "\n\nexit codes:\n"
    "  0    done, clean\n"
    "  1    findings or failures (lint findings, a failed test, a bad signature)\n"
    "  2    unusable input (a file that cannot be read or loaded, a bad argument)\n"
    "  130  interrupted\n"
    "  141  stdout closed early (drivegate ... | head)"
)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``drivegate`` parser, every command registered."""
    parser = argparse.ArgumentParser(
        prog="drivegate",
        description=describe(
            "DriveGate: driver-distraction safety policy engine",
            "CAN frames -> vehicle state -> YAML policy -> decision.  Wherever a vehicle profile or a "
            f"policy is taken, a built-in name works as well as a path ({builtin_names()}).",
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"drivegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``drivegate`` with ``argv`` (default: the process's arguments); the exit code."""
    try:
        args = build_parser().parse_args(argv)
        try:
            code: int = args.run(args)
        except DriveGateError as exc:
            print(str(exc), file=sys.stderr)
            code = EXIT_UNUSABLE
        # Flush here, inside the handler: a pipe closed while the last output sat in the buffer
        # would otherwise fail in the interpreter's own flush at exit, with a message on stderr.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`drivegate schema policy | head -1`): what it did not read is not
        # wanted, so end quietly, as the Python docs recommend (signal module, "Note on SIGPIPE"):
        # point stdout at devnull so that the flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
