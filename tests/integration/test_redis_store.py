"""The Redis rollout store against a real Redis: key layout, TTL, and bounded failure."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis.asyncio

from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.adapters.redis_store import RedisRolloutStore
from proxy_core.errors import StoreUnavailableError
from proxy_core.redis_options import RedisOptions
from proxy_core.services.store import GuardedStore, Usage, rollout_key, usage_key, void_key


def make_store(url: str, prefix: str, ttl_s: int = 3600) -> RedisRolloutStore:
    return RedisRolloutStore(url, prefix=prefix, ttl_s=ttl_s, timeout_s=0.5)


async def test_record_writes_a_set_with_a_ttl(
    redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis
) -> None:
    store = make_store(redis_url, key_prefix, ttl_s=120)
    try:
        await store.record("proj", "r1", "id-b")
        await store.record("proj", "r1", "id-a")
        await store.record("proj", "r1", "id-a")
        key = f"{key_prefix}:proj:rollout:{{r1}}"
        assert await redis_client.smembers(key) == {"id-a", "id-b"}
        assert 0 < await redis_client.ttl(key) <= 120
        assert 0 < await redis_client.ttl(f"{key}:usage") <= 120, "every key the gateway writes expires"
        assert await store.insertion_ids("proj", "r1") == {"id-a", "id-b"}
        assert await store.insertion_ids("other", "r1") == set()
        status = await store.status("proj", "r1")
        assert (status.count, status.first_insertion_id, status.last_insertion_id) == (2, "id-a", "id-b")
        assert status.ttl_s is not None
        assert status.ttl_s > 0
        assert await store.ping()
    finally:
        await store.aclose()


async def test_a_rollout_id_cannot_take_over_another_rollouts_keys(redis_url: str, key_prefix: str) -> None:
    """``r:usage`` once named rollout ``r``'s usage hash: recording into it made every write to ``r``
    a WRONGTYPE error (503s, then the breaker open for every project)."""
    store = make_store(redis_url, key_prefix)
    try:
        await store.record("proj", "zz9:usage", "id-attacker")
        await store.record("proj", "zz9", "id-victim")
        await store.record("proj", "zz9", "id-victim-2")
        assert await store.insertion_ids("proj", "zz9") == {"id-victim", "id-victim-2"}
        assert await store.insertion_ids("proj", "zz9:usage") == {"id-attacker"}
        assert (await store.status("proj", "zz9")).count == 2
        assert (await store.status("proj", "zz9:usage")).count == 1
    finally:
        await store.aclose()


async def test_many_concurrent_records_all_land(redis_url: str, key_prefix: str) -> None:
    store = make_store(redis_url, key_prefix)
    try:
        ids = [f"id-{n:04d}" for n in range(500)]
        await asyncio.gather(*(store.record("p", "r", i) for i in ids))
        assert await store.insertion_ids("p", "r") == set(ids)
    finally:
        await store.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_dead_redis_fails_fast_with_store_unavailable(key_prefix: str) -> None:
    store = make_store(f"redis://127.0.0.1:{_closed_port()}/0", key_prefix)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.record("p", "r", "i")
        assert time.monotonic() - started < 1.5
        assert not await store.ping()
    finally:
        await store.aclose()


async def test_frozen_redis_is_bounded_by_the_timeout(key_prefix: str) -> None:
    """A server that accepts connections but never answers must not hang a request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    store = make_store(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", key_prefix)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.record("p", "r", "i")
        assert time.monotonic() - started < 1.5
    finally:
        await store.aclose()
        listener.close()


async def test_a_voided_id_is_never_recorded_whichever_write_runs_first(
    redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis
) -> None:
    """A record that timed out may still run when a frozen Redis wakes, after or before its void."""
    store = make_store(redis_url, key_prefix, ttl_s=120)
    try:
        await store.record("proj", "r", "kept", Usage(10, 5, 0.5))
        await store.record("proj", "r", "late", Usage(7, 3, 0.25))
        await store.void("proj", "r", "late", Usage(7, 3, 0.25))  # recorded, then voided
        await store.void("proj", "r", "early", Usage(1, 1, 0.1))
        await store.record("proj", "r", "early", Usage(1, 1, 0.1))  # voided, then recorded
        assert await store.insertion_ids("proj", "r") == {"kept"}
        status = await store.status("proj", "r")
        assert (status.prompt_tokens, status.completion_tokens) == (10, 5)
        assert status.cost_usd == pytest.approx(0.5)
        assert 0 < await redis_client.ttl(void_key(key_prefix, "proj", "r")) <= 120
    finally:
        await store.aclose()


@pytest.mark.parametrize("usage", [Usage(10, 5, 0.25), Usage()])
async def test_an_id_no_replica_confirms_is_refused_and_voided(
    redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis, usage: Usage
) -> None:
    """``REDIS_WAIT_REPLICAS=1`` on a server without replicas: WAIT times out with 0, the client gets
    503, and neither the id nor its usage stays behind (a retry must not find a phantom)."""
    connection = RedisConnection(RedisOptions(mode="standalone", url=redis_url, timeout_s=0.5, wait_replicas=1))
    store = GuardedStore(RedisRolloutStore(connection, prefix=key_prefix, ttl_s=60))
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as refused:
            await store.record("p", "r", "id-1", usage)
        assert time.monotonic() - started < 1.5
        assert refused.value.message == (
            "The insertion id was not confirmed by 1 Redis replica(s) (0 did); it was not recorded."
        )
        deadline = time.monotonic() + 10
        while not await redis_client.sismember(void_key(key_prefix, "p", "r"), "id-1"):
            assert time.monotonic() < deadline, "the unconfirmed id was never voided"
            await asyncio.sleep(0.05)
        assert await redis_client.smembers(rollout_key(key_prefix, "p", "r")) == set()
        totals = await redis_client.hgetall(usage_key(key_prefix, "p", "r"))
        assert {name: float(value) for name, value in totals.items()} == {
            "prompt_tokens": 0.0,
            "completion_tokens": 0.0,
            "cost_usd": 0.0,
        }
    finally:
        await store.aclose()
        await connection.aclose()
