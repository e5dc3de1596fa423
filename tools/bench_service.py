#!/usr/bin/env python3
"""Benchmark ``drivegate serve`` on a saturated bus: round trips, throughput, dropped frames, CPU.

    python tools/bench_service.py             # the full run (about a minute)
    python tools/bench_service.py --quick     # a short smoke run

The server is a real ``drivegate serve`` process replaying the demo drive onto its in-process
virtual bus at the frame rate of a saturated 1 Mbit/s classical CAN bus (9,009 frames/s of
11-bit, 8-byte frames): the drive log, repeated with continuing time by ``tools/gen_drive.py``,
played at ``--speed`` = target rate / the log's own rate (23.6x).  Measuring starts after one
whole pass of the drive, so the policy evaluator has seen every state cell, as in a service
that has been running.  Clients are separate processes using ``safety.client.client.Client`` (the real
client library, over the Unix socket); each call is timed alone with ``perf_counter_ns``:

1. one client, sequential decides, in ``--rounds`` rounds: p50 / p99 / p99.9 over all calls,
   and the spread of the per-round p99.  Interleaved round by round with the same library
   client without its reply spin (``spin=0``: what the spin saves), the same process's raw
   socket loop against the server (a prepared line, sendall, a blocking recv) and against a
   bare asyncio echo server (a Python server that sleeps whenever idle), so all four see the
   same state of a shared, drifting machine.  The server polls after client activity
   (``--poll-us``, default 200 µs); ``--poll-us 0`` measures it sleeping instead;
   Then the same client asking only every 20 ms (``--paced`` calls), interleaved with the echo
   server at the same pace: between calls both ends go idle, and each call pays the machine's
   wake-up from idle (on this VM the bare echo server's round trip alone is ~230 µs then);
2. 16 clients at once, each sequential: p50 / p99 and total decisions per second;
3. frames dropped: frames the player sent onto the virtual bus minus frames the engine saw,
   from ``status`` once the replay has ended (must be 0);
4. server CPU from ``/proc/<pid>/stat`` (user + system, all threads) in each phase's
   measuring windows, and with the bus alone; the machine's idle and stolen CPU meanwhile.

The server runs with ``--rate-limit 0``: the per-client limit (2,000/s by default) protects the
service, and would otherwise be what this measures.  Nothing here asserts a timing: the exit
status is 1 only when a sanity check fails (a fallback decision, dropped frames).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout, installed or not

from safety.client.client import DEFAULT_SPIN_S, Client  # noqa: E402
from safety.demo.drive import drive_duration  # noqa: E402
from safety.replay.timeline import BUILTIN_PROBES  # noqa: E402

VEHICLE = ROOT / "dbc" / "demo_sedan.yaml"
POLICY = ROOT / "policies" / "default.yaml"
BUS_RATE = 9009.0  # frames/s: 1 Mbit/s, 11-bit ids, 8 data bytes, 111 bits per frame
# The paced phase: a client asking now and then, as middleware does between bursts.
PACED_GAP_S = 0.02
DRIVE_FRAMES = 51952  # frames of one demo drive (tests/test_replay.py checks this count)
# What an assistant asks during a drive; each client cycles through them.
REQUESTS: tuple[dict[str, Any], ...] = tuple(
    {k: v for k, v in probe.items() if k != "id"}
    for probe in BUILTIN_PROBES
    if probe["id"] in ("message-text", "short-text", "video", "critical-call", "list")
)

# A client process: connects and warms up, waits for the common start time, then decides in
# `rounds` rounds of `count` calls (or `seconds` each), cycling through `modes` round by round so
# that the modes share the machine's state (it is shared and drifts): "client" is
# safety.client.client.Client; "raw" the least a client can do (a prepared line, sendall, one recv);
# "echo" the same raw loop against a bare asyncio echo server.  Prints per round its mode and
# latencies (ns), its wall-clock window, and how many fallback decisions it got, as JSON.
CLIENT = r"""
import json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from safety.client.client import Client
path, start, seconds, count, rounds = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
requests, modes, echo_path = json.loads(sys.argv[7]), sys.argv[8].split(","), sys.argv[9]
gap = float(sys.argv[10])  # seconds between calls (0: back to back)
n = len(requests)
lines = [json.dumps({"v": 1, "op": "decide", "id": 1, "request": r}).encode() + b"\n" for r in requests]
class Raw:
    rules = ()
    def __init__(self, where):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(where)
        self.i = 0
    def decide(self, request):
        self.i += 1
        self.sock.sendall(lines[self.i % n])
        self.sock.recv(65536)  # a response arrives in one piece here
        return self
