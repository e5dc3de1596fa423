#!/usr/bin/env python3
"""Mutation testing of the decision core with mutmut: run it, then report per module and survivor.

    pip install -e '.[mutation]'
    python tools/mutation.py                     # every mutant of the modules in [tool.mutmut]
                                                 # (resumes: results of unchanged functions stand)
    python tools/mutation.py --sample 40         # a seeded sample across them (in a fresh clone:
                                                 # it refuses where mutants/ holds results)
    python tools/mutation.py --module safety/vehicle/e2e.py   # one module
    python tools/mutation.py --report            # the report of the last run (mutants/), no run
    python tools/mutation.py --survivors         # the last run's survivors again (after new tests)

The modules and the tests come from ``[tool.mutmut]`` in ``pyproject.toml``.  Each mutant is one
small change (a flipped comparison, ``max`` for ``min``, a removed statement, a constant + 1,
...); mutmut runs the tests that reach the mutated function, and a mutant is *killed* when one of
them fails (a timeout, the mutant looping, counts as killed).  Survivors are printed as
``file:line: mutant: - original / + mutant``.  ``tools/mutation_equivalents.toml`` is the reviewed
list of equivalent mutants (a change no test can see because the behaviour is the same): each
entry names the mutant, the line it changes and why it is equivalent; they are left out of the
score, never silently dropped, and an entry whose mutant no longer makes that change is reported
as stale.  The score of a module is killed / (mutants checked - equivalent).

Exit 1 when a sampled or full run's score is under ``--floor`` (default 90 %) or a mutant
survives that is not in the reviewed list with ``--strict``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENTS = ROOT / "tools" / "mutation_equivalents.toml"
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # killed, pytest internal error, timeouts, type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def configured_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["mutmut"]["only_mutate"])


def mutmut(*args: str, quiet: bool = False) -> int:
    """Run mutmut in the project root (it works in ./mutants); its exit code."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, check=False, stdout=out, stderr=out).returncode


def children_args(children: int | None) -> list[str]:
    return ["--max-children", str(children)] if children else []


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def load_results(modules: list[str]) -> dict[str, dict[str, int | None]]:
    """Mutant name -> exit code (None: not run), per module, from mutmut's metadata."""
    results: dict[str, dict[str, int | None]] = {}
    for module in modules:
        meta = MUTANTS / f"{module}.meta"
        results[module] = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    return results


# --------------------------------------------------------------------------- where a mutant is
def _function_of(mutant: str, module: str) -> tuple[str | None, str]:
    """(class or None, function) of a mutant name such as ``safety.x.xǁClassǁmethod__mutmut_3``."""
    local = mutant[len(_module_name(module)) + 1 :].rsplit("__mutmut_", 1)[0]
    if local.startswith("xǁ"):
        _, cls, name = local.split("ǁ", 2)
        return cls, name
    return None, local.removeprefix("x_")


def _function_lines(module: str, cls: str | None, name: str) -> tuple[int, list[str]]:
    """The first line number and the source lines of a function (or method) in the original module."""
    source = (ROOT / module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    scope: list[ast.stmt] = tree.body
    if cls is not None:
        classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls]
        if not classes:
            return 0, []
        scope = classes[0].body
    for item in scope:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name:
            end = item.end_lineno or item.lineno
            return item.lineno, source.splitlines()[item.lineno - 1 : end]
    return 0, []


@dataclass
class Change:
    line: int
    removed: str
    added: str


