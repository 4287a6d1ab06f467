"""Chat, Responses (plain and streamed) and embeddings: the gateway against the LiteLLM proxy and the floor.

The same processes as the main suite (``bench/run.py``): the fake provider and the Langfuse
emulator in processes of their own, the gateway as users run it (tracked route, Redis, tracing,
PII redaction on), LiteLLM's proxy in its most favourable setting and the floor app
(``bench/floor_app.py``, one SDK call per request). Each endpoint is measured on every target
with wrk at one concurrency against a 0 ms provider, in rounds whose target order rotates; the
figures are medians over rounds of requests per second and CPU per request (the server's
process tree), and the ratios the targets are held to: throughput against the proxy, CPU per
request against the proxy and the floor.

    python -m bench.endpoints_bench --rounds 2 --window 3      # about 3 minutes
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.load import Window, measure_wrk, require_wrk
from bench.servers import (
    TRACKED_PATH,
    StartError,
    Target,
    ensure_litellm_proxy,
    floor_target,
    gateway_target,
    proxy_target,
    start_fake,
)

RESULTS = Path(__file__).with_name("results")
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for health-plan claim questions."},
    {"role": "user", "content": "Summarise claim 55012, filed on 2024-03-09, for jane.doe@example.org."},
]


@dataclass(frozen=True)
class Endpoint:
    key: str
    tail: str  # the path after the prefix: ``chat/completions``, ``responses``, ``embeddings``
    body: dict[str, Any]


ENDPOINTS = [
    Endpoint("chat", "chat/completions", {"model": "fake", "messages": MESSAGES, "max_tokens": 64}),
    Endpoint("responses", "responses", {"model": "fake", "input": MESSAGES, "max_output_tokens": 64}),
    Endpoint("responses-stream", "responses", {"model": "fake", "input": MESSAGES, "stream": True}),
    Endpoint("embeddings", "embeddings", {"model": "fake", "input": [m["content"] for m in MESSAGES]}),
]


def url_of(target: Target, endpoint: Endpoint, rollout_id: str) -> str:
    """Each target's route for the endpoint: the gateway's tracked route, the others' own."""
    if target.key == "gateway":
        return target.base_url(0) + TRACKED_PATH.format(rollout_id=rollout_id).replace(
            "chat/completions", endpoint.tail
        )
    prefix = "/v1/" if target.key == "floor" else "/"
    return target.base_url(0) + prefix + endpoint.tail


def median(windows: list[Window], figure: str) -> float:
    return statistics.median(float(getattr(window, figure)) for window in windows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.endpoints_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=float, default=3.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--litellm-venv", type=Path, default=Path("/tmp/litellm-proxy-venv"))
    parser.add_argument("--provider-model", default="openai/gpt-4o-mini")
    args = parser.parse_args(argv)
    require_wrk()
    run_id = f"bench-{secrets.token_hex(4)}"
    run_dir = RESULTS / "run-endpoints"
    run_dir.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []
    try:
        upstream = start_fake("upstream", ["upstream", "--chunks", "20"], run_dir)
        langfuse = start_fake("langfuse", ["langfuse"], run_dir)
        started += [upstream, langfuse]
        models = {"fake": f"{upstream.url}/v1"}
        targets = [
            gateway_target(
                key="gateway",
                workers=1,
                run_dir=run_dir,
                models=models,
                provider_model=args.provider_model,
                langfuse_url=langfuse.url,
                redis_url=args.redis_url,
                key_prefix=run_id,
                sanitizer="redact",
                extra_env={},
            ),
            proxy_target(
                key="proxy",
                workers=1,
                run_dir=run_dir,
                models=models,
                provider_model=args.provider_model,
                litellm_bin=ensure_litellm_proxy(args.litellm_venv, run_dir),
            ),
            floor_target(models=models, provider_model=args.provider_model),
        ]
        for target in targets:
            target.start(run_dir, 120.0)
            started.append(target)
        results = measure_all(args, targets, run_dir, run_id)
    except StartError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 2
    finally:
        for item in reversed(started):
            item.stop() if isinstance(item, Target) else item.process.stop()
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{run_id}:*", count=1000))
        if keys:
            client.delete(*keys)
    print_table(results, args)
    (RESULTS / "latest-endpoints.json").write_text(json.dumps(results, indent=2))
    return 0 if all(row["errors"] == 0 for row in results) else 1


def measure_all(args: argparse.Namespace, targets: list[Target], run_dir: Path, run_id: str) -> list[dict[str, Any]]:
    windows: dict[tuple[str, str], list[Window]] = {}
    bodies = {}
    for endpoint in ENDPOINTS:
        path = run_dir / f"body-{endpoint.key}.json"
        path.write_text(json.dumps(endpoint.body))
        bodies[endpoint.key] = path
    for round_no in range(args.rounds):
        order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
        for endpoint in ENDPOINTS:
            for target in order:
                url = url_of(target, endpoint, f"{run_id}-r{round_no}-{endpoint.key}")
                header = "x-insertion-id" if target.key == "gateway" else ""
                for seconds, counted in ((args.warmup, False), (args.window, True)):
                    window = measure_wrk(
                        target.pid(0),
                        url,
                        bodies[endpoint.key],
                        concurrency=args.concurrency,
                        duration_s=seconds,
                        max_requests=200_000,
                        require_header=header,
                    )
                    if counted:
                        windows.setdefault((endpoint.key, target.key), []).append(window)
                        print(
                            f"round {round_no + 1} {endpoint.key:17} {target.key:8} {window.rps:8.1f} req/s "
                            f"{window.cpu_ms_per_request:6.2f} ms CPU/req errors={window.errors} "
                            f"{window.first_error[:80]}",
                            file=sys.stderr,
                        )
    return [
        {
            "endpoint": endpoint_key,
            "target": target_key,
            "rps": median(found, "rps"),
            "cpu_ms_per_request": median(found, "cpu_ms_per_request"),
            "errors": sum(window.errors for window in found),
        }
        for (endpoint_key, target_key), found in windows.items()
    ]


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    by = {(row["endpoint"], row["target"]): row for row in results}
    print(f"\nc={args.concurrency}, 0 ms provider, {args.rounds} rounds of {args.window:g} s, medians\n")
    print("| endpoint | gateway req/s | proxy req/s | floor req/s | gateway CPU ms/req | proxy | floor "
          "| req/s ÷ proxy | CPU ÷ proxy | CPU ÷ floor |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for endpoint in ENDPOINTS:
        gateway, proxy, floor = (by.get((endpoint.key, key)) for key in ("gateway", "proxy", "floor"))
        if gateway is None or proxy is None or floor is None:
            continue
        print(
            f"| {endpoint.key} | {gateway['rps']:.1f} | {proxy['rps']:.1f} | {floor['rps']:.1f} "
            f"| {gateway['cpu_ms_per_request']:.2f} | {proxy['cpu_ms_per_request']:.2f} "
            f"| {floor['cpu_ms_per_request']:.2f} | {gateway['rps'] / proxy['rps']:.2f}× "
            f"| {gateway['cpu_ms_per_request'] / proxy['cpu_ms_per_request']:.2f}× "
            f"| {gateway['cpu_ms_per_request'] / floor['cpu_ms_per_request']:.2f}× |"
        )


if __name__ == "__main__":
    sys.exit(main())
