"""``REDIS_WAIT_REPLICAS`` on a real primary and replica: an id is acknowledged only once the replica
holds it; while the replica is stopped or detached, calls answer 503 and leave no phantom."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.adapters.redis_store import RedisRolloutStore
from proxy_core.redis_options import RedisOptions
from proxy_core.services.store import rollout_key, void_key
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path
from tests.redis_servers import RedisServer, running, wait_for

WAIT_TIMEOUT_MS = 300
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer(tmp_path / "primary", ["--repl-diskless-sync-delay", "0"])
    replica = RedisServer(tmp_path / "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    with running(primary, replica):
        _wait_until_linked(replica)
        yield primary, replica


def _wait_until_linked(replica: RedisServer) -> None:
    with replica.client() as client:
        wait_for(lambda: client.info("replication").get("master_link_status") == "up", 30, "replication")


async def _calls(gateway: Gateway, rollout: str, count: int) -> list[tuple[int, str | None, str | None]]:
    """``count`` tracked calls in turn: (status, insertion id, error code)."""
    results = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        for _ in range(count):
            response = await http.post(
                f"/{rollout_path(rollout)}/chat/completions", json={"model": "fake", "messages": USER}
            )
            code = None if response.status_code == 200 else response.json()["error"]["code"]
            results.append((response.status_code, response.headers.get("x-insertion-id"), code))
    return results


async def _until_serving(gateway: Gateway, within_s: float = 15.0) -> None:
    """Calls until one is answered: on a busy machine the replica's first acknowledgements can
    take longer than the WAIT timeout, and such a call is rightly a 503."""
    deadline = time.monotonic() + within_s
    while (await _calls(gateway, f"warm-{uuid.uuid4().hex[:8]}", 1))[0][0] != 200:
        assert time.monotonic() < deadline, "no call was confirmed by the linked replica"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("fault", ["stopped", "detached"])
async def test_ids_are_acknowledged_only_while_the_replica_confirms_them(
    pair: tuple[RedisServer, RedisServer], gateway_factory: GatewayFactory, key_prefix: str, fault: str
) -> None:
    primary, replica = pair
    gateway = gateway_factory(
        redis_url=primary.url, redis_wait_replicas=1, redis_wait_timeout_ms=WAIT_TIMEOUT_MS, redis_timeout_s=1.0
    )
    rollout = f"wait-{uuid.uuid4().hex[:8]}"
    await _until_serving(gateway)
    before = await _calls(gateway, rollout, 10)
    assert [status for status, _, _ in before] == [200] * 10

    assert replica.process is not None
    if fault == "stopped":
        os.kill(replica.process.pid, signal.SIGSTOP)
    else:
        with replica.client() as client:
            client.replicaof("NO", "ONE")
    try:
        during = await _calls(gateway, rollout, 6)
    finally:
        if fault == "stopped":
            os.kill(replica.process.pid, signal.SIGCONT)
        else:
            with replica.client() as client:
                client.replicaof("127.0.0.1", primary.port)
    assert {(status, code) for status, _, code in during} == {(503, "store_unavailable")}
    await asyncio.to_thread(_wait_until_linked, replica)

    after: list[tuple[int, str | None, str | None]] = []
    deadline = time.monotonic() + 20
    while not after or after[-1][0] != 200:  # the store's breaker lets a trial through again
        assert time.monotonic() < deadline, f"not serving again: {after[-3:]}"
        after += await _calls(gateway, rollout, 1)
        if after[-1][0] != 200:
            await asyncio.sleep(0.2)
    after += await _calls(gateway, rollout, 4)
    assert {code for status, _, code in after if status != 200} <= {"store_unavailable"}

    acknowledged = {insertion_id for status, insertion_id, _ in before + after if status == 200}
    assert len(acknowledged) >= 15
    key = rollout_key(key_prefix, "proj-a", rollout)
    with primary.client() as client:
        on_primary = client.smembers(key)
        voided = client.smembers(void_key(key_prefix, "proj-a", rollout))
    # The first call of the fault got its answer from the provider, then no confirmation: its id was voided.
    assert voided
    assert not voided & acknowledged
    with replica.client() as client:
        wait_for(lambda: client.scard(key) == len(on_primary), 10, "the replica to catch up")
        on_replica = client.smembers(key)
    assert on_primary == acknowledged, "an id was lost, or one answered 503 was recorded (a phantom)"
    assert on_replica == acknowledged


async def _record_latencies(url: str, prefix: str, wait_replicas: int, count: int) -> list[float]:
    options = RedisOptions(
        mode="standalone", url=url, timeout_s=1.0, wait_replicas=wait_replicas, wait_timeout_ms=WAIT_TIMEOUT_MS
    )
    connection = RedisConnection(options)
    store = RedisRolloutStore(connection, prefix=prefix, ttl_s=60)
    latencies = []
    try:
        await store.record("p", "warm-up", "id-0")
        for n in range(count):
            started = time.perf_counter()
            await store.record("p", "r", f"id-{n}")
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await store.aclose()
        await connection.aclose()
    return latencies


async def test_the_cost_of_waiting_for_one_replica_on_loopback(
    pair: tuple[RedisServer, RedisServer], key_prefix: str
) -> None:
    primary, _ = pair
    count = 300
    plain = await _record_latencies(primary.url, f"{key_prefix}-plain", 0, count)
    waited = await _record_latencies(primary.url, f"{key_prefix}-wait", 1, count)
    with primary.client() as client:
        assert client.scard(rollout_key(f"{key_prefix}-wait", "p", "r")) == count

    def summary(values: list[float]) -> str:
        quantiles = statistics.quantiles(values, n=100)
        return f"median {statistics.median(values):.2f} ms, p95 {quantiles[94]:.2f} ms, p99 {quantiles[98]:.2f} ms"

    print(f"record, no WAIT: {summary(plain)}; record + WAIT 1: {summary(waited)}")
    # Every wait was answered by the replica, long before WAIT's own timeout.
    assert statistics.median(waited) < WAIT_TIMEOUT_MS / 10
