"""``drivegate report``: recorded drives as one self-contained HTML page (plotly), offline.

Per drive: speed, steering angle and gear over time; the driving state, the workload and one
band per probe coloured by outcome (with a compared policy: its bands too, and a band marking
where the two differ); the time each signal spent unknown, by cause; a table of time per outcome
per probe and of the outcome changes.  plotly.js is inlined once, so the file opens with no
network and no server; every plot zooms and pans (the x axes are shared within a drive).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safety.engine.engine import Engine
from safety.model.decision import Outcome
from safety.replay.columnar import timeline_lines
from safety.replay.deferrals import DEFAULT_TTL_S, deferrals, probe_ttl_s
from safety.replay.timeline import ReplaySummary

# Band colours: outcomes from permissive to restrictive, then the driving states and workloads.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("allow", "#2ca02c"),
    ("degrade", "#dbdb3b"),
    ("defer", "#ff9f1c"),
    ("deny", "#d62728"),
    ("parked", "#1f77b4"),
    ("stationary", "#17becf"),
    ("moving", "#9467bd"),
    ("low", "#c7e9c0"),
    ("high", "#8c2d04"),
    ("same", "#eeeeee"),
    ("differs", "#000000"),
    ("unknown", "#7f7f7f"),
)
_CODE = {name: i for i, (name, _) in enumerate(CATEGORIES)}


@dataclass
class DriveReport:
    """One drive replayed for the report."""

    log: str
    lines: list[dict[str, Any]]
    summary: ReplaySummary
    other: list[dict[str, Any]] | None = None
    other_summary: ReplaySummary | None = None
    probes: list[str] = field(default_factory=list)
    ttl_s: dict[str, float] = field(default_factory=dict)  # per probe: how long a deferral is queued


def replay_for_report(
    vehicle: str | Path,
    policy: str | Path,
    log: str | Path,
    probes: Sequence[Mapping[str, Any]],
    compare: str | Path | None = None,
    sample_every: float = 0.1,
) -> DriveReport:
    """Replay ``log`` (and under ``compare``), sampled every ``sample_every`` s for the curves."""
    lines, summary = timeline_lines(Engine.load(vehicle, policy), log, probes, sample_every, reasons=True)
    other: list[dict[str, Any]] | None = None
    other_summary: ReplaySummary | None = None
    if compare is not None:
        other, other_summary = timeline_lines(Engine.load(vehicle, compare), log, probes, sample_every, reasons=True)
    ttl_s = {str(p["id"]): probe_ttl_s(p) for p in probes}
    return DriveReport(str(log), lines, summary, other, other_summary, [str(p["id"]) for p in probes], ttl_s)


def _band(values: list[Any]) -> list[int]:
    return [_CODE.get("unknown" if v is None else str(v), _CODE["unknown"]) for v in values]


def _colorscale() -> list[list[Any]]:
    n = len(CATEGORIES)
    scale: list[list[Any]] = []
    for i, (_, colour) in enumerate(CATEGORIES):
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


def _bands_trace(x: list[float], rows: list[tuple[str, list[int], list[str]]], name: str) -> Any:
    """One heatmap of coloured bands, a row per (label, codes, texts); the first row on top."""
    import plotly.graph_objects as go

    top_first = rows[::-1]  # a heatmap's first row is drawn at the bottom
    return go.Heatmap(
        x=x,
        y=[label for label, _, _ in top_first],
        z=[codes for _, codes, _ in top_first],
        text=[texts for _, _, texts in top_first],
        hovertemplate="%{y}: %{text} at %{x:.2f} s<extra></extra>",
        zmin=-0.5,
        zmax=len(CATEGORIES) - 0.5,
        colorscale=_colorscale(),
        showscale=False,
        name=name,
    )


def drive_figure(drive: DriveReport) -> Any:
    """The plotly figure of one drive."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lines = drive.lines
    t0 = lines[0]["t"] if lines else 0.0
    x = [line["t"] - t0 for line in lines]
    rows: list[tuple[str, list[int], list[str]]] = []

    def add_row(label: str, values: list[Any]) -> None:
        rows.append((label, _band(values), ["unknown" if v is None else str(v) for v in values]))

    add_row("driving state", [line["driving_state"] for line in lines])
    add_row("workload", [line["workload"] for line in lines])
    for probe in drive.probes:
        add_row(probe, [line["decisions"][probe] for line in lines])
    fig = make_subplots(
        rows=4 if drive.other is None else 5,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.18, 0.14, 0.08, 0.45] + ([0.3] if drive.other is not None else []),
        subplot_titles=["speed (km/h)", "steering angle (deg)", "gear", "decisions by probe"]
        + (["compared policy (OLD), and where it differs"] if drive.other is not None else []),
    )
    curves = (("speed", "speed"), ("steering_angle", "steering angle"), ("gear", "gear"))
    for row, (key, name) in enumerate(curves, 1):
        y = [line[key] for line in lines]
        if key == "gear":
            y = [gear or "unknown" for gear in y]  # a category axis: unknown is a category too
        fig.add_trace(go.Scatter(x=x, y=y, name=name, line_shape="hv", mode="lines"), row=row, col=1)
    fig.add_trace(_bands_trace(x, rows, "decisions"), row=4, col=1)
    if drive.other is not None:
        # The compared policy's outcomes at the main timeline's times, and where they differ.
        other = drive.other
        j = -1
        olds: dict[str, list[Any]] = {p: [] for p in drive.probes}
        for line in lines:
            while j + 1 < len(other) and other[j + 1]["t"] <= line["t"]:
                j += 1
            for p in drive.probes:
                olds[p].append(other[j]["decisions"][p] if j >= 0 else None)
        crows: list[tuple[str, list[int], list[str]]] = []
        for p in drive.probes:
            differs = ["differs" if o is not None and o != line["decisions"][p] else "same" for o, line in zip(olds[p], lines, strict=True)]
            crows.append((f"{p} (OLD)", _band(olds[p]), [str(o) for o in olds[p]]))
            crows.append((f"{p} differs", _band(differs), differs))
        fig.add_trace(_bands_trace(x, crows, "compared"), row=5, col=1)
    fig.update_xaxes(title_text="seconds since the first frame", row=4 if drive.other is None else 5, col=1)
    fig.update_layout(height=1100 if drive.other is None else 1500, title_text=drive.log, showlegend=False, margin={"l": 140})
    return fig


