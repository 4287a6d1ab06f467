"""What the Redis Cluster client costs: gateway throughput per process on a 3-master cluster against one Redis.

Three configurations of the gateway as users run it (``python -m proxy_core``, the tracked route,
tracing to the Langfuse emulator, PII redaction on), each over its own Redis started here:

* ``single``: one gateway process on one ``redis-server``;
* ``cluster ×1``: one gateway process with ``REDIS_MODE=cluster`` on a 3-master cluster (the
  client's own cost, with nothing else changed);
* ``cluster ×2``: two gateway processes on that cluster, loaded at the same time (per-process
  figures; on a 2-core machine they also compete with each other for CPU).

Each round measures the three in a rotating order, each window after an unmeasured warm-up; the
figures are medians over rounds: requests a second per process, gateway CPU per request, p50.
Target: cluster throughput per process within 10 % of the single node's. On a shared machine the
other processes' CPU (reported) moves throughput more than Redis does, so the run first measures
the client alone too: CPU per insertion-id record through the rollout store, 16 at a time, on each
topology, in alternating rounds in this process.

Run: ``python -m bench.redis_bench [--rounds 3] [--seconds 8] [--concurrency 16]`` from the
repository root (needs ``redis-server``, ``redis-cli`` and ``wrk``). About two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.load import Window, measure_wrk, require_wrk
from bench.servers import REPO, Target, gateway_target, start_fake, upstream_content
from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.adapters.redis_store import RedisRolloutStore
from proxy_core.redis_options import RedisMode, RedisOptions
from tests.redis_servers import RedisServer, redis_cluster, running

MODEL = "bench-0ms"
RESULTS = REPO / "bench" / "results"
TARGET_RATIO = 0.90


def _body(run_dir: Path) -> Path:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for health-plan claim questions."},
            {"role": "user", "content": "Summarise claim 55012, filed on 2024-03-09, for jane.doe@example.org."},
        ],
        "max_tokens": 64,
    }
    path = run_dir / "body.json"
    path.write_text(json.dumps(body))
    return path


class Run:
    def __init__(self, args: argparse.Namespace, run_dir: Path, stack: ExitStack) -> None:
        self.args = args
        self.run_dir = run_dir
        self.stack = stack
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.body = _body(run_dir)
        self.windows: dict[str, list[list[Window]]] = {"single": [], "cluster ×1": [], "cluster ×2": []}

    def gateway(self, key: str, redis_url: str, mode: str, models: dict[str, str], langfuse_url: str) -> Target:
        target = gateway_target(
            key=key,
            workers=1,
            run_dir=self.run_dir,
            models=models,
            provider_model="openai/gpt-4o-mini",
            langfuse_url=langfuse_url,
            redis_url=redis_url,
            key_prefix=self.prefix,
            sanitizer="redact",
            extra_env={"REDIS_MODE": mode},
        )
        target.start(self.run_dir, 120)
        self.stack.callback(target.stop)
        return target

    def window(self, targets: list[Target], seconds: float) -> list[Window]:
        """Load every target at once (one wrk each) for ``seconds``; their windows."""
        results: list[Window | None] = [None] * len(targets)

        def load(index: int, target: Target) -> None:
            results[index] = measure_wrk(
                target.pid(0),
                target.url(0, f"{self.prefix}-{target.key}-{uuid.uuid4().hex[:6]}"),
                self.body,
                concurrency=self.args.concurrency,
                duration_s=seconds,
                max_requests=0,
                require_header=target.require_header,
            )

        threads = [threading.Thread(target=load, args=(n, t)) for n, t in enumerate(targets)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [window for window in results if window is not None]

    def measure(self, name: str, targets: list[Target]) -> None:
        self.window(targets, 2)  # warm-up
        windows = self.window(targets, self.args.seconds)
        self.windows[name].append(windows)
        errors = sum(w.errors for w in windows)
        rps = ", ".join(f"{w.rps:.0f}" for w in windows)
        print(f"  {name:<11} rps per process {rps}  errors {errors}", flush=True)


async def _record_cost(url: str, mode: RedisMode, records: int = 4000, concurrency: int = 16) -> float:
    """Microseconds of this process's CPU per ``RedisRolloutStore.record`` on ``mode``."""
    connection = RedisConnection(RedisOptions(mode=mode, url=url))
    store = RedisRolloutStore(connection, prefix=f"bench-{uuid.uuid4().hex[:8]}", ttl_s=60)
    try:
        await store.record("p", "warm-up", "id")

        async def writer(n: int) -> None:
            for i in range(records // concurrency):
                await store.record("p", f"rollout-{n}", f"id-{i}")

        started = time.process_time()
        await asyncio.gather(*(writer(n) for n in range(concurrency)))
        return 1e6 * (time.process_time() - started) / records
    finally:
        await connection.aclose()


def client_cost(single_url: str, cluster_url: str, rounds: int) -> dict[str, float]:
    costs: dict[str, list[float]] = {"standalone": [], "cluster": []}
    for _ in range(rounds):
        costs["standalone"].append(asyncio.run(_record_cost(single_url, "standalone")))
        costs["cluster"].append(asyncio.run(_record_cost(cluster_url, "cluster")))
    return {mode: _median(values) for mode, values in costs.items()}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(run: Run) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name, rounds in run.windows.items():
        per_process = [w for windows in rounds for w in windows]
        table[name] = {
            "rps_per_process": _median([w.rps for w in per_process]),
            "cpu_ms_per_request": _median([w.cpu_ms_per_request for w in per_process]),
            "p50_ms": _median([w.p50_ms for w in per_process]),
            "errors": float(sum(w.errors for w in per_process)),
            "foreign_cpu_share": _median([w.foreign_share for w in per_process]),
        }
    return table


def report(table: dict[str, dict[str, float]]) -> tuple[str, bool]:
    base = table["single"]
    lines = [
        "| configuration | req/s per process | vs single | gateway CPU ms/req | p50 ms | errors | other CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    ok = True
    for name, row in table.items():
        ratio = row["rps_per_process"] / base["rps_per_process"] if base["rps_per_process"] else 0.0
        if name != "single" and ratio < TARGET_RATIO:
            ok = False
        ok = ok and row["errors"] == 0
        lines.append(
            f"| {name} | {row['rps_per_process']:.0f} | {ratio:.2f} | {row['cpu_ms_per_request']:.2f} | "
            f"{row['p50_ms']:.1f} | {row['errors']:.0f} | {row['foreign_cpu_share']:.2f} cores |"
        )
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16, help="connections per gateway process")
    args = parser.parse_args(argv)
    require_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as scratch, ExitStack() as stack:
        run_dir = Path(scratch)
        run = Run(args, run_dir, stack)
        upstream = start_fake("upstream", ["upstream", "--delay-ms", "0", "--content", upstream_content(20)], run_dir)
        stack.callback(upstream.process.stop)
        langfuse = start_fake("langfuse", ["langfuse"], run_dir)
        stack.callback(langfuse.process.stop)
        (single,) = stack.enter_context(running(RedisServer(run_dir / "single")))
        cluster = stack.enter_context(redis_cluster(run_dir / "cluster"))
        cost = client_cost(single.url, cluster.url, max(3, args.rounds))
        print(f"CPU per record: {cost['standalone']:.0f} µs on one Redis, {cost['cluster']:.0f} µs on the cluster")
        models = {MODEL: f"{upstream.url}/v1"}
        print("starting three gateways", flush=True)
        alone = run.gateway("single", single.url, "standalone", models, langfuse.url)
        first = run.gateway("cluster-a", cluster.url, "cluster", models, langfuse.url)
        second = run.gateway("cluster-b", cluster.url, "cluster", models, langfuse.url)
        plans: list[tuple[str, Callable[[], None]]] = [
            ("single", lambda: run.measure("single", [alone])),
            ("cluster ×1", lambda: run.measure("cluster ×1", [first])),
            ("cluster ×2", lambda: run.measure("cluster ×2", [first, second])),
        ]
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", flush=True)
            for _, measure in plans[round_no % 3 :] + plans[: round_no % 3]:
                measure()
        table = summarise(run)
    text, ok = report(table)
    text = (
        f"Rollout-store client alone, CPU per record: {cost['standalone']:.0f} µs on one Redis, "
        f"{cost['cluster']:.0f} µs on the cluster ({cost['cluster'] / cost['standalone']:.2f}×).\n\n{text}"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M")
    header = f"Redis Cluster vs one Redis ({stamp}; {args.rounds} rounds of {args.seconds:.0f} s, c={args.concurrency})"
    (RESULTS / "redis-latest.md").write_text(f"{header}\n\n{text}\n")
    (RESULTS / "redis-latest.json").write_text(json.dumps({"client_us": cost, "gateways": table}, indent=2) + "\n")
    print(f"\n{header}\n\n{text}\n\n{'target met' if ok else 'target missed'}: cluster ≥ {TARGET_RATIO:.0%} of single")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