def locate(mutant: str, module: str) -> Change:
    """The line a mutant changes in the original file, and how (from mutmut's own diff)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # mutmut finds its files relative to the project root
        diff = get_diff_for_mutant(mutant, path=Path(module))
    finally:
        os.chdir(cwd)
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    cls, name = _function_of(mutant, module)
    start, lines = _function_lines(module, cls, name)
    line = start
    if removed:
        wanted = removed[0].strip()
        at = _first_removed(diff)  # the changed line's place in the function, from the hunk
        if at is not None and 0 <= at < len(lines) and lines[at].strip() == wanted:
            line = start + at
        else:  # a function whose text mutmut laid out otherwise: its first line with that text
            for offset, text in enumerate(lines):
                if text.strip() == wanted:
                    line = start + offset
                    break
    return Change(line, " ".join(r.strip() for r in removed), " ".join(a.strip() for a in added))


def _first_removed(diff: str) -> int | None:
    """The 0-based line, within the mutated function, of the diff's first removed line (a
    function may hold the same text more than once: the hunk says which)."""
    at: int | None = None
    for text in diff.splitlines():
        if text.startswith("@@"):
            at = int(text.split()[1].lstrip("-").split(",")[0]) - 1
        elif at is not None and not text.startswith(("---", "+++")):
            if text.startswith("-"):
                return at
            if not text.startswith("+"):
                at += 1
    return None


# --------------------------------------------------------------------------- equivalents
@dataclass
class Equivalent:
    mutant: str
    removed: str
    added: str
    why: str


def load_equivalents() -> dict[str, Equivalent]:
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return {
        e["mutant"]: Equivalent(e["mutant"], e.get("removed", ""), e.get("added", ""), e["why"])
        for e in data.get("equivalent", [])
    }


# --------------------------------------------------------------------------- the report
@dataclass
class ModuleScore:
    module: str
    mutants: int = 0
    checked: int = 0
    killed: int = 0
    survived: list[tuple[str, Change]] = field(default_factory=list)
    equivalent: int = 0
    no_tests: int = 0

    @property
    def score(self) -> float | None:
        counted = self.checked - self.equivalent
        return None if counted <= 0 else self.killed / counted


def report(modules: list[str], names: set[str] | None = None) -> tuple[list[ModuleScore], list[str]]:
    """Scores per module (of ``names`` only, when given) and stale equivalent entries."""
    equivalents = load_equivalents()
    scores: list[ModuleScore] = []
    stale: list[str] = []
    for module, codes in load_results(modules).items():
        score = ModuleScore(module, mutants=len(codes))
        for mutant, code in sorted(codes.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[1])):
            if names is not None and mutant not in names:
                continue
            if code is None:
                continue
            score.checked += 1
            if code in KILLED:
                score.killed += 1
                if mutant in equivalents:
                    stale.append(f"{mutant}: listed as equivalent but killed: remove it from the list")
            elif code in NO_TESTS or code in SURVIVED:
                change = locate(mutant, module)
                entry = equivalents.get(mutant)
                if entry is not None:
                    if (entry.removed, entry.added) != (change.removed, change.added):
                        stale.append(f"{mutant}: the listed change is no longer what it mutates: review it again")
                        score.survived.append((mutant, change))
                    else:
                        score.equivalent += 1
                    continue
                if code in NO_TESTS:
                    score.no_tests += 1
                score.survived.append((mutant, change))
            else:  # suspicious, segfault, interrupted: not a kill
                score.survived.append((mutant, locate(mutant, module)))
        scores.append(score)
    return scores, stale


def print_report(scores: list[ModuleScore], stale: list[str]) -> None:
    print("| module | mutants | checked | killed | equivalent (reviewed) | survived | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total_killed = total_counted = 0
    for s in scores:
        value = "-" if s.score is None else f"{s.score:.1%}"
        print(
            f"| `{s.module}` | {s.mutants} | {s.checked} | {s.killed} | {s.equivalent} | {len(s.survived)} | {value} |"
        )
        total_killed += s.killed
        total_counted += s.checked - s.equivalent
    if total_counted:
        print(f"| all | | {total_counted} counted | {total_killed} | | | {total_killed / total_counted:.1%} |")
    for s in scores:
        for mutant, change in s.survived:
            print(f"{s.module}:{change.line}: {mutant}: - {change.removed} / + {change.added}")
    for line in stale:
        print(f"stale: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation testing of the decision core (mutmut).")
    parser.add_argument("--module", action="append", help="only this module (repeatable; default: [tool.mutmut])")
    parser.add_argument("--sample", type=int, help="run a seeded sample of this many mutants")
    parser.add_argument("--seed", type=int, default=13, help="the sample's seed (default 13)")
    parser.add_argument(
        "--discard",
        action="store_true",
        help="let --sample run where mutants/ holds earlier results (they may be lost)",
    )
    parser.add_argument("--report", action="store_true", help="only report the last run")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again the last run's unreviewed survivors (after new tests: mutmut keeps old results otherwise)",
    )
    parser.add_argument("--floor", type=float, default=0.90, help="the score below which to exit 1 (default 0.90)")
    parser.add_argument("--strict", action="store_true", help="exit 1 for any survivor not in the reviewed list")
    parser.add_argument("--children", type=int, help="mutants tested at once (default: one per core)")
    args = parser.parse_args(argv)
    modules = args.module or configured_modules()
    patterns = [_module_name(m) + ".*" for m in modules]
    names: set[str] | None = None
    if not args.report:
        if args.sample:
            held = sum(code is not None for codes in load_results(modules).values() for code in codes.values())
            if held and not args.discard:
                # A sample regenerates the mutants; a full run's results (hours) went with it once.
                print(
                    f"mutants/ holds {held} results of an earlier run: run --sample in a separate clone "
                    "(git clone . /tmp/sample), or pass --discard",
                    file=sys.stderr,
                )
                return 2
            # Generate the mutants (and mutmut's test map) without running any, then pick some.
            # (mutmut has no such command: it generates, finds no mutant of that name and stops.)
            mutmut("run", "__generate_only__", quiet=True)
            every = sorted(n for codes in load_results(modules).values() for n in codes)
            names = set(random.Random(args.seed).sample(every, min(args.sample, len(every))))
            mutmut("run", *children_args(args.children), *sorted(names))
        elif args.survivors:
            previous, _ = report(modules)
            again = sorted(name for score in previous for name, _ in score.survived)
            if again:
                mutmut("run", *children_args(args.children), *again)
        elif args.module:
            mutmut("run", *children_args(args.children), *patterns)
        else:
            # No names: mutmut keeps every result it has for an unchanged function, so an
            # interrupted full run (hours here) resumes where it stopped.
            mutmut("run", *children_args(args.children))
    scores, stale = report(modules, names)
    print_report(scores, stale)
    counted = sum(s.checked - s.equivalent for s in scores)
    killed = sum(s.killed for s in scores)
    unreviewed = sum(len(s.survived) for s in scores)
    if counted and killed / counted < args.floor:
        print(f"mutation score {killed / counted:.1%} is under the floor {args.floor:.0%}", file=sys.stderr)
        return 1
    if args.strict and unreviewed:
        print(f"{unreviewed} survivor(s) not in {EQUIVALENTS.relative_to(ROOT)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
