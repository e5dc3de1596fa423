"""drivegate fleet on a real Dask LocalCluster (two worker processes): every row as a single-process replay gives it."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_POLICY, DEMO_VEHICLE, ROOT, shared

from safety import Engine
from safety.fleet.intervals import decision_rows
from safety.io.logs import read_log
from safety.replay.columnar import timeline_lines
from safety.replay.deferrals import DEFAULT_TTL_S, deferrals
from safety.replay.timeline import BUILTIN_PROBES, Timeline

distributed = pytest.importorskip("distributed", reason="the fleet extra is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the fleet extra is not installed")

from safety.fleet.run import FleetJob, chunk_planner, dask_submit, job_keys, run_fleet  # noqa: E402
from safety.io.write import write_frames  # noqa: E402

SPEED_BANDS = ROOT / "policies" / "speed-bands.yaml"
RAV4_TSS2 = ROOT / "tests" / "profiles" / "rav4_tss2.yaml"

pytestmark = pytest.mark.slow  # worker processes


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with distributed.Client(cluster) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("drives")
    logs = []
    for seed in (1, 2, 3):
        path = directory / f"drive-{seed}.log"
        command = [sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(path), "--seed", str(seed), "--quiet"]
        subprocess.run(command, check=True)
        logs.append(str(path))
    return logs


def single_process_rows(log: str, vehicle: Path, policy: Path, compare: Path | None) -> list[dict[str, Any]]:
    """The rows of one log from the streaming replay in this process (no columns, no Dask)."""
    lines: list[dict[str, Any]] = []
    timeline = Timeline(Engine.load(vehicle, policy), BUILTIN_PROBES, None, on_line=lines.append, rules=True)
    summary = timeline.run(read_log(log, on_error=lambda _e: None))
    other = None
    if compare is not None:
        other = []
        Timeline(Engine.load(vehicle, compare), BUILTIN_PROBES, None, on_line=other.append).run(read_log(log, on_error=lambda _e: None))
    assert summary.last_time is not None
    return decision_rows(log, lines, summary.last_time, other)


def jobs_for(logs: list[str], vehicle: Path, policy: Path, compare: Path | None) -> list[FleetJob]:
    probes = [dict(p) for p in BUILTIN_PROBES]
    keys = job_keys(logs, str(vehicle), str(policy), None if compare is None else str(compare), probes)
    return [FleetJob(log, str(vehicle), str(policy), None if compare is None else str(compare), tuple(probes), key) for log, key in zip(logs, keys, strict=True)]


def parquet_rows(out: Path) -> list[dict[str, Any]]:
    return sorted(pq.read_table(out / "parts").to_pylist(), key=lambda r: (r["log"], r["probe"], r["start"]))


def test_every_row_is_the_single_process_replay_and_a_second_run_skips(client: Any, drives: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("garbage\n")
    logs = [*drives, str(empty), str(tmp_path / "missing.log")]
    jobs = jobs_for(logs, DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY)
    out = tmp_path / "out"
    summary = run_fleet(jobs, out, dask_submit(client), compare=True)
    assert (summary.replayed, summary.skipped) == (3, 0)
    assert sorted(log for log, _ in summary.failed) == sorted([str(empty), str(tmp_path / "missing.log")])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["log"] for e in errors} == {str(empty), str(tmp_path / "missing.log")}
    by_log = {e["log"]: e["error"] for e in errors}
    assert by_log[str(empty)] == (
        f"{empty}: no frames read: {empty}:1: log-format: malformed candump line: found 'garbage', "
        "expected '(timestamp) interface id#data' and an optional R or T"
    )
    assert by_log[str(tmp_path / "missing.log")].endswith("missing.log: log-format: no such file")

    expected = sorted(
        (row for log in drives for row in single_process_rows(log, DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY)),
        key=lambda r: (r["log"], r["probe"], r["start"]),
    )
    got = parquet_rows(out)
    assert got == expected
    assert {r["log"] for r in got} == set(drives)
    assert any(r["other_outcome"] != r["outcome"] for r in got)  # the two policies do differ
    totals = json.loads((out / "summary.json").read_text())
    assert totals["replayed"] == 3 and totals["failed"] == 2 and totals["frames"] == 3 * 51952
    assert totals["looser_seconds"]  # speed-bands is looser than default somewhere on these drives
    # The deferrals the engine's queue would have held, per probe, summed over the drives.
    held: dict[str, Counter[str]] = {}
    for log in drives:
        lines, replayed = timeline_lines(Engine.load(DEMO_VEHICLE, SPEED_BANDS), log, BUILTIN_PROBES)
        for probe in BUILTIN_PROBES:
            found = deferrals(lines, probe["id"], DEFAULT_TTL_S, replayed.last_time)
            if found.queued:
                counts = held.setdefault(probe["id"], Counter())
                counts.update(queued=found.queued, released=found.released, expired=found.expired, pending=found.pending)
    assert held and totals["deferrals"] == {probe: {k: counts[k] for k in ("queued", "released", "expired", "pending")} for probe, counts in held.items()}

    # Resumable: nothing done again; the parts are not rewritten.
    parts = {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()}
    again = run_fleet(jobs, out, dask_submit(client), compare=True)
    assert (again.replayed, again.skipped, len(again.failed)) == (0, 3, 2)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()} == parts
    assert again.totals()["frames"] == 3 * 51952  # the summary still covers every log done

    # Another policy is another run: every log again.
    changed = run_fleet(jobs_for(drives, DEMO_VEHICLE, DEFAULT_POLICY, None), out, dask_submit(client))
    assert (changed.replayed, changed.skipped) == (3, 0)


def test_real_logs_on_the_cluster(client: Any, tmp_path: Path) -> None:
    logs = [
        str(shared("verifiedcan_rav4_tss2", "rav4_2020-02-03_drive.log.gz")),
        str(shared("verifiedcan_rav4_tss2", "rav4_2020-03-02_steering.log.gz")),
        str(shared("verifiedcan_rav4_tss2", "2020-02-03-14-31-11-510096__CAN_Message_.csv")),
    ]
    out = tmp_path / "out"
    summary = run_fleet(jobs_for(logs, RAV4_TSS2, DEFAULT_POLICY, None), out, dask_submit(client))
    assert summary.replayed == 3 and not summary.failed
    expected = sorted(
        (row for log in logs for row in single_process_rows(log, RAV4_TSS2, DEFAULT_POLICY, None)),
        key=lambda r: (r["log"], r["probe"], r["start"]),
    )
    assert parquet_rows(out) == expected


def test_long_logs_in_chunks_give_every_row_and_figure_of_the_whole_replay(client: Any, drives: list[str], tmp_path: Path) -> None:
    """Each drive cut into three chunks (one task each on the two workers), spliced: the rows
    are the single-process replay's and the figures those of a run without chunks."""
    jobs = jobs_for(drives, DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY)
    whole = run_fleet(jobs, tmp_path / "whole", dask_submit(client), compare=True)
    chunked = run_fleet(jobs, tmp_path / "chunked", dask_submit(client), compare=True, chunking=chunk_planner(20_000, 8_000, 200))
    assert (chunked.replayed, chunked.chunked + chunked.unspliced, len(chunked.failed)) == (3, 3, 0)
    assert chunked.chunked >= 1
    expected = sorted(
        (row for log in drives for row in single_process_rows(log, DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY)),
        key=lambda r: (r["log"], r["probe"], r["start"]),
    )
    assert parquet_rows(tmp_path / "chunked") == expected
    by_log = {f["log"]: f for f in whole.figures}
    for figures in chunked.figures:
        assert figures["chunks"] in (1, 3)
        assert {k: v for k, v in figures.items() if k != "chunks"} == {k: v for k, v in by_log[figures["log"]].items() if k != "chunks"}
    assert chunked.format().splitlines()[1] == (
        f"long logs: {chunked.chunked} replayed in chunks and spliced, {chunked.unspliced} replayed whole (their chunks never agreed)"
    )


