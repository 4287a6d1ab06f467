"""Run the benchmark suite: start everything, measure in alternating rounds, print the table.

Modes: the default run (3 rounds of 8 s windows, about 12 minutes on 2 cores), ``--quick`` (one
round of 3 s windows, a smoke run of about 2 minutes) and ``--soak`` (the gateway's memory after
10 000 and after 50 000 requests). All targets run side by side for the whole run and are
measured one after the other, in an order that rotates each round, so slow drift of the machine
(thermal, noisy neighbours) spreads over all of them instead of favouring one; each figure is
the median over rounds. The table goes to stdout and to ``bench/results/latest.md``
(``latest-soak.md`` for ``--soak``); every window's raw figures go to ``latest.json`` beside it
and the servers' logs to ``bench/results/run-latest/`` (``run-latest-soak/``).

Exit status: 0 when every window was free of errors and every target was met, 1 otherwise,
2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import report
from bench.load import LoadError, Window, measure_streams, measure_wrk, require_wrk
from bench.procfs import tree_cpu_seconds, tree_memory
from bench.servers import (
    REPO,
    Fake,
    StartError,
    Target,
    direct_target,
    ensure_litellm_proxy,
    floor_target,
    gateway_target,
    proxy_target,
    start_fake,
    upstream_content,
)

RESULTS = Path(__file__).with_name("results")
DEFAULT_LITELLM_VENV = Path("/tmp/litellm-proxy-venv")
# The gateway's request sanitizer (PII redaction): its mode for every project, written to the
# catalogue as ``pii_defaults.mode``. Users run it on (``redact`` is the gateway's default).
SANITIZER_MODES = ("redact", "trace_only", "off")
# Requests per window are bounded by count as well as by time.
MAX_REQUESTS_PER_WINDOW = 200_000
MAX_STREAMS_PER_WINDOW = 20_000
MODEL_FOR_DELAY = {0: "fake", 50: "fake-50ms"}
# A window in which processes outside the run took this much CPU (share of one core) is flagged.
FOREIGN_CPU_NOTE = report.FOREIGN_CPU_NOTE
LOG_ERROR_MARKERS = (" ERROR ", "ERROR:", "CRITICAL")
_LOG_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T])?\d{2}:\d{2}:\d{2}([,.]\d+)?\s*(-\s*)?")
_LOG_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    concurrency: int
    delay_ms: int
    stream: bool = False


def scenarios(stream_concurrency: int) -> list[Scenario]:
    return [
        Scenario("c1-0ms", "c=1, 0 ms", 1, 0),
        Scenario("c16-0ms", "c=16, 0 ms", 16, 0),
        Scenario("c64-0ms", "c=64, 0 ms", 64, 0),
        Scenario("c16-50ms", "c=16, 50 ms", 16, 50),
        Scenario("stream", f"streams, c={stream_concurrency}, 0 ms", stream_concurrency, 0, stream=True),
    ]


WORKER_SCENARIO = Scenario("c64-0ms", "c=64, 0 ms", 64, 0)


@dataclass
class Plan:
    rounds: int
    window_s: float
    warmup_s: float
    stream_concurrency: int
    stream_chunks: int
    targets: list[str]
    workers: bool
    soak: bool
    soak_checkpoints: list[int]
    soak_targets: list[str]
    soak_max_s: float
    redis_url: str
    litellm_venv: Path
    gateway_env: dict[str, str]
    sanitizer: str
    pii_bench: bool
    startup_timeout_s: float
    mode: str
    retries: int
    disturbed_share: float


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one round of short windows (smoke run, ~2 min)")
    mode.add_argument("--soak", action="store_true", help="memory of one worker after 10 000 and 50 000 requests")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 1)")
    parser.add_argument("--window", type=float, help="seconds per measured window (default 8; --quick: 3)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each window (default 2)")
    parser.add_argument("--stream-concurrency", type=int, default=8)
    parser.add_argument("--stream-chunks", type=int, default=200, help="content chunks per streamed completion")
    parser.add_argument(
        "--targets",
        default="direct,gateway,proxy,floor",
        help="comma-separated subset of direct,gateway,proxy,floor (default: all)",
    )
    parser.add_argument("--no-workers", action="store_true", help="skip the 2-worker comparison")
    parser.add_argument("--soak-requests", default="10000,50000", help="--soak: cumulative request checkpoints")
    parser.add_argument("--soak-targets", default="gateway", help="--soak: comma-separated gateway,proxy,floor")
    parser.add_argument("--soak-max-seconds", type=float, default=600.0, help="--soak: time bound per checkpoint")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=DEFAULT_LITELLM_VENV,
        help="virtualenv for litellm[proxy], created on first use (default: %(default)s)",
    )
    parser.add_argument(
        "--sanitizer",
        choices=SANITIZER_MODES,
        default="redact",
        help="the gateway's PII mode for every project (default: %(default)s, as users run it)",
    )
    parser.add_argument(
        "--gateway-env", action="append", default=[], metavar="NAME=VALUE", help="extra gateway environment"
    )
    parser.add_argument("--no-pii-bench", action="store_true", help="do not append bench/pii_bench.py's table")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument(
        "--retries", type=int, help="times a disturbed window is measured again (default 2; --quick: 1)"
    )
    parser.add_argument(
        "--disturbed-share",
        type=float,
        default=0.25,
        help="CPU of other processes (share of one core) that makes a window disturbed (default %(default)s)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    gateway_env: dict[str, str] = {}
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--gateway-env wants NAME=VALUE, got {item!r}")
        gateway_env[name] = value
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    soak_targets = [name.strip() for name in args.soak_targets.split(",") if name.strip()]
    unknown = (set(targets) - {"direct", "gateway", "proxy", "floor"}) | (
        set(soak_targets) - {"gateway", "proxy", "floor"}
    )
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        window_s=args.window or (3.0 if quick else 8.0),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        stream_concurrency=args.stream_concurrency,
        stream_chunks=args.stream_chunks,
        targets=targets,
        workers=not args.no_workers and bool({"gateway", "proxy"} & set(targets)),
        soak=args.soak,
        soak_checkpoints=sorted(int(value) for value in args.soak_requests.split(",")),
        soak_targets=soak_targets,
        soak_max_s=args.soak_max_seconds,
        redis_url=args.redis_url,
        litellm_venv=args.litellm_venv,
        gateway_env=gateway_env,
        sanitizer=args.sanitizer,
        pii_bench=not args.no_pii_bench and not quick and not args.soak,
        startup_timeout_s=args.startup_timeout,
        mode="soak" if args.soak else ("quick" if quick else "full"),
        retries=args.retries if args.retries is not None else (1 if quick else 2),
        disturbed_share=args.disturbed_share,
    )


@dataclass
class Record:
    """One window of one target in one round."""

    round: int
    target: str
    scenario: str
    warmup: bool
    window: Window
    superseded: bool = False  # measured again because other processes disturbed it

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "target": self.target,
            "scenario": self.scenario,
            "warmup": self.warmup,
            "superseded": self.superseded,
            **self.window.as_dict(),
        }


@dataclass
class Run:
    """Everything a run started, so that it can all be stopped whatever happens."""

    plan: Plan
    run_id: str = field(default_factory=lambda: f"bench-{secrets.token_hex(4)}")
    run_dir: Path = RESULTS / "run-latest"
    fakes: dict[str, Fake] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    bodies: dict[tuple[int, bool], Path] = field(default_factory=dict)
    soak_rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ours: tuple[int, ...] = ()
    retry_budget: int = 0
    baseline_cpu: dict[str, float] = field(default_factory=dict)
    baseline_at: float = 0.0

    # --- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        require_wrk()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        redis_pid = int(redis.Redis.from_url(self.plan.redis_url, socket_timeout=2).info("server")["process_id"])
        if Path(f"/proc/{redis_pid}").exists():  # a local Redis: its CPU is the run's, not foreign
            self.ours = (redis_pid,)
        self._write_bodies()
        chunks = str(self.plan.stream_chunks)
        content = upstream_content(self.plan.stream_chunks)
        for delay in MODEL_FOR_DELAY:
            args = ["upstream", "--delay-ms", str(delay), "--chunks", chunks, "--content", content]
            self.fakes[f"upstream-{delay}ms"] = start_fake(f"upstream-{delay}ms", args, self.run_dir)
        self.fakes["langfuse"] = start_fake("langfuse", ["langfuse"], self.run_dir)
        models = {MODEL_FOR_DELAY[delay]: f"{self.upstream(delay).url}/v1" for delay in MODEL_FOR_DELAY}
        wanted = set(self.plan.soak_targets) if self.plan.soak else set(self.plan.targets)
        litellm_bin = None
        if "proxy" in wanted:
            litellm_bin = ensure_litellm_proxy(self.plan.litellm_venv, self.run_dir)
        builders = {
            "direct": lambda: direct_target({delay: self.upstream(delay) for delay in MODEL_FOR_DELAY}),
            "gateway": lambda: self._gateway("gateway", 1, models),
            "proxy": lambda: proxy_target(
                key="proxy", workers=1, run_dir=self.run_dir, models=models, litellm_bin=litellm_bin
            ),
            "floor": lambda: floor_target(models=models),
        }
        for key in ("direct", "gateway", "proxy", "floor"):
            if key in wanted:
                self.targets[key] = builders[key]()
        if self.plan.workers and not self.plan.soak:
            if "gateway" in wanted:
                self.targets["gateway-2w"] = self._gateway("gateway-2w", 2, models)
            if "proxy" in wanted and litellm_bin is not None:
                self.targets["proxy-2w"] = proxy_target(
                    key="proxy-2w", workers=2, run_dir=self.run_dir, models=models, litellm_bin=litellm_bin
                )
        for target in self.targets.values():
            self._start(target)

    def upstream(self, delay_ms: int) -> Fake:
        return self.fakes[f"upstream-{delay_ms}ms"]

    def _gateway(self, key: str, workers: int, models: dict[str, str]) -> Target:
        return gateway_target(
            key=key,
            workers=workers,
            run_dir=self.run_dir,
            models=models,
            langfuse_url=self.fakes["langfuse"].url,
            redis_url=self.plan.redis_url,
            key_prefix=self.run_id,
            sanitizer=self.plan.sanitizer,
            extra_env=self.plan.gateway_env,
        )

    def _write_bodies(self) -> None:
        for delay, model in MODEL_FOR_DELAY.items():
            for stream in (False, True):
                body: dict[str, Any] = {
                    "model": model,
                    "messages": [
                        {"role": "system", "content": "You are a concise assistant for health-plan claim questions."},
                        {
                            "role": "user",
                            "content": "Summarise claim 55012, filed on 2024-03-09 for $1,284.50 after 3 visits, "
                            "in two sentences for the member (jane.doe@example.org, (312) 555-0147).",
                        },
                    ],
                    "temperature": 0.2,
                    "max_tokens": 256,
                }
                if stream:
                    body["stream"] = True
                path = self.run_dir / f"body-{model}{'-stream' if stream else ''}.json"
                path.write_text(json.dumps(body))
                self.bodies[(delay, stream)] = path

    def _start(self, target: Target) -> None:
        log(f"starting {target.label}")
        target.start(self.run_dir, self.plan.startup_timeout_s)
        if target.is_direct:
            return
        url = target.url(0, f"{self.run_id}-startup")
        started = time.perf_counter()
        with httpx.Client(timeout=60) as client:
            answer = client.post(url, content=self.bodies[(0, False)].read_bytes(), headers=_JSON)
        target.first_request_ms = 1000 * (time.perf_counter() - started)
        target.requests_served += 1
        if answer.status_code != 200:
            raise StartError(f"{target.label}: first completion answered {answer.status_code}: {answer.text[:300]}")
        log(f"  ready in {target.startup_s:.2f} s, first completion {target.first_request_ms:.0f} ms")

    # --- measuring ------------------------------------------------------------------------------

    def side_pids(self, target: Target, delay_ms: int) -> dict[str, int]:
        pids = {"langfuse": self.fakes["langfuse"].process.pid}
        if not target.is_direct:
            pids["upstream"] = self.upstream(delay_ms).process.pid
        return pids

    def window(self, target: Target, scenario: Scenario, round_no: int, seconds: float, warmup: bool) -> Window:
        delay = scenario.delay_ms
        url = target.url(delay, f"{self.run_id}-r{round_no}-{scenario.key}-{target.key}")
        body = self.bodies[(delay, scenario.stream)]
        pid = target.pid(delay)
        if scenario.stream:
            result = measure_streams(
                pid,
                url,
                body,
                concurrency=scenario.concurrency,
                duration_s=seconds,
                max_streams=MAX_STREAMS_PER_WINDOW,
                side_pids=self.side_pids(target, delay),
                ours=self.ours,
            )
        else:
            result = measure_wrk(
                pid,
                url,
                body,
                concurrency=scenario.concurrency,
                duration_s=seconds,
                max_requests=MAX_REQUESTS_PER_WINDOW,
                require_header=target.require_header,
                side_pids=self.side_pids(target, delay),
                ours=self.ours,
            )
        target.requests_served += result.requests
        self.records.append(Record(round_no, target.key, scenario.key, warmup, result))
        return result

    def measure(self, target: Target, scenario: Scenario, round_no: int) -> None:
        """Warm up, then measure; a window that other processes disturbed is measured again.

        The machine may be shared: when processes outside the run took at least
        ``--disturbed-share`` of a core during the window, it is repeated (at most ``--retries``
        times, and at most a quarter of the run's windows in all, so the run stays bounded) and
        the least disturbed attempt counts; the others stay in the raw results.
        """
        attempts: list[Record] = []
        while True:
            if self.plan.warmup_s > 0:
                self.window(target, scenario, round_no, self.plan.warmup_s, warmup=True)
            self.window(target, scenario, round_no, self.plan.window_s, warmup=False)
            attempts.append(self.records[-1])
            share = self.records[-1].window.foreign_share
            if share < self.plan.disturbed_share:
                break
            again = len(attempts) <= self.plan.retries and self.retry_budget > 0
            log(
                f"[round {round_no}] {target.label} {scenario.label}: other processes took {share:.0%} of a core"
                + ("; measuring again" if again else "")
            )
            if not again:
                break
            self.retry_budget -= 1
        best = min(attempts, key=lambda record: record.window.foreign_share)
        for record in attempts:
            record.superseded = record is not best
        result = best.window
        line = f"[round {round_no}] {target.label:<22} {scenario.label:<24} {result.rps:8.1f} req/s"
        if scenario.stream:
            line += f"  ttfb p50 {result.ttfb_p50_ms:6.1f} ms  cpu {result.cpu_us_per_chunk:6.1f} µs/chunk"
        else:
            line += f"  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
        line += f"  cpu {result.cpu_ms_per_request:5.2f} ms/req  errors {result.errors}"
        if result.foreign_share >= FOREIGN_CPU_NOTE:
            line += f"  (other processes took {result.foreign_share:.0%} of a core)"
        log(line + (f"  first: {result.first_error[:120]}" if result.errors else ""))

    def rounds(self) -> None:
        main = [key for key in ("direct", "gateway", "proxy", "floor") if key in self.targets]
        pair = [key for key in ("gateway-2w", "proxy-2w") if key in self.targets]
        plan = scenarios(self.plan.stream_concurrency)
        self.retry_budget = math.ceil(self.plan.rounds * (len(main) * len(plan) + len(pair)) / 4)
        self.baseline_at = time.perf_counter()
        for key, target in self.targets.items():
            if not target.is_direct:
                self.baseline_cpu[key] = tree_cpu_seconds(target.pid(0))
        for round_no in range(1, self.plan.rounds + 1):
            shift = (round_no - 1) % max(1, len(main))
            for key in main[shift:] + main[:shift]:
                for scenario in plan:
                    self.measure(self.targets[key], scenario, round_no)
            for key in pair if round_no % 2 else list(reversed(pair)):
                self.measure(self.targets[key], WORKER_SCENARIO, round_no)

    def soak(self) -> None:
        scenario = Scenario("soak", "c=16, 0 ms", 16, 0)
        for key in self.plan.soak_targets:
            target = self.targets[key]
            url = target.url(0, f"{self.run_id}-soak-{key}")
            for checkpoint in self.plan.soak_checkpoints:
                wanted = checkpoint - target.requests_served
                if wanted <= 0:
                    continue
                log(f"soak {target.label}: {wanted} requests to reach {checkpoint}")
                result = measure_wrk(
                    target.pid(0),
                    url,
                    self.bodies[(0, False)],
                    concurrency=scenario.concurrency,
                    duration_s=self.plan.soak_max_s,
                    max_requests=wanted,
                    require_header=target.require_header,
                    side_pids=self.side_pids(target, 0),
                    ours=self.ours,
                )
                target.requests_served += result.requests
                self.records.append(Record(0, key, f"soak-{checkpoint}", False, result))
                memory = tree_memory(target.pid(0))
                self.soak_rows.append(
                    {
                        "target": key,
                        "label": target.label,
                        "checkpoint": checkpoint,
                        "served": target.requests_served,
                        "rps": result.rps,
                        "errors": result.errors,
                        "cpu_ms_per_request": result.cpu_ms_per_request,
                        **asdict(memory),
                    }
                )
                log(
                    f"  served {target.requests_served}: peak RSS {memory.peak_largest_mb:.1f} MB "
                    f"(current {memory.current_largest_mb:.1f}), {result.rps:.0f} req/s, errors {result.errors}"
                )

    # --- after the load -------------------------------------------------------------------------

    def memory(self) -> dict[str, dict[str, Any]]:
        found = {}
        for key, target in self.targets.items():
            if not target.is_direct:
                found[key] = {**asdict(tree_memory(target.pid(0))), "requests_served": target.requests_served}
        return found

    def background_cpu(self) -> dict[str, float]:
        """Each server's CPU outside its own windows, per second of that time (share of one core).

        All servers run for the whole run; one that keeps busy while idle (timers, pollers)
        takes CPU from whichever target is being measured, so this is reported next to the figures.
        """
        shares = {}
        elapsed = time.perf_counter() - self.baseline_at
        for key, before in self.baseline_cpu.items():
            own = [record.window for record in self.records if record.target == key]
            idle_s = elapsed - sum(window.seconds for window in own)
            busy = tree_cpu_seconds(self.targets[key].pid(0)) - before - sum(window.cpu_s for window in own)
            if idle_s > 1:
                shares[key] = max(busy, 0.0) / idle_s
        return shares

    def log_problems(self) -> dict[str, dict[str, Any]]:
        """Error and warning records of each server's log, grouped by message (evidence, not figures)."""
        problems = {}
        for key, target in self.targets.items():
            if target.process is None:
                continue
            lines = target.process.log_path.read_text(errors="replace").splitlines()
            kinds: Counter[str] = Counter()
            warnings: Counter[str] = Counter()
            for line in lines:
                if any(marker in line for marker in LOG_ERROR_MARKERS):
                    kinds[_message(line)] += 1
                elif "WARNING" in line:
                    warnings[_message(line)] += 1
            problems[key] = {
                "lines": len(lines),
                "errors": sum(kinds.values()),
                "tracebacks": sum("Traceback (most recent call last)" in line for line in lines),
                "warnings": sum(warnings.values()),
                "error_kinds": kinds.most_common(5),
                "warning_kinds": warnings.most_common(3),
                "log": str(target.process.log_path.relative_to(REPO)),
            }
        return problems

    def stop_servers(self) -> None:
        for target in self.targets.values():
            target.stop()

    def tracing_and_store(self) -> dict[str, Any]:
        """Spans the emulator received and insertion ids Redis holds, against gateway completions."""
        completions = sum(self.targets[key].requests_served for key in ("gateway", "gateway-2w") if key in self.targets)
        found: dict[str, Any] = {"gateway_completions": completions}
        if "langfuse" in self.fakes and self.fakes["langfuse"].process.alive():
            with contextlib.suppress(httpx.HTTPError):
                stats = httpx.get(f"{self.fakes['langfuse'].url}/bench/stats", timeout=5).json()
                found["spans_received"] = stats["spans_total"]
        found["insertion_ids_recorded"] = self.cleanup_redis()
        return found

    def cleanup_redis(self) -> int:
        """Delete every key of this run; returns how many insertion ids they held."""
        client = redis.Redis.from_url(self.plan.redis_url, socket_timeout=5)
        recorded = 0
        for key in list(client.scan_iter(match=f"{self.run_id}:*", count=1000)):
            if client.type(key) == b"set":
                recorded += int(client.scard(key))
            client.delete(key)
        return recorded

    def close(self) -> None:
        self.stop_servers()
        for fake in self.fakes.values():
            fake.process.stop()
        with contextlib.suppress(redis.RedisError):
            self.cleanup_redis()


def _message(line: str) -> str:
    """A log line without its timestamp and ids, so that repeats of one event group together."""
    return _LOG_IDS.sub("<id>", _LOG_PREFIX.sub("", line.strip()))[:200]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_JSON = {"content-type": "application/json"}


def pii_table() -> str | None:
    """The PII redaction micro-benchmark's own table (``bench/pii_bench.py``), if it runs."""
    script = Path(__file__).with_name("pii_bench.py")
    if not script.exists():
        return None
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, timeout=300)
    return result.stdout.strip() or None


