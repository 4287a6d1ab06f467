"""What one ``/status`` poll costs, and what the store holds per log entry.

eval-protocol's ``RemoteRolloutProcessor`` polls ``GET /v1/status`` about once a second per
in-flight rollout (roughly 100 requests per second at its default concurrency), so the poll must
be cheap. This starts a Redis server of its own (so ``INFO commandstats`` counts only this run)
and the gateway as a real process (``python -m proxy_core``), then for each scenario sends a
fixed number of requests over keep-alive connections and reports, from ``/proc``, the gateway's
CPU per request and, from Redis, the commands per request:

* ``/health``: the floor (routing and the HTTP stack, no store);
* ``/v1/status`` of a rollout with a status, and of a rollout with none;
* ``POST /logs`` of a typical record (what the agent's handler sends).

Then it keeps ``--entries`` typical terminal records in one rollout and reports Redis's
``MEMORY USAGE`` of the rollout's log list per entry. Run: ``python -m bench.status_bench``
(needs ``redis-server`` on the PATH). Bounded: about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import redis

from bench.procfs import tree_cpu_seconds
from bench.servers import HOST, clean_environment, free_port, spawn, wait_healthy
from proxy_core.services.store import rollout_key

PREFIX = "statusbench"
STAMP = "2026-12-07T03:59:19.406844Z"


def terminal_record(rollout: str) -> dict[str, object]:
    """What the agent's handler posts when a rollout finishes (as captured from the real client)."""
    return {
        "program": "eval_protocol",
        "status": {"code": 100, "message": "Rollout finished", "details": []},
        "message": f"Rollout {rollout} completed",
        "tags": [f"rollout_id:{rollout}"],
        "extras": {"agent": "minimal", "logger_name": f"agent.{rollout}", "level": "INFO", "timestamp": STAMP},
    }


def redis_calls(client: redis.Redis) -> int:
    """Commands Redis has run so far, except the ``INFO`` calls this benchmark makes itself."""
    stats = client.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info")


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def drive(base_url: str, send: Send, total: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await send(http)
                assert response.status_code == 200, response.text

        share, extra = divmod(total, concurrency)
        await asyncio.gather(*(worker(share + (1 if n < extra else 0)) for n in range(concurrency)))


def measure(name: str, send: Send, base_url: str, pid: int, client: redis.Redis, args: argparse.Namespace) -> str:
    asyncio.run(drive(base_url, send, 200, args.concurrency))  # warm connections and code paths
    cpu_before, calls_before, started = tree_cpu_seconds(pid), redis_calls(client), time.perf_counter()
    asyncio.run(drive(base_url, send, args.requests, args.concurrency))
    wall = time.perf_counter() - started
    cpu_us = (tree_cpu_seconds(pid) - cpu_before) / args.requests * 1e6
    calls = (redis_calls(client) - calls_before) / args.requests
    return f"| {name} | {cpu_us:.0f} | {calls:.2f} | {args.requests / wall:.0f} |"


def bytes_per_entry(base_url: str, client: redis.Redis, entries: int) -> str:
    rollout = "bytes-per-entry"
    key = f"{rollout_key(PREFIX, '', rollout)}:logs"
    for _ in range(entries):
        response = httpx.post(f"{base_url}/logs", json=terminal_record(rollout), timeout=30)
        assert response.status_code == 200, response.text
    held = int(client.memory_usage(key, samples=0) or 0)
    sample = client.lindex(key, 0)
    entry_json = len(sample) if sample is not None else 0
    return (
        f"{entries} terminal records in one rollout: {held / entries:.0f} bytes per entry in Redis "
        f"(MEMORY USAGE of the list), of which the entry's JSON is {entry_json} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--entries", type=int, default=500)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not on the PATH")
    with tempfile.TemporaryDirectory(prefix="status-bench-") as run_dir:
        log_dir = Path(run_dir)
        redis_port, gateway_port = free_port(), free_port()
        argv = ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        store = spawn("redis", argv, clean_environment({}), log_dir)
        env = clean_environment(
            {"REDIS_URL": f"redis://{HOST}:{redis_port}/0", "REDIS_KEY_PREFIX": PREFIX, "PORT": str(gateway_port),
             "HOST": HOST, "LOG_LEVEL": "WARNING"}
        )  # fmt: skip
        gateway = spawn("gateway", [sys.executable, "-m", "proxy_core"], env, log_dir)
        try:
            base_url = f"http://{HOST}:{gateway_port}"
            wait_healthy(gateway, f"{base_url}/health", 60)
            client = redis.Redis(host=HOST, port=redis_port)
            httpx.post(f"{base_url}/logs", json=terminal_record("polled"), timeout=30).raise_for_status()
            rows = [
                measure("GET /health (floor)", lambda h: h.get("/health"), base_url, gateway.pid, client, args),
                measure(
                    "GET /v1/status, status logged",
                    lambda h: h.get("/v1/status", params={"rollout_id": "polled"}),
                    base_url,
                    gateway.pid,
                    client,
                    args,
                ),
                measure(
                    "GET /v1/status, nothing logged",
                    lambda h: h.get("/v1/status", params={"rollout_id": "unknown"}),
                    base_url,
                    gateway.pid,
                    client,
                    args,
                ),
                measure(
                    "POST /logs, one terminal record",
                    lambda h: h.post("/logs", json=terminal_record("posted")),
                    base_url,
                    gateway.pid,
                    client,
                    args,
                ),
            ]
            memory = bytes_per_entry(base_url, client, args.entries)
        finally:
            gateway.stop()
            store.stop()
    print(f"{args.requests} requests per row, {args.concurrency} connections, one worker\n")
    print(
        "| request | gateway CPU µs / request | Redis commands / request | requests / s |\n| --- | ---: | ---: | ---: |"
    )
    print("\n".join(rows))
    print(f"\n{memory}")


if __name__ == "__main__":
    main()
