"""What a fallback costs: latency of a call whose first deployment fails, against a direct call.

A real gateway (uvicorn) routes ``primary`` (a provider answering 500 at once) to ``backup``
through LiteLLM's Router, and serves ``backup`` directly. The difference of the medians is the
price of a failed attempt plus the fallback machinery; the provider itself answers in ~0 ms.

Run: ``python bench/fallback_bench.py`` (Redis on 127.0.0.1:6379). Bounded: a few seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from proxy_core.app import create_app
from proxy_core.config_files import ModelCatalog
from proxy_core.settings import Settings
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app


def catalog(ok: str, broken: str) -> ModelCatalog:
    def deployment(name: str, base: str) -> dict[str, object]:
        return {
            "model_name": name,
            "litellm_params": {"model": "openai/fake", "api_base": f"{base}/v1", "api_key": "k"},
        }

    return ModelCatalog.model_validate(
        {
            "model_list": [deployment("primary", broken), deployment("backup", ok), deployment("direct", ok)],
            "router_settings": {"fallbacks": [{"primary": ["backup"]}], "num_retries": 0},
        }
    )


def timings(client: httpx.Client, model: str, count: int) -> list[float]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:200]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    ok_state, broken_state = UpstreamState(record_requests=False), UpstreamState(default_status=500)
    with (
        ServerThread(create_upstream_app(ok_state)) as ok,
        ServerThread(create_upstream_app(broken_state)) as broken,
    ):
        settings = Settings(catalog=catalog(ok.url, broken.url), redis_key_prefix=f"bench-{uuid.uuid4().hex[:6]}")
        with (
            ServerThread(create_app(settings), loop="asyncio") as gateway,
            httpx.Client(base_url=gateway.url, headers={"authorization": "Bearer k"}, timeout=30) as client,
        ):
            timings(client, "direct", 20)
            timings(client, "primary", 20)  # warm both paths
            direct = timings(client, "direct", args.count)
            fallback = timings(client, "primary", args.count)
    d50, f50 = statistics.median(direct), statistics.median(fallback)
    d99 = statistics.quantiles(direct, n=100)[98]
    f99 = statistics.quantiles(fallback, n=100)[98]
    print("| path | p50 ms | p99 ms |\n| --- | --- | --- |")
    print(f"| direct deployment | {d50:.2f} | {d99:.2f} |")
    print(f"| failed primary → fallback | {f50:.2f} | {f99:.2f} |")
    print(f"| fallback cost | +{f50 - d50:.2f} | +{f99 - d99:.2f} |")


if __name__ == "__main__":
    main()
