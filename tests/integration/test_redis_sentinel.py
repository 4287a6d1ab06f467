"""Redis Sentinel: a failover during traffic is ridden out without a restart and loses no acknowledged id."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from proxy_core.services.store import rollout_key
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path
from tests.redis_servers import SERVICE, SentinelSet, sentinel_set, wait_for

CLIENTS = 4
SETTLED_S = 3.0  # consecutive successes after the promotion that count as "serving again"
LIMIT_S = 30.0


@pytest.fixture
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path_factory.mktemp("sentinel")) as running:
        yield running


@dataclass
class Reply:
    at: float
    status: int
    insertion_id: str | None
    code: str | None


async def _traffic(gateway: Gateway, rollout: str, replies: list[Reply], stop: asyncio.Event) -> None:
    path = f"/{rollout_path(rollout)}/chat/completions"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        while not stop.is_set():
            response = await http.post(path, json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
            code = None if response.status_code == 200 else response.json()["error"]["code"]
            replies.append(Reply(time.monotonic(), response.status_code, response.headers.get("x-insertion-id"), code))
            if response.status_code != 200:  # as the openai SDK does: wait as told, within its 8 s cap
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 8.0))


def _served_for(replies: list[Reply], since: float) -> float:
    """How long the traffic has been answered 200 without a failure, counted from ``since`` at the earliest."""
    last_failure = max((r.at for r in replies if r.status != 200), default=since)
    latest = max((r.at for r in replies if r.status == 200), default=since)
    return latest - max(last_failure, since)


async def test_a_failover_during_traffic_loses_no_acknowledged_id(
    sentinels: SentinelSet, gateway_factory: GatewayFactory, key_prefix: str
) -> None:
    gateway = gateway_factory(
        redis_url=None,
        redis_mode="sentinel",
        redis_sentinels=sentinels.addresses,
        redis_sentinel_service=SERVICE,
        redis_timeout_s=1.0,
    )  # only the sentinels and the service: REDIS_WAIT_REPLICAS is 1 by default
    rollout = f"failover-{uuid.uuid4().hex[:8]}"
    replies: list[Reply] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(_traffic(gateway, rollout, replies, stop)) for _ in range(CLIENTS)]
    try:
        await asyncio.to_thread(wait_for, lambda: sum(r.status == 200 for r in replies) >= 20, 30, "traffic")
        old_master = sentinels.master_port()
        with sentinels.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        await asyncio.to_thread(wait_for, lambda: sentinels.master_port() != old_master, 20, "the promotion")
        promoted_at = time.monotonic()
        with contextlib.suppress(TimeoutError):  # judged below
            await asyncio.to_thread(wait_for, lambda: _served_for(replies, promoted_at) >= SETTLED_S, LIMIT_S, "")
    finally:
        stop.set()
        await asyncio.gather(*clients)

    failures = [r for r in replies if r.status != 200]
    assert {(r.status, r.code) for r in failures} <= {(503, "store_unavailable")}
    last_failure = max((r.at for r in failures), default=promoted_at)
    assert last_failure - promoted_at < 15, "serving again within 15 s of the promotion"
    assert _served_for(replies, promoted_at) >= SETTLED_S, "and serving since"

    acknowledged = {r.insertion_id for r in replies if r.status == 200}
    new_master = sentinels.server(sentinels.master_port())
    assert new_master.port != old_master
    with new_master.client() as client:
        recorded = client.smembers(rollout_key(key_prefix, "proj-a", rollout))
    assert acknowledged <= recorded, f"{len(acknowledged - recorded)} acknowledged ids lost in the failover"
    phantoms = recorded - acknowledged
    assert not phantoms, f"{len(phantoms)} ids recorded although their clients were told 503"