def unknown_figure(drive: DriveReport) -> Any:
    """Seconds each signal spent unknown, stacked by cause."""
    import plotly.graph_objects as go

    per = drive.summary.unknown_seconds
    causes = sorted({c for by in per.values() for c in by})
    signals = sorted(per)
    fig = go.Figure(
        [go.Bar(name=cause, x=signals, y=[per[s].get(cause, 0.0) for s in signals]) for cause in causes]
    )
    fig.update_layout(barmode="stack", title_text="time unknown per signal, by cause (s)", height=380)
    return fig


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_tables(drive: DriveReport) -> str:
    s = drive.summary
    outcomes = [o.value for o in Outcome]
    rows = []
    for probe in drive.probes:
        seconds = s.outcome_seconds.get(probe, {})
        counts = s.outcome_counts.get(probe, {})
        ttl = drive.ttl_s.get(probe, DEFAULT_TTL_S)
        held = deferrals(drive.lines, probe, ttl, s.last_time) if drive.lines else None
        queue = (
            ["", "", "", "", ""]
            if held is None
            else [
                f"{held.queued} (ttl {ttl:g} s)",
                held.released,
                held.expired,
                held.pending,
                "" if held.median_wait is None else f"{held.median_wait:.1f}",
            ]
        )
        rows.append([probe, *(f"{seconds.get(o, 0.0):.1f}" for o in outcomes), sum(counts.values()), *queue])
    span = 0.0 if s.first_time is None or s.last_time is None else s.last_time - s.first_time
    parts = [
        f"<p>frames read {s.frames_read:,}, decoded {s.frames_decoded:,}, bad lines {len(s.log_errors)}; "
        f"log time {span:.1f} s; time in driving state: "
        + html.escape(", ".join(f"{k} {v:.1f} s" for k, v in sorted(s.state_seconds.items())))
        + "</p>",
        _table(
            [
                "probe",
                *(f"{o} (s)" for o in outcomes),
                "outcome periods",
                "deferrals queued",
                "released",
                "expired",
                "pending at the end",
                "median wait (s)",
            ],
            rows,
        ),
    ]
    integrity = {**{f"implausible {k}": v for k, v in s.implausible.items()}, **{f"integrity {k}": v for k, v in s.integrity.items()}}
    if integrity:
        parts.append(_table(["samples refused", "count"], sorted(integrity.items())))
    return "\n".join(parts)


