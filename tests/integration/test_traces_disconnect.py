"""A /traces wait ends with its client, and never outlives its own ``timeout_s``."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import redis.asyncio

from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.integration.conftest import GatewayFactory

READS = ("/api/public/v2/observations", "/api/public/traces")
POLL_S = 0.4


def reads(langfuse: LangfuseState) -> int:
    return sum(len(langfuse.requests_to(path, "GET")) for path in READS)


async def incomplete_rollout(redis_client: redis.asyncio.Redis, prefix: str) -> str:
    """A rollout with a recorded insertion id whose trace never arrives: it is polled until the deadline."""
    rollout = f"gone-{uuid.uuid4().hex[:8]}"
    await redis_client.sadd(rollout_key(prefix, "proj-a", rollout), str(uuid.uuid4()))
    return rollout


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/traces/pointwise"])
async def test_polling_stops_when_the_client_disconnects(
    gateway_factory: GatewayFactory,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    path: str,
) -> None:
    gateway = gateway_factory(traces_poll_max_interval_s=POLL_S)
    rollout = await incomplete_rollout(redis_client, key_prefix)
    query = urlencode({"tags": f"rollout_id:{rollout}", "max_retries": 10, "timeout_s": 30})
    address = urlsplit(gateway.url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(f"GET {path}?{query} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer k\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(5 * POLL_S)
    polled = reads(langfuse)
    writer.close()  # the client gives up mid-poll
    await writer.wait_closed()
    gone = reads(langfuse)
    await asyncio.sleep(4 * POLL_S)
    after = reads(langfuse) - gone
    assert polled >= 3, f"the wait polled only {polled} times before the disconnect"
    assert after <= 1, f"{after} reads of Langfuse after the client had gone"


async def test_a_waiter_on_a_shared_read_answers_by_its_own_deadline(
    gateway_factory: GatewayFactory, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """A read budget of one read per 2.5 s: the patient poller's second read waits for its token,
    and a second request for the same rollout, with a 0.5 s deadline, shares that read."""
    gateway = gateway_factory(langfuse_read_rps=0.4, langfuse_read_burst=1, traces_poll_max_interval_s=POLL_S)
    rollout = await incomplete_rollout(redis_client, key_prefix)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        patient = asyncio.create_task(
            http.get("/v1/traces", params={"tags": f"rollout_id:{rollout}", "max_retries": 3, "timeout_s": 6})
        )
        await asyncio.sleep(0.8)  # its first read is done, its second waits for the budget
        assert reads(langfuse) == 1
        started = time.monotonic()
        hasty = await http.get("/v1/traces", params={"tags": f"rollout_id:{rollout}", "timeout_s": 0.5})
        waited = time.monotonic() - started
        assert (await patient).status_code == 404
    assert waited < 1.0, f"a 0.5 s request waited {waited:.2f} s for another request's read"
    assert hasty.status_code == 504, hasty.text
    assert hasty.json()["error"]["code"] == "langfuse_unavailable"
