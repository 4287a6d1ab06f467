"""How fast ``/traces`` answers, and how many Langfuse reads it spends.

Two scenarios, each against a real gateway (uvicorn) in front of the Langfuse emulator and a
real Redis:

* ingested: a 1 000-completion rollout whose traces are all visible; figures are the wall time
  of ``GET /traces`` and the number of Langfuse requests it made (target: under 2 s and at most
  ceil(1000 / page size) + 2 requests);
* late: the traces become visible ``DELAY`` seconds after they were sent; the figure is the
  time between visibility and the answer (how much the polling schedule adds).

Run: ``python bench/traces_bench.py`` (Redis on 127.0.0.1:6379). Bounded: a few seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import redis
from pydantic import SecretStr

from proxy_core.app import create_app
from proxy_core.config_files import LangfuseProject, ModelCatalog, SecretsFile
from proxy_core.services.store import rollout_key
from proxy_core.settings import Settings
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app

V2_PAGE = 1000
PROJECT = ("bench", "pk-lf-bench", "sk-lf-bench")


def seed(state: LangfuseState, client: redis.Redis, prefix: str, rollout: str, count: int) -> None:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    client.sadd(rollout_key(prefix, PROJECT[0], rollout), *ids)
    for insertion_id in ids:
        state.insert_trace(PROJECT[0], tags=[f"rollout_id:{rollout}", f"insertion_id:{insertion_id}"], observations=2)


def ingested(gateway: str, state: LangfuseState, client: redis.Redis, prefix: str, count: int, rounds: int) -> str:
    walls, reads = [], []
    for _ in range(rounds):
        rollout = f"bench-{uuid.uuid4().hex[:8]}"
        seed(state, client, prefix, rollout, count)
        before = len(state.request_log)
        started = time.perf_counter()
        response = httpx.get(f"{gateway}/traces", params={"tags": f"rollout_id:{rollout}", "limit": count}, timeout=60)
        walls.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:300]
        assert response.json()["total_traces"] == count
        reads.append(len(state.request_log) - before)
    budget = math.ceil(count * 2 / V2_PAGE) + 2
    return (
        f"| {count}-completion rollout, all ingested | {statistics.median(walls):.3f} s (median of {rounds}) "
        f"| {max(reads)} Langfuse requests (budget {budget}: ceil({count}×2 observations / {V2_PAGE}) + 2) |"
    )


def _watch_visibility(state: LangfuseState, rollout: str, count: int, seen: list[float]) -> None:
    """Note the moment the emulator first shows all of the rollout's traces."""
    tag = f"rollout_id:{rollout}"
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if sum(1 for trace in state.traces(PROJECT[0]) if tag in trace.tags) >= count:
            seen.append(time.perf_counter())
            return
        time.sleep(0.005)


def late(gateway: str, state: LangfuseState, delay_s: float, count: int = 10) -> str:
    """Completions go through the real pipeline; Langfuse shows them ``delay_s`` after receipt."""
    rollout = f"late-{uuid.uuid4().hex[:8]}"
    state.ingestion_delay_s = delay_s
    path = f"{gateway}/rollout_id/{rollout}/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions"
    for n in range(count):
        body = {"model": "fake", "messages": [{"role": "user", "content": f"n={n}"}]}
        assert httpx.post(path, json=body, headers={"authorization": "Bearer k"}, timeout=30).status_code == 200
    seen: list[float] = []
    watcher = threading.Thread(target=_watch_visibility, args=(state, rollout, count, seen))
    watcher.start()
    response = httpx.get(
        f"{gateway}/traces",
        params={"tags": f"rollout_id:{rollout}", "max_retries": 30, "timeout_s": delay_s + 30},
        timeout=60,
    )
    answered = time.perf_counter()
    watcher.join()
    state.ingestion_delay_s = 0
    assert response.status_code == 200, response.text[:300]
    assert seen, "the traces never became visible"
    return f"| late ingestion ({delay_s:g} s) | answered {answered - seen[0]:.2f} s after visibility | – |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    state = LangfuseState({PROJECT[0]: (PROJECT[1], PROJECT[2])})
    client = redis.Redis.from_url(args.redis_url)
    with ServerThread(create_langfuse_app(state=state)) as langfuse:
        secrets = SecretsFile(
            langfuse_keys={
                PROJECT[0]: LangfuseProject(public_key=PROJECT[1], secret_key=SecretStr(PROJECT[2]), host=langfuse.url)
            },
            default_project_id=PROJECT[0],
        )
        with ServerThread(create_upstream_app(UpstreamState(record_requests=False))) as upstream:
            catalog = ModelCatalog.model_validate(
                {"model_list": [{"model_name": "fake", "litellm_params": {"model": "openai/fake-model",
                                                                        "api_base": f"{upstream.url}/v1"}}]}
            )  # fmt: skip
            settings = Settings(
                redis_url=args.redis_url,
                redis_key_prefix=prefix,
                secrets=secrets,
                catalog=catalog,
                langfuse_read_rps=50,
                tracing_batch_delay_ms=50,
            )
            with ServerThread(create_app(settings), loop="asyncio") as gateway:
                rows = [ingested(gateway.url, state, client, prefix, args.count, args.rounds)]
                rows += [late(gateway.url, state, delay) for delay in (1.0, 3.0, 6.0)]
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    print("| scenario | time | Langfuse reads |\n| --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