def write_report(drives: Sequence[DriveReport], out: Path, *, title: str = "DriveGate replay report") -> None:
    """One HTML file, plotly.js inlined once: it opens offline."""
    from plotly.offline import get_plotlyjs

    sections = []
    for n, drive in enumerate(drives):
        main = drive_figure(drive).to_html(full_html=False, include_plotlyjs=False, div_id=f"drive-{n}")
        unknown = unknown_figure(drive).to_html(full_html=False, include_plotlyjs=False, div_id=f"unknown-{n}")
        sections.append(
            f"<section><h2>{html.escape(drive.log)}</h2>{main}{unknown}{summary_tables(drive)}</section>"
        )
    legend = "".join(
        f'<span class="chip" style="background:{colour}"></span>{html.escape(name)} ' for name, colour in CATEGORIES
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
        ".chip{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p>bands: {legend}</p>{''.join(sections)}</body></html>"
    )
    out.write_text(page, encoding="utf-8")


PNG_WIDTH = 1400  # pixels: a drive of minutes needs the width to show its bands


def write_pngs(drives: Sequence[DriveReport], directory: Path) -> list[Path]:
    """Static images of each drive's figures (plotly's ``write_images``, which needs kaleido)."""
    import plotly.io as pio

    directory.mkdir(parents=True, exist_ok=True)
    figures, paths = [], []
    for n, drive in enumerate(drives):
        for name, fig in ((f"drive-{n}.png", drive_figure(drive)), (f"drive-{n}-unknown.png", unknown_figure(drive))):
            figures.append(fig)
            paths.append(directory / name)
    # One kaleido session for all of them: starting a browser per image is slow (and, with
    # kaleido 1.x, a later image in a loop of write_image calls can fail to find its scope).
    # kaleido draws at 700 x 500 unless told: each figure at its page height, full width.
    heights = [fig.layout.height or 500 for fig in figures]
    pio.write_images(figures, [str(p) for p in paths], width=[PNG_WIDTH] * len(figures), height=heights)
    return paths


def write_fleet_report(totals: Mapping[str, Any], figures: Sequence[Mapping[str, Any]], out: Path) -> None:
    """The fleet's page: hours per outcome per probe (and, compared, looser and stricter), and a
    table of every log done.  ``totals`` and ``figures`` as ``FleetSummary`` gives them."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    outcomes = [o.value for o in Outcome]
    colours = dict(CATEGORIES)
    per_probe: Mapping[str, Mapping[str, float]] = totals["outcome_seconds"]
    probes = list(per_probe)
    fig = go.Figure(
        [go.Bar(name=o, x=probes, y=[per_probe[p].get(o, 0.0) / 3600 for p in probes], marker_color=colours[o]) for o in outcomes]
    )
    fig.update_layout(barmode="stack", title_text="hours per outcome, by probe", height=450)
    parts = [fig.to_html(full_html=False, include_plotlyjs=False, div_id="fleet-outcomes")]
    if totals.get("looser_seconds") is not None:
        looser, stricter = totals["looser_seconds"], totals["stricter_seconds"]
        compared = go.Figure(
            [
                go.Bar(name="looser than --compare", x=probes, y=[looser.get(p, 0.0) / 3600 for p in probes], marker_color=colours["deny"]),
                go.Bar(name="stricter than --compare", x=probes, y=[stricter.get(p, 0.0) / 3600 for p in probes], marker_color=colours["allow"]),
            ]
        )
        compared.update_layout(barmode="group", title_text="hours where the policy differs from --compare", height=400)
        parts.append(compared.to_html(full_html=False, include_plotlyjs=False, div_id="fleet-compared"))
    rows = [[f["log"], f"{f['frames_read']:,}", f"{f['seconds']:.1f}"] for f in figures]
    parts.append(_table(["log", "frames", "log time (s)"], rows))
    head = (
        f"<p>{totals['logs']} log(s): {totals['replayed']} replayed, {totals['skipped']} skipped, {totals['failed']} failed; "
        f"{totals['frames']:,} frames, {totals['log_seconds'] / 3600:.3f} h of log time</p>"
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>DriveGate fleet report</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body><h1>DriveGate fleet report</h1>"
        f"{head}{''.join(parts)}</body></html>"
    )
    out.write_text(page, encoding="utf-8")
