"""The Langfuse read budget in Redis: one rate for every process, and a fair share for every rollout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx
import redis.asyncio

from proxy_core.adapters.redis_budget import RedisTokenBuckets, budget_key
from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.redis_options import RedisOptions
from proxy_core.services.budget import ReadBudgets
from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.integration.conftest import GatewayFactory
from tests.integration.test_traces import seed

KEY = "https://langfuse.example|pk-lf-shared"


async def _take_for(budgets: ReadBudgets, seconds: float) -> int:
    """Reads one process gets in ``seconds`` when it reads as fast as the budget allows."""
    granted = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        await budgets.for_key(KEY).acquire(time.monotonic() + 5)
        granted += 1
    return granted


async def test_two_processes_share_one_bucket(
    redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis
) -> None:
    """Each with a bucket of its own, two processes would read 2 × (4 + 20 × 1.5) = 68 times."""
    connections = [RedisConnection(RedisOptions(mode="standalone", url=redis_url)) for _ in range(2)]
    try:
        processes = [
            ReadBudgets(20.0, 4, RedisTokenBuckets(connection, prefix=key_prefix)) for connection in connections
        ]
        granted = await asyncio.gather(*(_take_for(budgets, 1.5) for budgets in processes))
    finally:
        for connection in connections:
            await connection.aclose()
    assert 25 <= sum(granted) <= 38, granted  # 4 + 20 × 1.5 = 34, give or take the last wait
    assert min(granted) >= 8, f"one process starved the other: {granted}"
    assert 0 < await redis_client.pttl(budget_key(key_prefix, KEY)) <= 1_200


async def test_a_complete_rollout_is_answered_while_forty_incomplete_ones_poll(
    gateway_factory: GatewayFactory, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """Forty pollers once made a complete rollout wait 5.6-8 s, or answered it with a made-up 429.

    Every request runs to its end: the pollers' own answers count too. A poller whose deadline
    comes while it waits for the budget has read its rollout already and answers what it saw
    (404 ``traces_incomplete``); Langfuse never answered 429 here, so no 429 may come back.
    """
    gateway = gateway_factory(langfuse_read_rps=10.0, langfuse_read_burst=10)
    incomplete = [f"waiting-{n}-{uuid.uuid4().hex[:6]}" for n in range(40)]
    for rollout in incomplete:  # recorded ids whose traces never arrive
        await redis_client.sadd(rollout_key(key_prefix, "proj-a", rollout), str(uuid.uuid4()))
    complete = f"done-{uuid.uuid4().hex[:6]}"
    await seed(langfuse, redis_client, key_prefix, "proj-a", complete, 3)

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers={"authorization": "Bearer k"}) as http:

        async def poll(rollout: str) -> httpx.Response:
            params = {"tags": f"rollout_id:{rollout}", "max_retries": 10, "timeout_s": 8}
            return await http.get("/v1/traces", params=params)

        pollers = [asyncio.create_task(poll(rollout)) for rollout in incomplete]
        # Forty first reads at 10 a second after a burst of 10: by now every poller has read once
        # and waits to read again.
        await asyncio.sleep(4.5)
        started = time.monotonic()
        answer = await http.get("/v1/traces", params={"tags": f"rollout_id:{complete}", "timeout_s": 20})
        waited = time.monotonic() - started
        polled = await asyncio.gather(*pollers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["total_traces"] == 3
    assert waited < 1.0, f"the complete rollout waited {waited:.2f} s behind the pollers"
    codes = Counter((r.status_code, r.json()["error"]["code"]) for r in polled)
    assert codes == {(404, "traces_incomplete"): 40}, codes
    assert all(r.status != 429 for r in langfuse.requests_to("/api/public/")), "Langfuse itself was rate-limiting"