def environment(plan: Plan) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": plan.mode,
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "litellm": metadata.version("litellm"),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "wrk",
        "sanitizer": f"{plan.sanitizer} (pii_defaults.mode)",
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_gateway_files": len(_git("status", "--porcelain", "proxy_core").splitlines()),
        "plan": {key: str(value) for key, value in asdict(plan).items()},
    }


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=False)
    return result.stdout.strip()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(plan, run_dir=RESULTS / ("run-latest-soak" if plan.soak else "run-latest"))
    try:
        run.setup()
        if plan.soak:
            run.soak()
        else:
            run.rounds()
        memory = run.memory()
        background = run.background_cpu()
        run.stop_servers()  # flushes the gateway's queued traces before they are counted
        problems = run.log_problems()
        integrity = run.tracing_and_store()
    except (StartError, LoadError, redis.RedisError, OSError) as exc:
        log(f"bench: {exc}")
        return 2
    finally:
        run.close()
    elapsed = time.perf_counter() - run.started
    results = {
        "environment": environment(plan),
        "elapsed_s": elapsed,
        "targets": {
            key: {
                "label": target.label,
                "startup_s": target.startup_s,
                "first_request_ms": target.first_request_ms,
                "requests_served": target.requests_served,
            }
            for key, target in run.targets.items()
        },
        "memory": memory,
        "background_cpu": background,
        "soak": run.soak_rows,
        "integrity": integrity,
        "log_problems": problems,
        "windows": [record.as_dict() for record in run.records],
    }
    if plan.pii_bench:
        results["pii_table"] = pii_table()
    text, ok = report.render(results, scenarios(plan.stream_concurrency))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = "latest-soak" if plan.soak else "latest"  # a soak run does not replace the main table
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"written {RESULTS / name}.md and {name}.json in {elapsed:.0f} s")
    return 0 if ok else 1
