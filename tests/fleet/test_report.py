"""drivegate report, as a user sees it: the HTML page rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytest.importorskip("plotly", reason="plotly (the fleet extra) is not installed")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)"),
]


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    command += ["--virtual-time-budget=20000", "--window-size=1400,2600", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def external_resources(text: str) -> list[str]:
    """The src/href of every tag that would load something."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in ("src", "href") and value and tag in ("script", "link", "img", "iframe"):
                    found.append(f"{tag} {name}={value}")

    Tags().feed(text)
    return found


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]


@pytest.fixture(scope="module")
def drive_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--quiet"], check=True)
    return path


def test_the_console_check_sees_errors(tmp_path: Path) -> None:
    # The check below means something only if a page's console errors do reach it.
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('Error: planted'); undefinedFunction();</script></body></html>")
    errors = console_errors(chromium(page, "--dump-dom").stderr)
    assert any("planted" in e for e in errors) and any("undefinedFunction" in e for e in errors)


def test_the_report_renders_offline_with_every_trace(drive_log: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    page = tmp_path / "report.html"
    command = [sys.executable, "-m", "safety.cli", "report", str(drive_log), "--vehicle", "demo-sedan"]
    result = subprocess.run(
        [*command, "--policy", "speed-bands", "--compare", "default", "--out", str(page)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    # plotly.js is inlined: no script, style or image is fetched from anywhere, so it opens offline.
    assert external_resources(page.read_text()) == []
    rendered = chromium(page, "--dump-dom")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert console_errors(rendered.stderr) == []
    dom = rendered.stdout
    assert dom.count('class="main-svg"') >= 4  # two figures, each drawn by plotly.js
    for label in ("speed (km/h)", "steering angle (deg)", "gear", "decisions by probe", "driving state", "workload",
                  "video", "critical-call", "video (OLD)", "video differs", "time unknown per signal, by cause (s)"):
        assert f">{label}<" in dom, label
    # The summary table: time per outcome for every probe.
    assert (
        "<th>probe</th><th>allow (s)</th><th>degrade (s)</th><th>defer (s)</th><th>deny (s)</th><th>outcome periods</th>"
        "<th>deferrals queued</th><th>released</th><th>expired</th><th>pending at the end</th><th>median wait (s)</th>"
    ) in dom
    assert "(ttl 60 s)</td>" in dom  # the built-in probes give no ttl_ms: a minute
    # A screenshot, in the test's output folder, for a person to look at.
    shot = tmp_path / "report.png"
    chromium(page, f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")


def test_png_without_kaleido_says_how_to_get_it(drive_log: Path, tmp_path: Path) -> None:
    # kaleido made unimportable in the child (None in sys.modules: import raises ImportError).
    code = "import sys; sys.modules['kaleido'] = None; from safety.cli.main import main; raise SystemExit(main())"
    args = ["report", str(drive_log), "--vehicle", "demo-sedan", "--policy", "default", "--out", str(tmp_path / "r.html")]
    result = subprocess.run([sys.executable, "-c", code, *args, "--png", str(tmp_path / "png")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == "drivegate report --png needs kaleido (and a Chrome or Chromium): pip install kaleido\n"
    assert not (tmp_path / "r.html").exists()


def test_png_writes_each_figure_as_an_image(drive_log: Path, tmp_path: Path) -> None:
    pytest.importorskip("kaleido", reason="kaleido (the fleet extra) is not installed")
    command = [sys.executable, "-m", "safety.cli", "report", str(drive_log), str(drive_log), "--vehicle", "demo-sedan"]
    out = tmp_path / "png"
    result = subprocess.run([*command, "--policy", "default", "--out", str(tmp_path / "r.html"), "--png", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = ["drive-0-unknown.png", "drive-0.png", "drive-1-unknown.png", "drive-1.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert f"wrote {out / name}" in result.stdout
        head = (out / name).read_bytes()[:24]
        # A PNG: the signature, then the IHDR chunk with the width and height (big-endian).
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        # Full width, at the height the page gives the figure (kaleido's default is 700 x 500).
        assert (width, height) == (1400, 380 if "unknown" in name else 1100), name


@pytest.mark.parametrize("browser", ["missing", "dies"])
def test_png_without_a_working_browser_says_so_and_keeps_the_page(drive_log: Path, tmp_path: Path, browser: str) -> None:
    """kaleido drives a Chrome or Chromium (BROWSER_PATH names it): none there, or one that dies
    at once, is an error that says what happened; the HTML report is written all the same."""
    pytest.importorskip("kaleido", reason="kaleido (the fleet extra) is not installed")
    path = tmp_path / "no-such-chrome"
    if browser == "dies":
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(0o755)
    command = [sys.executable, "-m", "safety.cli", "report", str(drive_log), "--vehicle", "demo-sedan", "--policy", "default"]
    command += ["--out", str(tmp_path / "r.html"), "--png", str(tmp_path / "png")]
    env = {**os.environ, "BROWSER_PATH": str(path)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stdout == f"wrote {tmp_path / 'r.html'} (1 drive(s))\n"
    error = result.stderr.splitlines()[-1] if browser == "dies" else result.stderr
    assert error.startswith("drivegate report --png: kaleido could not draw the images: ")
    assert ("Kaleido requires Google Chrome to be installed" in result.stderr) if browser == "missing" else (str(path) in error)
    assert not any((tmp_path / "png").glob("*.png"))


def test_the_offline_check_sees_a_cdn_script() -> None:
    page = '<html><head><script src="https://cdn.plot.ly/plotly.min.js"></script><script>var a = "<script src=x>";</script></head></html>'
    assert external_resources(page) == ["script src=https://cdn.plot.ly/plotly.min.js"]


def test_the_fleet_report_renders(tmp_path: Path, drive_log: Path) -> None:
    out = tmp_path / "fleet"
    command = [sys.executable, "-m", "safety.cli", "fleet", str(drive_log), "--vehicle", "demo-sedan", "--policy", "speed-bands"]
    result = subprocess.run([*command, "--compare", "default", "--out", str(out), "--workers", "1", "--report"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = out / "report.html"
    assert external_resources(page.read_text()) == []
    rendered = chromium(page, "--dump-dom")
    assert console_errors(rendered.stderr) == []
    dom = rendered.stdout
    assert dom.count('class="main-svg"') >= 2
    for label in ("hours per outcome, by probe", "hours where the policy differs from --compare", "looser than --compare"):
        assert f">{label}<" in dom, label
