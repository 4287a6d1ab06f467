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

import contextlib
import json
import math
import secrets
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import chart, evidence, report
from bench.load import LoadError, Window, measure_streams, measure_wrk, require_wrk
from bench.plan import (
    MAX_REQUESTS_PER_WINDOW,
    MAX_STREAMS_PER_WINDOW,
    MODEL_FOR_DELAY,
    WORKER_SCENARIO,
    Plan,
    Scenario,
    parse_args,
    scenarios,
)
from bench.procfs import tree_cpu_seconds, tree_memory
from bench.servers import (
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
# A window in which processes outside the run took this much CPU (share of one core) is flagged.
FOREIGN_CPU_NOTE = report.FOREIGN_CPU_NOTE


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
        builders = {
            "direct": lambda: direct_target({delay: self.upstream(delay) for delay in MODEL_FOR_DELAY}),
            "gateway": lambda: self._gateway("gateway", 1, models),
            "proxy": lambda: self._proxy("proxy", 1, models),
            "floor": lambda: floor_target(models=models, provider_model=self.plan.provider_model),
        }
        for key in ("direct", "gateway", "proxy", "floor"):
            if key in wanted:
                self.targets[key] = builders[key]()
        if self.plan.workers and not self.plan.soak:
            if "gateway" in wanted:
                self.targets["gateway-2w"] = self._gateway("gateway-2w", 2, models)
            if "proxy" in wanted:
                self.targets["proxy-2w"] = self._proxy("proxy-2w", 2, models)
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
            provider_model=self.plan.provider_model,
            langfuse_url=self.fakes["langfuse"].url,
            redis_url=self.plan.redis_url,
            key_prefix=self.run_id,
            sanitizer=self.plan.sanitizer,
            extra_env=self.plan.gateway_env,
        )

    def _proxy(self, key: str, workers: int, models: dict[str, str]) -> Target:
        litellm_bin = ensure_litellm_proxy(self.plan.litellm_venv, self.run_dir)  # installs on first use only
        return proxy_target(
            key=key,
            workers=workers,
            run_dir=self.run_dir,
            models=models,
            provider_model=self.plan.provider_model,
            litellm_bin=litellm_bin,
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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_JSON = {"content-type": "application/json"}


def draw_chart(results: dict[str, Any], out: Path) -> None:
    """The run's chart beside its table; a run is not lost for want of matplotlib (a dev pin)."""
    try:
        chart.draw(chart.figures_of_run(results), out)
    except ImportError as exc:
        log(f"no chart ({exc}): install requirements-dev.txt")
        return
    log(f"written {out}")


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
        problems = evidence.log_problems(run.targets)
        integrity = run.tracing_and_store()
    except (StartError, LoadError, redis.RedisError, OSError) as exc:
        log(f"bench: {exc}")
        return 2
    finally:
        run.close()
    elapsed = time.perf_counter() - run.started
    results = {
        "environment": evidence.environment(plan),
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
        results["pii_table"] = evidence.pii_table()
    text, ok = report.render(results, scenarios(plan.stream_concurrency))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = "latest-soak" if plan.soak else "latest"  # a soak run does not replace the main table
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"written {RESULTS / name}.md and {name}.json in {elapsed:.0f} s")
    if not plan.soak:
        draw_chart(results, RESULTS / f"{name}.png")
    return 0 if ok else 1
