#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of where DriveGate meets the world.

    pip install -e '.[fuzz]'
    python tools/fuzz.py                          # every target at its default budget
    python tools/fuzz.py frames --runs 100000     # one target
    python tools/fuzz.py --quick                  # a smoke run (CI size)

Targets (each in its own process, DriveGate's modules instrumented for coverage):

``candump``   the candump ``-L`` parser on arbitrary text (``iter_candump``, lenient mode)
``logs``      ``read_log`` on arbitrary bytes saved as every format it reads (.log, .asc, .trc,
              .csv, .blf, gzip), seeded with small real files of each written by python-can;
              ``read_columns`` (the columnar replay's reading) must give the same frames and errors
``frames``    arbitrary frame streams into ``Engine.on_frame`` (mapped and unmapped ids, 11 and
              29 bit, FD, every length 0-64, timestamps finite, NaN, ±inf, huge, backwards),
              then ``decide`` and ``state``: never an exception, always one of the four outcomes
``protocol``  arbitrary bytes into the decision service's connection (line splitting, the line
              limit, JSON, the envelope, every op), seeded with valid requests: every response
              a JSON object, never an ``internal`` error

A crash is any exception other than the documented ``LogFormatError`` of an unreadable file, an
``internal`` error line, or an input that takes longer than ``--timeout`` seconds (a hang).
libFuzzer saves the input that crashed as ``crash-*`` in the working directory.  Counts of
inputs, frames and protocol lines tried go to stdout as a Markdown table (the README's figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("candump", "logs", "frames", "protocol")
DEFAULT_RUNS = {"candump": 500_000, "logs": 100_000, "frames": 100_000, "protocol": 150_000}
QUICK_RUNS = {"candump": 2_000, "logs": 300, "frames": 500, "protocol": 1_000}
_LOG_SUFFIXES = (".log", ".asc", ".trc", ".csv", ".blf", ".log.gz", ".asc.gz", ".csv.gz")


# --------------------------------------------------------------------------- the child: one target
class Stats:
    def __init__(self, path: Path, runs: int) -> None:
        self.path, self.runs = path, runs
        self.inputs = self.frames = self.lines = self.rejected_files = 0

    def tick(self) -> None:
        self.inputs += 1
        if self.inputs % 500 == 0 or self.inputs >= self.runs:
            self.path.write_text(
                json.dumps(
                    {"inputs": self.inputs, "frames": self.frames, "lines": self.lines, "rejected": self.rejected_files}
                )
            )
        if self.inputs >= self.runs:
            # Done: leave now.  libFuzzer's own exit races its SIGALRM timeout timer on a loaded
            # machine (the process then dies of SIGALRM after finishing every run).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _seed_corpus(target: str, folder: Path) -> None:
    """Small valid inputs to start from: libFuzzer mutates them."""
    from safety.cli.gen_drive import candump_lines
    from safety.io.frame import Frame
    from safety.io.write import write_frames

    folder.mkdir(parents=True, exist_ok=True)
    lines = list(candump_lines(start_time=1_700_000_000.0, channel="can0", frames=40))
    if target == "candump":
        (folder / "drive").write_text("".join(lines))
        (folder / "fd").write_text("(1.000000) can0 123##1000102030405060708090A0B\n(1.1) can0 20000004#00\n")
    elif target == "logs":
        frames = [
            Frame(1.0 + i * 0.01, 0x0B4 if i % 2 else 0x18FEF100, bool(i % 2 == 0), bytes(range(8)), "can0")
            for i in range(6)
        ]
        for index, suffix in enumerate(_LOG_SUFFIXES):
            path = Path(tempfile.mkdtemp()) / f"seed{suffix}"
            write_frames(path, frames)
            (folder / f"seed{index}").write_bytes(bytes([index]) + path.read_bytes())
    elif target == "frames":
        (folder / "zeros").write_bytes(bytes(256))
        (folder / "ramp").write_bytes(bytes(range(256)) * 2)
    elif target == "protocol":
        from safety.replay.timeline import BUILTIN_PROBES

        decides = [
            {"v": 1, "op": "decide", "id": str(p["id"]), "request": {k: v for k, v in p.items() if k != "id"}}
            for p in BUILTIN_PROBES
        ]
        requests: list[dict[str, Any]] = [
            {"v": 1, "op": "ping", "id": 1},
            {"v": 1, "op": "state", "id": "s"},
            {"v": 1, "op": "status", "id": 2},
            {"v": 1, "op": "subscribe", "id": 3},
            {**decides[0], "explain": True},
            *decides[1:],
        ]
        for index, request in enumerate(requests):
            (folder / f"req{index}").write_bytes(json.dumps(request).encode() + b"\n")
        (folder / "many").write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in requests))


