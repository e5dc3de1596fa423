"""``drivegate lint`` shows how far it is on a terminal (a 500-rule policy takes tens of seconds)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, stderr_on_a_terminal

from safety.policy import load_policy
from safety.workflow.analysis import analyze

SPEED_BANDS = ROOT / "policies" / "speed-bands.yaml"


def test_analysis_tells_each_stage_in_order() -> None:
    policy = load_policy(SPEED_BANDS)
    heard: list[tuple[str, int, int]] = []
    whole = analyze(policy, progress=lambda stage, done, total: heard.append((stage, done, total)))
    # The whole-space walk: one call per region, counted up, no total known in advance.
    assert heard == [("regions", n, 0) for n in range(1, whole.regions + 1)]
    heard.clear()
    analyze(policy, whole_space=False, progress=lambda stage, done, total: heard.append((stage, done, total)))
    rules = len(policy.rules)
    # Rule by rule: each rule analysed, then each rule's pairs checked for conflicts (then the gaps walk).
    assert heard[:rules] == [("rules analysed", r, rules) for r in range(rules)]
    assert heard[rules : 2 * rules] == [("rules checked for conflicts", r, rules) for r in range(rules)]
    assert heard[2 * rules :] == []


def test_lint_progress_on_a_terminal_only_and_not_with_quiet() -> None:
    command = [sys.executable, "-m", "safety.cli", "lint", str(SPEED_BANDS)]
    piped = subprocess.run(command, capture_output=True, text=True, check=False)
    assert piped.returncode == 0
    assert piped.stderr == "drivegate lint: 1 policy file(s): 0 error(s), 0 warning(s), 6 ignored (lint.ignore / --ignore)\n"
    summary = piped.stderr.replace("\n", "\r\n")  # as the terminal shows it
    shown = stderr_on_a_terminal(command)
    assert shown.startswith(f"\rlint {SPEED_BANDS}: 1 regions\x1b[K")
    assert shown.endswith("\r\x1b[K" + summary)  # the line is cleared before the summary
    assert stderr_on_a_terminal([*command, "--quiet"]) == summary