clients = {}
for mode in modes:
    if mode == "client":
        clients[mode] = Client(path, timeout=1.0)
    elif mode == "client-nospin":
        clients[mode] = Client(path, timeout=1.0, spin=0.0)
    else:
        clients[mode] = Raw(path if mode == "raw" else echo_path)
    for i in range(500):  # connect and warm up
        clients[mode].decide(requests[i % n])
while time.time() < start:
    time.sleep(0.001)
clock = time.perf_counter_ns
result, fallbacks = [], 0
for r in range(rounds):
    mode = modes[r % len(modes)]
    client = clients[mode]
    began = time.time()
    lat = []
    end = time.perf_counter() + seconds
    i = 0
    while (count and i < count) or (not count and time.perf_counter() < end):
        t = clock()
        decision = client.decide(requests[i % n])
        lat.append(clock() - t)
        if decision.rules == ("client-fallback",):
            fallbacks += 1
        i += 1
        if gap:
            time.sleep(gap)
    result.append({"mode": mode, "lat": lat, "window": [began, time.time()]})
    time.sleep(0.1)
print(json.dumps({"rounds": result, "fallbacks": fallbacks}))
"""


# The machine's own floor: an asyncio echo server (no DriveGate), asked by the same raw loop.
ECHO_SERVER = r"""
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
async def main():
    await asyncio.get_running_loop().create_unix_server(Echo, sys.argv[1])
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_echo(path: Path) -> subprocess.Popen[bytes]:
    """The bare asyncio echo server of the machine baseline, listening at ``path``."""
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(path)])
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server


def machine_ticks() -> list[int]:
    """The machine's CPU time so far by kind (user, nice, system, idle, iowait, irq, softirq, steal)."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_ns: list[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in microseconds (nearest rank)."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1000.0


class Round(NamedTuple):
    mode: str
    lat: list[int]  # ns
    window: tuple[float, float]  # wall clock


def run_clients(
    socket_path: Path,
    clients: int,
    *,
    seconds: float = 0.0,
    count: int = 0,
    rounds: int = 1,
    modes: tuple[str, ...] = ("client",),
    echo: Path | None = None,
    gap: float = 0.0,
) -> tuple[list[Round], int]:
    """Start ``clients`` client processes together: every round of every client, and the
    fallbacks they got."""
    start = time.time() + 1.5 + 0.05 * clients  # time for every process to import and warm up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT,
                str(ROOT),
                str(socket_path),
                str(start),
                str(seconds),
                str(count),
                str(rounds),
                json.dumps(REQUESTS),
                ",".join(modes),
                str(echo or ""),
                str(gap),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    out: list[Round] = []
    fallbacks = 0
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        result = json.loads(stdout)
        out += [Round(r["mode"], r["lat"], (r["window"][0], r["window"][1])) for r in result["rounds"]]
        fallbacks += result["fallbacks"]
    return out, fallbacks


def pooled(rounds: list[Round], mode: str) -> list[int]:
    return sorted(ns for r in rounds if r.mode == mode for ns in r.lat)


class CpuSampler:
    """Samples a process's CPU time every 20 ms on a thread, so a phase's CPU can be cut to the
    exact windows the clients measured in (not their start-up)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.time(), cpu_seconds(self.pid)))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _at(self, t: float) -> float:
        i = bisect.bisect_left(self.samples, (t, -1.0))
        return self.samples[min(i, len(self.samples) - 1)][1]

    def percent(self, windows: list[tuple[float, float]]) -> float:
        """Server CPU, % of one core, over the union span of ``windows``."""
        began, ended = min(w[0] for w in windows), max(w[1] for w in windows)
        return 100 * (self._at(ended) - self._at(began)) / max(ended - began, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rate", type=float, default=BUS_RATE, help="bus frames per second (default 9009)")
    parser.add_argument("--single", type=int, default=5000, help="calls per round of the single client")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the single client")
    parser.add_argument("--paced", type=int, default=500, help="calls per mode of the single client asking every 20 ms")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client processes")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long the concurrent clients run")
    parser.add_argument(
        "--poll-us", type=float, default=None, help="the server's --poll-us (default: the server's default)"
    )
    args = parser.parse_args(argv)
    warmup_frames = DRIVE_FRAMES  # one pass of the drive: every state cell seen once
    if args.quick:  # CI smoke size: checks the tool works, its figures mean little
        args.single, args.rounds, args.clients, args.seconds, args.paced = 1000, 2, 4, 1.0, 40
        warmup_frames = 5000
    log_rate = DRIVE_FRAMES / drive_duration()
    speed = args.rate / log_rate
    warmup = warmup_frames / args.rate
    # Replay long enough for every phase (generous: clients take a while to start).
    # Replay long enough for every phase, client start-ups included (checked: the bus must still
    # be playing when the last phase ends).
    phases_s = 4 * 2.5 + 4 * args.rounds * (args.single / 4000 + 0.15) + args.seconds + 2 * args.paced * PACED_GAP_S
    replay_s = 3.0 + warmup + 3.0 + phases_s + (0.0 if args.quick else 10.0)
    with tempfile.TemporaryDirectory(prefix="dg-bench-") as tmp:
        tmpdir = Path(tmp)
        log = tmpdir / "drive.log"
        frames = int(replay_s * args.rate)
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "gen_drive.py"), "--out", str(log), "--frames", str(frames)],
            check=True,
        )
        socket_path = tmpdir / "drivegate.sock"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "safety.cli",
                "serve",
                "--vehicle",
                str(VEHICLE),
                "--policy",
                str(POLICY),
                "--socket",
                str(socket_path),
                "--replay",
                str(log),
                "--speed",
                f"{speed:.4f}",
                "--rate-limit",
                "0",
                *(["--poll-us", f"{args.poll_us:g}"] if args.poll_us is not None else []),
            ],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        try:
            return measure(args, server.pid, socket_path, speed, warmup_frames, tmpdir)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=10)