def test_a_long_blf_log_in_chunks_gives_every_row_of_the_whole_replay(
    client: Any, drives: list[str], tmp_path: Path
) -> None:
    """A BLF log is planned from its header's frame count and cut by frame index."""
    blf = tmp_path / "drive.blf"
    write_frames(blf, read_log(drives[0]))
    jobs = jobs_for([str(blf)], DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY)
    chunked = run_fleet(
        jobs, tmp_path / "chunked", dask_submit(client), compare=True, chunking=chunk_planner(20_000, 8_000, 200)
    )
    assert (chunked.replayed, chunked.chunked, chunked.unspliced, len(chunked.failed)) == (1, 1, 0, 0)
    assert chunked.figures[0]["chunks"] == 3
    assert parquet_rows(tmp_path / "chunked") == single_process_rows(
        str(blf), DEMO_VEHICLE, SPEED_BANDS, DEFAULT_POLICY
    )


def test_bad_lines_are_counted_once_whole_or_in_chunks(client: Any, drives: list[str], tmp_path: Path) -> None:
    """A long log with bad lines everywhere, in chunk overlaps too: each is counted once, the
    first is named, and the log's rows are those of the single-process replay."""
    lines = Path(drives[0]).read_text().splitlines(keepends=True)
    bad = list(range(5, len(lines), 3_001))  # ~17 of them, some in every chunk and overlap
    for at in reversed(bad):
        lines.insert(at, "garbage\n")
    log = tmp_path / "with-bad-lines.log"
    log.write_text("".join(lines))
    jobs = jobs_for([str(log)], DEMO_VEHICLE, DEFAULT_POLICY, None)
    whole = run_fleet(jobs, tmp_path / "whole", dask_submit(client))
    chunked = run_fleet(jobs, tmp_path / "chunked", dask_submit(client), chunking=chunk_planner(20_000, 8_000, 200))
    assert (chunked.chunked, chunked.unspliced) == (1, 0)
    first = (
        f"{log}:6: log-format: malformed candump line: found 'garbage', "
        "expected '(timestamp) interface id#data' and an optional R or T"
    )
    for summary in (whole, chunked):
        (figures,) = summary.figures
        assert (figures["bad_lines"], figures["first_bad_line"]) == (len(bad), first)
        assert figures["frames_read"] == len(lines) - len(bad)
        assert summary.totals()["bad_lines"] == len(bad) and summary.totals()["logs_with_bad_lines"] == 1
        assert f"bad lines: {len(bad)} in 1 log(s), skipped (figures/*.json); first: {first}" in summary.format().splitlines()
    assert {k: v for k, v in chunked.figures[0].items() if k != "chunks"} == {k: v for k, v in whole.figures[0].items() if k != "chunks"}
    expected = sorted(single_process_rows(str(log), DEMO_VEHICLE, DEFAULT_POLICY, None), key=lambda r: (r["log"], r["probe"], r["start"]))
    assert parquet_rows(tmp_path / "chunked") == expected == parquet_rows(tmp_path / "whole")


