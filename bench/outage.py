"""A Langfuse outage at a fixed request rate: nothing acknowledged may be lost.

    python -m bench.outage            # 5 minutes of outage at 100 tracked completions a second
    python -m bench.outage --quick    # 30 s at 50 a second

The gateway (``python -m proxy_core``, one worker, Redis on 127.0.0.1:6379 under a prefix of the
run's own) serves tracked completions from the fake provider and traces them to the Langfuse
emulator, each in a process of its own. After a warm-up the emulator is killed (SIGKILL:
connections refused), the traffic goes on for the outage, then the emulator is started again at
the same address. The emulator appends every insertion id it receives to a file, so what arrived
is counted across its restart. Reported: requests, acknowledged (200 with an insertion id),
delivered, lost (acknowledged and never delivered: must be 0), the spool's peak, what the
gateway counted (exported, spooled, replayed, dropped), and the time from Langfuse answering
again to the last acknowledged trace arriving (target: under 2 minutes for the full run).
Results go to ``bench/results/outage-latest.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench.servers import HOST, REPO, Fake, StartError, gateway_target, start_fake

RESULTS = REPO / "bench" / "results"
RECOVERY_TARGET_S = 120.0
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Outcome:
    requests: int = 0
    acknowledged: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)

    def merge(self, other: Outcome) -> None:
        self.requests += other.requests
        self.acknowledged |= other.acknowledged
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


# Load generators, each a process of its own: one Python client process tops out well below
# 100 requests a second on a shared 2-core machine.
DRIVERS = 4


async def _drive(url: str, rate: float, seconds: float) -> Outcome:
    """``rate`` tracked completions a second for ``seconds``, paced; what each was answered."""
    outcome = Outcome()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(n: int) -> None:
            body = {"model": "bench", "messages": [{"role": "user", "content": f"question {n}"}]}
            try:
                response = await client.post(url, json=body)
                status = response.status_code
            except httpx.HTTPError:
                status, response = 0, None
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if status == 200 and response is not None:
                outcome.acknowledged.add(response.headers["x-insertion-id"])

        pending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            task = asyncio.create_task(one(outcome.requests))
            pending.add(task)
            task.add_done_callback(pending.discard)
            outcome.requests += 1
            await asyncio.sleep(max(0.0, started + outcome.requests / rate - time.monotonic()))
        await asyncio.gather(*pending)
    return outcome


def _drive_in_process(url: str, rate: float, seconds: float) -> Outcome:
    return asyncio.run(_drive(url, rate, seconds))


def drive(url: str, rate: float, seconds: float, ready_url: str, samples: list[int] | None = None) -> Outcome:
    """The traffic, split over ``DRIVERS`` processes; the spool's depth sampled every second."""
    outcome = Outcome()
    with ProcessPoolExecutor(max_workers=DRIVERS) as pool:
        futures = [pool.submit(_drive_in_process, url, rate / DRIVERS, seconds) for _ in range(DRIVERS)]
        while not all(future.done() for future in futures):
            time.sleep(1)
            if samples is not None:
                project = httpx.get(ready_url, timeout=10).json()["tracing"]["projects"].get("bench", {})
                samples.append(project.get("spool", {}).get("spans", 0))
        for future in futures:
            outcome.merge(future.result())
    return outcome


def delivered(id_log: Path) -> set[str]:
    return set(id_log.read_text().split()) if id_log.exists() else set()


def start_langfuse(run_dir: Path, id_log: Path, port: int = 0) -> Fake:
    return start_fake("langfuse", ["langfuse", "--id-log", str(id_log), "--keep-spans", "1000000"], run_dir, port=port)


def run(minutes: float, rate: float, warmup_s: float, run_dir: Path) -> dict[str, object]:
    id_log = run_dir / "delivered-ids.txt"
    upstream = start_fake("upstream", ["upstream"], run_dir)
    langfuse = start_langfuse(run_dir, id_log)
    prefix = f"bench-outage-{uuid.uuid4().hex[:8]}"
    gateway = gateway_target(
        key="gateway", workers=1, run_dir=run_dir, models={"bench": f"{upstream.url}/v1"},
        provider_model="openai/gpt-4o-mini", langfuse_url=langfuse.url, redis_url=REDIS_URL,
        key_prefix=prefix, sanitizer="redact", extra_env={},
    )  # fmt: skip
    gateway.start(run_dir, timeout_s=120)
    url, ready_url = gateway.url(0, f"outage-{prefix}"), f"http://{HOST}:{gateway.port}/ready"
    samples: list[int] = []
    try:
        warm = drive(url, rate, warmup_s, ready_url)
        langfuse.process.popen.kill()
        langfuse.process.popen.wait()
        during = drive(url, rate, minutes * 60, ready_url, samples)
        langfuse = start_langfuse(run_dir, id_log, port=langfuse.port)
        recovered = time.monotonic()
        acknowledged = warm.acknowledged | during.acknowledged
        while not acknowledged <= delivered(id_log) and time.monotonic() - recovered < 600:
            time.sleep(0.5)
        recovery_s = time.monotonic() - recovered
        counts = httpx.get(ready_url, timeout=10).json()["spans"]
    finally:
        gateway.stop()
        langfuse.process.stop()
        upstream.process.stop()
        with redis.Redis.from_url(REDIS_URL) as client:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)
    lost = acknowledged - delivered(id_log)
    return {
        "outage_s": minutes * 60,
        "rate_per_s": rate,
        "requests": warm.requests + during.requests,
        "achieved_rate_per_s": round(during.requests / (minutes * 60), 1),
        "acknowledged": len(acknowledged),
        "ok_share_during_outage": round(during.statuses.get(200, 0) / max(1, during.requests), 4),
        "statuses_during_outage": during.statuses,
        "delivered": len(acknowledged) - len(lost),
        "lost": len(lost),
        "spool_peak_spans": max(samples, default=0),
        "gateway_counts": counts,
        "recovery_to_last_delivery_s": round(recovery_s, 1),
    }


def report(result: dict[str, object]) -> str:
    lines = ["# Langfuse outage", "", "| figure | value |", "|---|---:|"]
    lines += [f"| {key} | {value} |" for key, value in result.items() if key != "gateway_counts"]
    counts = result["gateway_counts"]
    assert isinstance(counts, dict)
    lines += [f"| gateway: {key} | {value} |" for key, value in counts.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s of outage at 50 req/s")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 5.0)
    rate = args.rate if args.rate is not None else (50.0 if args.quick else 100.0)
    run_dir = RESULTS / "run-outage"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(minutes, rate, warmup_s=5.0, run_dir=run_dir)
    except StartError as exc:
        print(exc, file=sys.stderr)
        return 2
    table = report(result)
    print(table)
    (RESULTS / "outage-latest.md").write_text(table)
    (RESULTS / "outage-latest.json").write_text(json.dumps(result, indent=2))
    met = result["lost"] == 0 and recovery_s(result) < RECOVERY_TARGET_S
    return 0 if met else 1


def recovery_s(result: dict[str, object]) -> float:
    value = result["recovery_to_last_delivery_s"]
    assert isinstance(value, float)
    return value


if __name__ == "__main__":
    sys.exit(main())
