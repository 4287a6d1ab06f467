"""Load generation and the per-window figures: wrk for plain completions, an asyncio client for streams.

Every window is bounded twice, by time (``duration_s``) and by count (``max_requests``), and
its server CPU is the difference of the process tree's CPU time read just before and just
after it, so the CPU per request is exact for the requests the window completed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procfs import machine_cpu_seconds, tree_cpu_seconds
from bench.servers import REPO

LUA_SCRIPT = Path(__file__).with_name("chat.lua")


class LoadError(RuntimeError):
    """The load generator itself failed (not the server under test)."""


@dataclass
class Window:
    """What one measured window produced."""

    requests: int
    seconds: float
    cpu_s: float
    errors: int
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    first_error: str = ""
    side_cpu_s: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    ttfb_p50_ms: float = 0.0
    ttfb_p99_ms: float = 0.0
    foreign_cpu_s: float = 0.0
    steal_s: float = 0.0

    @property
    def foreign_share(self) -> float:
        """CPU other processes on the machine took during the window, as a share of one core."""
        return self.foreign_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else 0.0

    @property
    def cpu_us_per_chunk(self) -> float:
        return 1e6 * self.cpu_s / self.chunks if self.chunks else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        doc = dict(vars(self))
        doc.update(rps=self.rps, cpu_ms_per_request=self.cpu_ms_per_request, foreign_share=self.foreign_share)
        if self.chunks:
            doc.update(cpu_us_per_chunk=self.cpu_us_per_chunk, chunks_per_s=self.chunks_per_s)
        return doc


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed: apt-get install wrk (Debian) or see bench/README.md")
    return path


def run_wrk(
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int = 0,
    require_header: str = "",
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """One wrk run (one thread: it needs far less CPU than any server here); its JSON summary."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        done_file = Path(scratch) / "done"
        env = dict(os.environ)
        env.update(
            BENCH_BODY_FILE=str(body_file),
            BENCH_MAX_REQUESTS=str(max_requests),
            BENCH_REQUIRE_HEADER=require_header,
            BENCH_DONE_FILE=str(done_file),
        )
        seconds = max(1, round(duration_s))
        argv = [require_wrk(), "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={timeout_s:.0f}s"]
        argv += ["-s", str(LUA_SCRIPT), url]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as wrk:
            deadline = time.monotonic() + seconds + timeout_s + 30
            while wrk.poll() is None and time.monotonic() < deadline:
                if done_file.exists():
                    wrk.send_signal(signal.SIGINT)  # count reached: report now, not at the end of -d
                    break
                time.sleep(0.02)
            try:
                stdout, stderr = wrk.communicate(timeout=max(5.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                wrk.kill()
                stdout, stderr = wrk.communicate()
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            summary: dict[str, Any] = json.loads(line)
            return summary
    raise LoadError(f"wrk gave no summary (exit {wrk.returncode}): {stderr.strip()[:500]}")


def run_streams(
    url: str, body_file: Path, *, concurrency: int, duration_s: float, max_streams: int, timeout_s: float = 30.0
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.stream_client", url, "--body-file", str(body_file)]
    argv += [f"--concurrency={concurrency}", f"--duration={duration_s}", f"--max-streams={max_streams}"]
    argv += [f"--timeout={timeout_s}"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=duration_s + 2 * timeout_s + 30)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            summary: dict[str, Any] = json.loads(line)
            return summary
    raise LoadError(f"stream client failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


@dataclass
class Probe:
    """CPU counters read before and after a window: the target's tree, the fakes, the machine.

    ``ours`` are the process trees that belong to the run (this process with every server, fake
    and load generator it started, and Redis); whatever else the machine spent meanwhile was
    taken by other processes and is reported as foreign CPU.
    """

    pid: int
    side_pids: dict[str, int]
    ours: tuple[int, ...]
    target: float = 0.0
    side: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)
    own: float = 0.0

    def read(self) -> Probe:
        self.machine = machine_cpu_seconds()
        self.target = tree_cpu_seconds(self.pid)
        self.side = {name: tree_cpu_seconds(pid) for name, pid in self.side_pids.items()}
        self.own = sum(tree_cpu_seconds(pid) for pid in self.ours)
        return self

    def fill(self, window: Window, before: Probe) -> Window:
        window.cpu_s = self.target - before.target
        window.side_cpu_s = {name: self.side[name] - before.side[name] for name in self.side}
        busy = self.machine[0] - before.machine[0]
        window.foreign_cpu_s = max(0.0, busy - (self.own - before.own))
        window.steal_s = self.machine[1] - before.machine[1]
        return window


def _probe(pid: int, side_pids: dict[str, int] | None, ours: tuple[int, ...]) -> Probe:
    return Probe(pid, side_pids or {}, (os.getpid(), *ours)).read()


def measure_wrk(
    pid: int,
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    require_header: str = "",
    side_pids: dict[str, int] | None = None,
    ours: tuple[int, ...] = (),
) -> Window:
    """A wrk window with the CPU of ``pid``'s tree (and of ``side_pids``, for context) around it."""
    before = _probe(pid, side_pids, ours)
    started = time.perf_counter()
    summary = run_wrk(
        url,
        body_file,
        concurrency=concurrency,
        duration_s=duration_s,
        max_requests=max_requests,
        require_header=require_header,
    )
    wall = time.perf_counter() - started
    after = _probe(pid, side_pids, ours)
    errors = sum(
        int(summary[key])
        for key in ("connect_errors", "read_errors", "write_errors", "timeouts", "bad_status", "missing_header")
    )
    window = Window(
        requests=int(summary["requests"]),
        seconds=summary["duration_us"] / 1e6 or wall,
        cpu_s=0.0,
        errors=errors,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        first_error=summary.get("first_bad") or ("" if not errors else json.dumps(summary)),
    )
    return after.fill(window, before)


def measure_streams(
    pid: int,
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    duration_s: float,
    max_streams: int,
    side_pids: dict[str, int] | None = None,
    ours: tuple[int, ...] = (),
) -> Window:
    """A streaming window; every stream started in it has finished when the CPU is read again."""
    before = _probe(pid, side_pids, ours)
    summary = run_streams(url, body_file, concurrency=concurrency, duration_s=duration_s, max_streams=max_streams)
    after = _probe(pid, side_pids, ours)
    window = Window(
        requests=int(summary["streams"]),
        seconds=float(summary["elapsed_s"]),
        cpu_s=0.0,
        errors=int(summary["errors"]),
        p50_ms=float(summary["stream_p50_ms"]),
        p99_ms=float(summary["stream_p99_ms"]),
        first_error=str(summary["first_error"]),
        chunks=int(summary["chunks"]),
        ttfb_p50_ms=float(summary["ttfb_p50_ms"]),
        ttfb_p99_ms=float(summary["ttfb_p99_ms"]),
    )
    return after.fill(window, before)