def test_chunks_that_never_agree_are_replayed_whole(client: Any, drives: list[str], tmp_path: Path) -> None:
    """Overlaps of a few seconds: the chunks of the demo drive never agree at one border (a
    workload hold only one of them saw), so the log is replayed whole: the same rows."""
    jobs = jobs_for(drives[:1], DEMO_VEHICLE, DEFAULT_POLICY, None)
    summary = run_fleet(jobs, tmp_path / "out", dask_submit(client), chunking=chunk_planner(10_000, 4_000, 100))
    assert (summary.replayed, summary.chunked, summary.unspliced) == (1, 0, 1)
    assert summary.figures[0]["chunks"] == 1
    assert parquet_rows(tmp_path / "out") == single_process_rows(drives[0], DEMO_VEHICLE, DEFAULT_POLICY, None)


def test_cli_on_a_local_cluster_and_a_manifest(drives: list[str], tmp_path: Path) -> None:
    manifest = tmp_path / "month.txt"
    manifest.write_text("# drives of the month\n" + "\n".join(drives) + "\n\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "safety.cli", "fleet", "--manifest", str(manifest), "--vehicle", "demo-sedan"]
    command += ["--policy", "default", "--out", str(out), "--workers", "2", "--chunk-frames", "30000", "--chunk-overlap", "12000"]
    result = subprocess.run([*command, "--report"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"wrote {out / 'report.html'}"
    page = (out / "report.html").read_text()
    assert 'id="fleet-outcomes"' in page and all(f"<td>{log}</td>" in page for log in drives)
    first = result.stdout.splitlines()[0]
    assert first.startswith("fleet: 3 log(s): 3 replayed, 0 skipped (done before), 0 failed; 155,856 frames")
    chunks = result.stdout.splitlines()[1]  # each drive in two chunks of 30,000 frames
    assert re.fullmatch(r"long logs: (\d) replayed in chunks and spliced, (\d) replayed whole \(their chunks never agreed\)", chunks)
    assert sum(int(n) for n in re.findall(r"\d", chunks)) == 3
    assert result.stderr == ""  # no progress bar when not on a terminal
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 replayed, 3 skipped" in again.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--chunk-frames", "-1"], "drivegate fleet: --chunk-frames must be 0 (never cut a log) or more, got -1"),
        (
            ["--chunk-frames", "100", "--chunk-overlap", "50"],
            "drivegate fleet: --chunk-overlap must be at least 1 and under half of --chunk-frames (100), got 50",
        ),
        (
            ["--chunk-frames", "100", "--chunk-overlap", "0"],
            "drivegate fleet: --chunk-overlap must be at least 1 and under half of --chunk-frames (100), got 0",
        ),
    ],
    ids=["negative-chunks", "overlap-half", "overlap-zero"],
)
def test_chunk_options_that_cannot_splice_are_refused(drives: list[str], tmp_path: Path, options: list[str], message: str) -> None:
    command = [sys.executable, "-m", "safety.cli", "fleet", drives[0], "--vehicle", "demo-sedan", "--policy", "default"]
    result = subprocess.run([*command, "--out", str(tmp_path / "out"), *options], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", "")
    assert not (tmp_path / "out").exists()  # refused before any cluster or output


def test_without_the_extra_the_command_says_how_to_get_it(capsys: pytest.CaptureFixture[str]) -> None:
    from safety.cli import fleet

    saved = fleet.FLEET_MODULES
    fleet.FLEET_MODULES = ("distributed", "no_such_module_for_this_test")  # the real list, plus one missing
    try:
        code = fleet.run(argparse.Namespace())
    finally:
        fleet.FLEET_MODULES = saved
    assert code == 2
    assert capsys.readouterr().err == (
        "drivegate fleet needs the fleet extra: pip install 'drivegate[fleet]' (missing: no_such_module_for_this_test)\n"
    )


def _worker_setup() -> tuple[str | None, bool]:
    import os

    import dask

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), bool(dask.config.get("distributed.worker.profile.enabled"))


def test_the_local_workers_keep_glibcs_own_trim_threshold_and_no_profiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask's default (MALLOC_TRIM_THRESHOLD_=65536 in each worker) made a replay 1.5x slower."""
    import dask

    from safety.cli.fleet import LOCAL_WORKER_CONFIG

    # A nanny also sets the variable in its own process, so an earlier cluster of this test
    # process would hand it on; `drivegate fleet` starts one cluster in a fresh process.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    with dask.config.set(LOCAL_WORKER_CONFIG):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    with distributed.Client(cluster) as c:
        assert list(c.run(_worker_setup).values()) == [(None, False)]
    cluster.close()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as plain, distributed.Client(plain) as c:
        assert list(c.run(_worker_setup).values()) == [("65536", True)]  # what the setting undoes
