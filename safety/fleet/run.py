"""A fleet's recorded drives replayed on Dask: one task per log, results as Parquet, resumable.

Each log is one task (:func:`replay_log`, run on a worker process): the columnar replay under
the policy (and, with ``compare``, under the other policy too), turned into decision intervals
(:func:`safety.fleet.intervals.decision_rows`).  A very long log is cut into chunks, one task
each, replayed with a warm-up and spliced where their states agree
(:mod:`safety.replay.chunks`): the rows are the whole log's, exactly; a log whose chunks never
agree is replayed whole.  The driver writes each log's rows to
``DIR/parts/<key>.parquet`` with its figures beside it (``<key>.json``); the key hashes the
log (path, size, modification time), the policy, the other policy, the vehicle profile and its
DBC, the probes and the DriveGate version, so a run started again skips every log already done
for the same inputs.  A log that cannot be read or decoded is reported with its error
(``DIR/errors.jsonl``) and does not stop the others; it is tried again next run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from safety.engine.engine import Engine
from safety.errors import DriveGateError
from safety.fleet.intervals import decision_rows
from safety.io.logs import format_from_suffix
from safety.model.decision import Outcome
from safety.replay.chunks import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_EVERY_FRAMES,
    DEFAULT_OVERLAP_FRAMES,
    ChunkRun,
    ChunkSpec,
    Spliced,
    estimate_frames,
    plan_chunks,
    replay_chunk,
    splice,
)
from safety.replay.columnar import timeline_lines
from safety.replay.deferrals import deferrals, probe_ttl_s
from safety.vehicle.profile import load_profile

ROW_FIELDS = ("log", "probe", "start", "end", "outcome", "rules", "other_outcome")


@dataclass(frozen=True)
class FleetJob:
    """One log to replay, with everything a worker needs (plain, picklable values)."""

    log: str
    vehicle: str
    policy: str
    compare: str | None
    probes: tuple[Mapping[str, Any], ...]
    key: str
    chunk: ChunkSpec | None = None  # one chunk of a long log (None: the whole log)
    chunks: int = 1  # how many chunks the log is cut into


@dataclass
class LogResult:
    """What a worker sends back for one log."""

    log: str
    key: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    frames_read: int = 0
    frames_decoded: int = 0
    seconds: float = 0.0  # log time
    outcome_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    # With compare: per probe, seconds the policy decides less (looser) or more (stricter)
    # restrictively than the other policy.
    looser_seconds: dict[str, float] = field(default_factory=dict)
    stricter_seconds: dict[str, float] = field(default_factory=dict)
    # Per probe: the deferrals the engine's queue would have held (safety.replay.deferrals).
    deferrals: dict[str, dict[str, int]] = field(default_factory=dict)
    chunks: int = 1  # the tasks it was replayed in (1: whole, also where its chunks never agreed)
    bad_lines: int = 0  # lines and frames that could not be read (skipped; the replay went on)
    first_bad_line: str | None = None  # the first of them, as file:line: code: message

    def figures(self) -> dict[str, Any]:
        """Everything but the rows (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"}


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk of a long log: its runs under each policy."""

    log: str
    key: str
    index: int
    runs: list[ChunkRun] = field(default_factory=list)  # the policy's, then the other policy's
    error: str | None = None


def replay_log(job: FleetJob) -> LogResult | ChunkResult:
    """Replay one log (on a worker): its decision rows and figures, or the error that stopped it;
    for a chunk of a log (``job.chunk``), that chunk's runs."""
    if job.chunk is not None:
        return _replay_chunk(job, job.chunk)
    result = LogResult(job.log, job.key)
    try:
        lines, summary = timeline_lines(Engine.load(job.vehicle, job.policy), job.log, job.probes, rules=True)
        other: list[dict[str, Any]] | None = None
        if job.compare is not None:
            other, _ = timeline_lines(Engine.load(job.vehicle, job.compare), job.log, job.probes)
    except DriveGateError as exc:
        result.error = str(exc)
        return result
    except Exception as exc:  # a worker reports every failure; the run goes on with the other logs
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    whole = Spliced(
        lines,
        summary.outcome_seconds,
        summary.frames_read,
        summary.frames_decoded,
        summary.first_time,
        summary.last_time,
        [],
        summary.log_errors,
    )
    return _finish(job, whole, other)


def _replay_chunk(job: FleetJob, spec: ChunkSpec) -> ChunkResult:
    result = ChunkResult(job.log, job.key, spec.index)
    try:
        result.runs.append(replay_chunk(Engine.load(job.vehicle, job.policy), job.log, job.probes, spec, rules=True))
        if job.compare is not None:
            result.runs.append(replay_chunk(Engine.load(job.vehicle, job.compare), job.log, job.probes, spec))
    except DriveGateError as exc:
        result.error = str(exc)
    except Exception as exc:  # as for a whole log
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def splice_chunks(job: FleetJob, parts: Sequence[ChunkResult]) -> LogResult | None:
    """The result of a log from every one of its chunks, or None where they cannot be spliced
    (replay it whole)."""
    mine = splice([part.runs[0] for part in parts])
    other = splice([part.runs[1] for part in parts]) if job.compare is not None else None
    if mine is None or (job.compare is not None and other is None):
        return None
    result = _finish(job, mine, other.lines if other is not None else None)
    result.chunks = len(parts)
    return result


def _finish(job: FleetJob, replayed: Spliced, other: list[dict[str, Any]] | None) -> LogResult:
    """A log's rows and figures from its (whole or spliced) timeline."""
    result = LogResult(job.log, job.key)
    if replayed.frames_read == 0:
        first = f": {replayed.errors[0]}" if replayed.errors else ""
        result.error = f"{job.log}: no frames read{first}"
        return result
    result.bad_lines = len(replayed.errors)
    result.first_bad_line = str(replayed.errors[0]) if replayed.errors else None
    lines = replayed.lines
    end = replayed.last_time if replayed.last_time is not None else 0.0
    result.rows = decision_rows(job.log, lines, end, other)
    result.frames_read, result.frames_decoded = replayed.frames_read, replayed.frames_decoded
    result.seconds = end - (replayed.first_time or end)
    result.outcome_seconds = replayed.outcome_seconds
    for probe in job.probes:
        held = deferrals(lines, str(probe["id"]), probe_ttl_s(probe), end)
        if held.queued:
            result.deferrals[str(probe["id"])] = {
                "queued": held.queued,
                "released": held.released,
                "expired": held.expired,
                "pending": held.pending,
            }
    for row in result.rows:
        other_outcome = row["other_outcome"]
        if other_outcome is None or other_outcome == row["outcome"]:
            continue
        span = row["end"] - row["start"]
        looser = Outcome(row["outcome"]).rank < Outcome(other_outcome).rank
        per = result.looser_seconds if looser else result.stricter_seconds
        per[row["probe"]] = per.get(row["probe"], 0.0) + span
    return result


# ---------------------------------------------------------------------- the driver
def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def job_keys(
    logs: Sequence[str], vehicle: str, policy: str, compare: str | None, probes: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The resume key of each log: a hash of the log's identity and of every input of its replay."""
    from safety import __version__

    profile = load_profile(vehicle)
    inputs = json.dumps(
        [
            _file_digest(policy),
            _file_digest(compare) if compare is not None else None,
            _file_digest(vehicle),
            _file_digest(profile.dbc_file),
            list(probes),
            __version__,
        ],
        sort_keys=True,
        default=str,
    )
    keys = []
    for log in logs:
        stat = os.stat(log) if os.path.exists(log) else None
        identity = [os.path.abspath(log), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
        keys.append(hashlib.sha256(json.dumps([identity, inputs]).encode()).hexdigest()[:32])
    return keys


def read_manifest(path: str | Path) -> list[str]:
    """The logs a manifest lists: one path per line (relative to the manifest), ``#`` comments."""
    base = Path(path).parent
    logs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            logs.append(str(base / text) if not os.path.isabs(text) else text)
    return logs


@dataclass
class FleetSummary:
    """A fleet run: what was done, skipped and failed, and the figures of every log done."""

    logs: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (log, error)
    figures: list[dict[str, Any]] = field(default_factory=list)  # of every log done (this run or before)
    compare: bool = False
    chunked: int = 0  # logs replayed this run in chunks, spliced
    unspliced: int = 0  # logs cut into chunks that never agreed: replayed whole

    def totals(self) -> dict[str, Any]:
        frames = sum(f["frames_read"] for f in self.figures)
        seconds = sum(f["seconds"] for f in self.figures)
        outcomes: dict[str, dict[str, float]] = {}
        looser: dict[str, float] = {}
        stricter: dict[str, float] = {}
        held: dict[str, dict[str, int]] = {}
        for f in self.figures:
            for probe, counts in f.get("deferrals", {}).items():  # figures of an older run may lack them
                mine_held = held.setdefault(probe, {})
                for kind, n in counts.items():
                    mine_held[kind] = mine_held.get(kind, 0) + n
            for probe, per in f["outcome_seconds"].items():
                mine = outcomes.setdefault(probe, {})
                for outcome, s in per.items():
                    mine[outcome] = mine.get(outcome, 0.0) + s
            for source, target in ((f["looser_seconds"], looser), (f["stricter_seconds"], stricter)):
                for probe, s in source.items():
                    target[probe] = target.get(probe, 0.0) + s
        return {
            "logs": self.logs,
            "replayed": self.replayed,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "frames": frames,
            "log_seconds": seconds,
            "outcome_seconds": outcomes,
            "looser_seconds": looser if self.compare else None,
            "stricter_seconds": stricter if self.compare else None,
            "deferrals": held,
            "chunked": self.chunked,
            "unspliced": self.unspliced,
            "bad_lines": sum(f.get("bad_lines", 0) for f in self.figures),  # figures of an older run may lack them
            "logs_with_bad_lines": sum(1 for f in self.figures if f.get("bad_lines")),
        }

    def format(self) -> str:
        t = self.totals()
        out = [
            f"fleet: {t['logs']} log(s): {t['replayed']} replayed, {t['skipped']} skipped (done before), "
            f"{t['failed']} failed; {t['frames']:,} frames, {t['log_seconds'] / 3600:.3f} h of log time"
        ]
        if self.chunked or self.unspliced:
            out.append(
                f"long logs: {self.chunked} replayed in chunks and spliced, "
                f"{self.unspliced} replayed whole (their chunks never agreed)"
            )
        if t["bad_lines"]:
            first = next(f["first_bad_line"] for f in self.figures if f.get("bad_lines"))
            out.append(
                f"bad lines: {t['bad_lines']:,} in {t['logs_with_bad_lines']} log(s), skipped (figures/*.json); first: {first}"
            )
        outcomes = [o.value for o in Outcome]
        header = f"{'probe':16s}" + "".join(f"{o:>10s}" for o in outcomes) + "   (hours)"
        if self.compare:
            header += f"{'looser':>10s}{'stricter':>10s}  (hours vs --compare)"
        out.append(header)
        for probe, per in t["outcome_seconds"].items():
            row = f"{probe:16s}" + "".join(f"{per.get(o, 0.0) / 3600:10.3f}" for o in outcomes)
            if self.compare:
                row += f"{'':10s}{t['looser_seconds'].get(probe, 0.0) / 3600:10.3f}{t['stricter_seconds'].get(probe, 0.0) / 3600:10.3f}"
            out.append(row)
        if t["deferrals"]:
            out.append("deferrals the queue would have held (queued: released, expired, pending at the end):")
            for probe, held in t["deferrals"].items():
                out.append(
                    f"  {probe}: {held.get('queued', 0)}: {held.get('released', 0)}, {held.get('expired', 0)}, "
                    f"{held.get('pending', 0)}"
                )
        for log, error in self.failed[:10]:
            out.append(f"failed: {log}: {error}")
        if len(self.failed) > 10:
            out.append(f"... and {len(self.failed) - 10} more failures (errors.jsonl)")
        return "\n".join(out)


def _write_part(parts: Path, result: LogResult) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("log", pa.string()),
            ("probe", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("outcome", pa.string()),
            ("rules", pa.list_(pa.string())),
            ("other_outcome", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(result.rows, schema=schema)
    figures = parts.parent / "figures" / f"{result.key}.json"
    figures.parent.mkdir(exist_ok=True)
    figures.write_text(json.dumps(result.figures()), encoding="utf-8")
    partial = parts / f".{result.key}.parquet.partial"
    pq.write_table(table, partial)
    os.replace(partial, parts / f"{result.key}.parquet")  # the part exists only once whole: done


Submit = Callable[[Sequence[FleetJob]], Iterable["LogResult | ChunkResult"]]


def run_fleet(
    jobs: Sequence[FleetJob],
    out: Path,
    submit: Submit,
    *,
    compare: bool = False,
    on_result: Callable[[LogResult], None] | None = None,
    chunking: Callable[[FleetJob], list[ChunkSpec]] | None = None,
) -> FleetSummary:
    """Run the jobs not done yet through ``submit`` (which yields results as they finish), write
    each result, and summarise every log done.  ``DIR/parts/*.parquet`` together are the rows.

    ``chunking`` plans the chunks of a log (:func:`chunk_planner`); a log of more than one is
    one task per chunk, spliced here, or replayed whole where its chunks never agree.
    """
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    summary = FleetSummary(logs=len(jobs), compare=compare)
    todo = [job for job in jobs if not (parts / f"{job.key}.parquet").exists()]
    summary.skipped = len(jobs) - len(todo)
    tasks: list[FleetJob] = []
    by_key: dict[str, FleetJob] = {}  # the jobs cut into chunks, each with its count
    for job in todo:
        specs = chunking(job) if chunking is not None else []
        if len(specs) > 1:
            by_key[job.key] = replace(job, chunks=len(specs))
            tasks += [replace(job, chunk=spec, chunks=len(specs)) for spec in specs]
        else:
            tasks.append(job)
    pieces: dict[str, list[ChunkResult]] = {}
    failed: set[str] = set()
    whole_again: list[FleetJob] = []

    def done(result: LogResult) -> None:
        if result.error is not None:
            summary.failed.append((result.log, result.error))
        else:
            _write_part(parts, result)
            summary.replayed += 1
            if result.chunks > 1:
                summary.chunked += 1
        if on_result is not None:
            on_result(result)

    for result in submit(tasks):
        if isinstance(result, LogResult):
            done(result)
            continue
        job = by_key[result.key]
        if result.key in failed:
            continue
        if result.error is not None:
            failed.add(result.key)
            done(LogResult(result.log, result.key, error=result.error))
            continue
        got = pieces.setdefault(result.key, [])
        got.append(result)
        if len(got) == job.chunks:
            spliced = splice_chunks(job, pieces.pop(result.key))
            if spliced is None:
                whole_again.append(replace(job, chunks=1))
            else:
                done(spliced)
    summary.unspliced = len(whole_again)
    for result in submit(whole_again):
        assert isinstance(result, LogResult)
        done(result)
    for job in jobs:
        figures = out / "figures" / f"{job.key}.json"
        if (parts / f"{job.key}.parquet").exists() and figures.exists():
            summary.figures.append(json.loads(figures.read_text(encoding="utf-8")))
    with (out / "errors.jsonl").open("w", encoding="utf-8") as f:
        for log, error in summary.failed:
            f.write(json.dumps({"log": log, "error": error}) + "\n")
    (out / "summary.json").write_text(json.dumps(summary.totals(), indent=2) + "\n", encoding="utf-8")
    return summary


def chunk_planner(
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overlap: int = DEFAULT_OVERLAP_FRAMES,
    every: int = DEFAULT_EVERY_FRAMES,
) -> Callable[[FleetJob], list[ChunkSpec]]:
    """Plans the chunks of a candump or BLF log of more than about ``chunk_frames`` frames (other
    formats, and compressed logs, are one task each: their frames cannot be counted cheaply)."""
    # The fewest bytes a frame takes: a candump line at least 20, a BLF frame 48 before
    # compression and more than 4 after.  A smaller file cannot hold chunk_frames frames.
    least_bytes = {"candump": 20, "blf": 4}

    def plan(job: FleetJob) -> list[ChunkSpec]:
        path = Path(job.log)
        fmt = format_from_suffix(path)
        if fmt not in least_bytes or path.suffix == ".gz":
            return []
        try:
            if path.stat().st_size <= least_bytes[fmt] * chunk_frames:
                return []
            frames = estimate_frames(path)
        except OSError:
            return []  # the task reports it
        chunks = plan_chunks(frames, chunk_frames, overlap, every)
        return chunks if len(chunks) > 1 else []

    return plan


def dask_submit(client: Any) -> Submit:
    """``submit`` for :func:`run_fleet` on a ``distributed.Client``: one task per log (or chunk),
    results as they finish."""
    from distributed import as_completed

    def submit(jobs: Sequence[FleetJob]) -> Iterable[LogResult | ChunkResult]:
        if not jobs:
            return
        futures = client.map(replay_log, list(jobs), pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()

    return submit