def _candump_target(stats: Stats) -> Any:
    from safety.io.candump import iter_candump

    def one(data: bytes) -> None:
        text = data.decode("latin-1")
        errors: list[Any] = []
        lines = text.splitlines(keepends=True)
        stats.lines += len(lines)
        for _ in iter_candump(lines, filename="fuzz.log", on_error=errors.append):
            stats.frames += 1
        stats.tick()

    return one


def _logs_target(stats: Stats) -> Any:
    from safety.errors import LogFormatError
    from safety.io.columns import read_columns
    from safety.io.logs import read_log

    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

    def one(data: bytes) -> None:
        if not data:
            stats.tick()
            return
        suffix = _LOG_SUFFIXES[data[0] % len(_LOG_SUFFIXES)]
        path = folder / f"input{suffix}"
        path.write_bytes(data[1:])
        errors: list[Any] = []
        try:
            frames = list(read_log(path, on_error=errors.append))
        except LogFormatError:
            stats.rejected_files += 1  # documented: a file that cannot be read at all
            stats.tick()
            return
        stats.frames += len(frames)
        # Differential: the columnar replay's reading must give the same frames and errors.
        column_errors: list[Any] = []
        columns = [f for batch in read_columns(path, on_error=column_errors.append) for f in batch.frames(range(len(batch)))]
        if columns != frames or [str(e) for e in column_errors] != [str(e) for e in errors]:
            raise AssertionError(f"read_columns differs from read_log on {suffix}")
        stats.tick()

    return one


def _frames_target(stats: Stats) -> Any:
    import math

    import atheris
    import can

    from safety import Engine, Outcome
    from safety.builtin import DEFAULT_POLICY, DEMO_VEHICLE
    from safety.replay.timeline import BUILTIN_PROBES

    mapped = [0x0B4, 0x1F5, 0x025, 0x3B3, 0x0A4, 0x0AA, 0x0C9]
    stamps = (math.nan, math.inf, -math.inf, 1e18, -1.0, 0.0)
    probes = list(BUILTIN_PROBES)

    def one(data: bytes) -> None:
        engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY) if stats.inputs % 200 == 0 else state["engine"]
        state["engine"] = engine
        fdp = atheris.FuzzedDataProvider(data)
        t = state["t"]
        while fdp.remaining_bytes() > 2:
            kind = fdp.ConsumeIntInRange(0, 15)
            extended = kind == 15
            arbitration_id = (
                fdp.ConsumeIntInRange(0, 0x1FFFFFFF if extended else 0x7FF)
                if kind >= 12
                else mapped[kind % len(mapped)]
            )
            length = fdp.ConsumeIntInRange(0, 8) if kind % 3 else fdp.PickValueInList([12, 16, 20, 24, 32, 48, 64])
            payload = fdp.ConsumeBytes(length)
            step = fdp.ConsumeIntInRange(0, 255)
            if step >= 250:
                stamp = stamps[step - 250]
            else:
                t += step / 1000.0
                stamp = t
            msg = can.Message(
                timestamp=stamp,
                arbitration_id=arbitration_id,
                is_extended_id=extended,
                data=payload,
                is_fd=length > 8,
                channel="can0",
                check=False,
            )
            engine.on_frame(msg)
            stats.frames += 1
        state["t"] = t
        now = t + 0.05
        for probe in probes[: 1 + len(data) % len(probes)]:
            decision = engine.decide(probe, now=now)
            assert isinstance(decision.outcome, Outcome), decision
        engine.state(now=now).to_dict()
        stats.tick()

    state: dict[str, Any] = {"engine": None, "t": 1000.0}
    return one