def measure(
    args: argparse.Namespace, pid: int, socket_path: Path, speed: float, warmup_frames: int, tmpdir: Path
) -> int:
    client = Client(socket_path, timeout=1.0)
    deadline = time.monotonic() + 30
    while True:
        try:
            status = client.status()
            break
        except Exception:
            if time.monotonic() > deadline:
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
    print(f"warming up: {warmup_frames:,} frames", file=sys.stderr)
    while status["frames_seen"] < warmup_frames:
        time.sleep(0.2)
        status = client.status()
    machine_before = machine_ticks()
    sampler = CpuSampler(pid)
    began = time.time()
    time.sleep(2.0)
    bus_only_cpu = sampler.percent([(began, time.time())])
    fps = client.status()["frames_per_s"]

    print(f"1 client: {args.rounds} rounds of {args.single} calls per mode, interleaved", file=sys.stderr)
    echo_path = tmpdir / "echo.sock"
    echo_server = start_echo(echo_path)
    try:
        modes = ("client", "client-nospin", "raw", "echo")
        rounds, single_fallbacks = run_clients(
            socket_path, 1, count=args.single, rounds=len(modes) * args.rounds, modes=modes, echo=echo_path
        )
        print(f"1 client at {1 / PACED_GAP_S:g} calls/s: {args.paced} calls per mode, interleaved", file=sys.stderr)
        paced_rounds, paced_fallbacks = run_clients(
            socket_path,
            1,
            count=args.paced // 2,
            rounds=4,
            modes=("client", "echo"),
            echo=echo_path,
            gap=PACED_GAP_S,
        )
        single_fallbacks += paced_fallbacks
    finally:
        echo_server.terminate()
        echo_server.wait()
    # The server's CPU in the library client's rounds, averaged (not the pauses between rounds).
    single_cpu = statistics.mean(sampler.percent([r.window]) for r in rounds if r.mode == "client")
    single, raw, echo = pooled(rounds, "client"), pooled(rounds, "raw"), pooled(rounds, "echo")
    nospin = pooled(rounds, "client-nospin")
    round_p99 = [percentile(sorted(r.lat), 0.99) for r in rounds if r.mode == "client"]
    single_rate = len(single) / (sum(single) / 1e9)
    paced, paced_echo = pooled(paced_rounds, "client"), pooled(paced_rounds, "echo")

    print(f"{args.clients} clients for {args.seconds:g} s", file=sys.stderr)
    many_rounds, many_fallbacks = run_clients(socket_path, args.clients, seconds=args.seconds)
    many_cpu = sampler.percent([r.window for r in many_rounds])
    many = pooled(many_rounds, "client")
    total_rate = len(many) / args.seconds
    sampler.stop()
    still_playing = not client.status()["replay"]["done"]
    if not still_playing:
        print("the replay ended before the last phase did: the log is too short", file=sys.stderr)
        still_playing = args.quick  # a smoke run checks the tool, not the figures

    spent = [after - before for before, after in zip(machine_before, machine_ticks(), strict=True)]
    share = {
        kind: 100 * ticks / max(sum(spent), 1)
        for kind, ticks in zip(
            ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), spent, strict=True
        )
    }

    # Frames dropped: wait for the replay to end, then compare what was sent with what was seen.
    print("waiting for the replay to end", file=sys.stderr)
    status = client.status()
    deadline = time.monotonic() + 120
    while not (status["replay"]["done"] and status["replay"]["backlog"] == 0) and time.monotonic() < deadline:
        time.sleep(0.2)
        status = client.status()
    sent, seen = status["replay"]["frames_sent"], status["frames_seen"]
    dropped = sent - seen
    ok = still_playing and status["replay"]["done"] and dropped == 0 and not single_fallbacks and not many_fallbacks

    p99 = percentile(single, 0.99)
    rows = [
        (
            "settings",
            f"server --poll-us {'default' if args.poll_us is None else f'{args.poll_us:g}'}; "
            f"client spin {DEFAULT_SPIN_S * 1e6:g} µs (adaptive)",
        ),
        (
            "bus replayed (1 Mbit/s saturated)",
            f"{args.rate:,.0f} frames/s target ({speed:.1f}x the demo drive); {fps:,.0f} measured",
        ),
        (
            "1 client: round trip p50 / p99 / p99.9",
            f"{percentile(single, 0.5):.0f} / {p99:.0f} / {percentile(single, 0.999):.0f} µs "
            f"({len(single):,} calls; floor p99 ≤ 200 µs)",
        ),
        (
            "1 client: p99 per round (median, min–max)",
            f"{statistics.median(round_p99):.0f} µs, {min(round_p99):.0f}–{max(round_p99):.0f} µs",
        ),
        ("1 client: decisions/s (sequential)", f"{single_rate:,.0f}"),
        (
            "1 client without the reply spin (spin=0), same rounds interleaved: p50 / p99",
            f"{percentile(nospin, 0.5):.0f} / {percentile(nospin, 0.99):.0f} µs",
        ),
        (
            "1 raw client (prepared line, sendall, recv), same rounds interleaved: p50 / p99",
            f"{percentile(raw, 0.5):.0f} / {percentile(raw, 0.99):.0f} µs",
        ),
        (
            "machine baseline: bare asyncio echo server, same raw client, interleaved: p50 / p99",
            f"{percentile(echo, 0.5):.0f} / {percentile(echo, 0.99):.0f} µs",
        ),
        (
            f"1 client at {1 / PACED_GAP_S:g} calls/s (a call every {PACED_GAP_S * 1000:g} ms): p50 / p99",
            f"{percentile(paced, 0.5):.0f} / {percentile(paced, 0.99):.0f} µs ({len(paced):,} calls)",
        ),
        (
            "echo server at the same pace, raw client, interleaved: p50 / p99",
            f"{percentile(paced_echo, 0.5):.0f} / {percentile(paced_echo, 0.99):.0f} µs",
        ),
        (
            f"{args.clients} clients: round trip p50 / p99",
            f"{percentile(many, 0.5):.0f} / {percentile(many, 0.99):.0f} µs",
        ),
        (f"{args.clients} clients: total decisions/s", f"{total_rate:,.0f} (floor ≥ 10,000)"),
        ("frames dropped (sent by the player − seen by the engine)", f"{dropped} of {sent:,} (floor 0)"),
        (
            f"server CPU: bus alone / 1 client / {args.clients} clients",
            f"{bus_only_cpu:.0f} / {single_cpu:.0f} / {many_cpu:.0f} % of one core",
        ),
        ("fallback decisions (client-fallback)", f"{single_fallbacks + many_fallbacks}"),
        (
            "machine while measuring (all CPUs)",
            f"{share['idle']:.0f} % idle, {share['steal']:.0f} % stolen by the hypervisor",
        ),
    ]
    load = os.getloadavg()[0]
    print(
        f"drivegate serve benchmark: {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, load average {load:.2f} at the end"
    )
    for name, value in rows:
        print(f"{name}: {value}")
    print()
    print("| measure | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    floors = p99 <= 200 and total_rate >= 10_000 and dropped == 0
    print(f"\nfloors met: {'yes' if floors else 'no'}")
    print(f"sanity: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