def _protocol_target(stats: Stats) -> Any:
    import asyncio

    import orjson

    from safety import Engine
    from safety.builtin import DEFAULT_POLICY, DEMO_VEHICLE
    from safety.service.server import Connection, Service, ServiceConfig

    class Capture(asyncio.Transport):
        """The connection's transport: keeps what the server writes (the harness's only stand-in)."""

        def __init__(self) -> None:
            super().__init__()
            self.written: list[bytes] = []
            self.closed = False

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.written.append(bytes(data))

        def get_write_buffer_size(self) -> int:
            return 0

        def close(self) -> None:
            self.closed = True

        def abort(self) -> None:
            self.closed = True

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

        def is_closing(self) -> bool:
            return self.closed

    engine = Engine.load(DEMO_VEHICLE, DEFAULT_POLICY)
    service = Service(engine, ServiceConfig(socket_path=Path("/nonexistent"), policy_path=DEFAULT_POLICY, rate=0.0))
    service.check_peer = lambda transport: None  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def one(data: bytes) -> None:
        transport = Capture()
        conn = Connection(service)

        async def feed() -> None:
            conn.connection_made(transport)
            # Split where the input says, as TCP may: the line buffer must not care.
            cut = data[0] if data else 0
            for chunk in (data[:cut], data[cut:]):
                if chunk:
                    conn.data_received(chunk)
            conn.connection_lost(None)

        loop.run_until_complete(feed())
        stats.lines += data.count(b"\n") + 1
        for line in b"".join(transport.written).splitlines():
            reply = orjson.loads(line)
            assert isinstance(reply, dict) and reply.get("v") == 1, reply
            error = reply.get("error") or {}
            assert error.get("code") != "internal", reply
        stats.tick()

    return one


def child(target: str, runs: int, stats_path: Path, corpus: Path, timeout: int) -> None:
    import logging

    import atheris

    logging.getLogger("can").setLevel(logging.CRITICAL)  # python-can's readers log every bad line
    stats = Stats(stats_path, runs)
    with atheris.instrument_imports(include=["safety"]):
        build = {
            "candump": _candump_target,
            "logs": _logs_target,
            "frames": _frames_target,
            "protocol": _protocol_target,
        }[target]
        one = build(stats)
    atheris.Setup(
        [sys.argv[0], f"-atheris_runs={runs}", f"-timeout={timeout}", "-rss_limit_mb=3000", "-seed=1",
         "-max_len=4096", str(corpus)],
        one,
    )  # fmt: skip
    atheris.Fuzz()


# --------------------------------------------------------------------------- the parent: every target
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Coverage-guided fuzzing of DriveGate's inputs (atheris).")
    parser.add_argument("targets", nargs="*", help=f"targets, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--runs", type=int, help="inputs per target (default: per target, see the source)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (a hang beyond)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.runs, Path(args.stats), Path(args.corpus), args.timeout)
        return 0
    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; expected {', '.join(TARGETS)}")
    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)[target]
            corpus = Path(tmp) / f"corpus-{target}"
            _seed_corpus(target, corpus)
            stats_path = Path(tmp) / f"{target}.json"
            start = time.monotonic()
            done = subprocess.run(
                [sys.executable, __file__, "--child", target, "--runs", str(runs), "--stats", str(stats_path),
                 "--corpus", str(corpus), "--timeout", str(args.timeout)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            seconds = time.monotonic() - start
            stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
            crashed = done.returncode != 0
            failed |= crashed
            if crashed:
                print(f"{target}: CRASH (exit {done.returncode})\n{done.stderr[-4000:]}", file=sys.stderr)
            rows.append((target, stats, seconds, crashed))
    print("| target | inputs | frames | protocol lines | files refused (documented) | seconds | crashes or hangs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for target, stats, seconds, crashed in rows:
        lines = stats.get("lines", 0) if target == "protocol" else 0
        print(
            f"| {target} | {stats.get('inputs', 0):,} | {stats.get('frames', 0):,} | {lines:,} | "
            f"{stats.get('rejected', 0):,} | {seconds:.0f} | {1 if crashed else 0} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
