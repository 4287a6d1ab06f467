"""The two rollout-log stores keep one contract: newest first, bounded, all or none, latest status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio

from proxy_core.adapters.memory_rollout_logs import MemoryRolloutLogs
from proxy_core.adapters.redis_rollout_logs import RedisRolloutLogs
from proxy_core.services.rollout_logs import RolloutLogStore, StoredRecord
from proxy_core.services.store import rollout_key

MAX_ENTRIES = 3
TTL_S = 600


def record(*rollouts: str, n: int, code: int | None = None) -> StoredRecord:
    status = orjson.dumps({"status": {"code": code}, "extras": {"n": n}}) if code is not None else None
    return StoredRecord(rollouts, orjson.dumps({"n": n}), status)


async def numbers(store: RolloutLogStore, rollout: str, project: str = "p") -> list[int]:
    return [orjson.loads(entry)["n"] for entry in await store.entries(project, rollout)]


async def latest_code(store: RolloutLogStore, rollout: str) -> int | None:
    raw = await store.latest_status("p", rollout)
    return None if raw is None else int(orjson.loads(raw)["status"]["code"])


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[RolloutLogStore]:
    if request.param == "memory":
        yield MemoryRolloutLogs(ttl_s=TTL_S, max_entries=MAX_ENTRIES)
        return
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield RedisRolloutLogs(client, prefix=key_prefix, ttl_s=TTL_S, timeout_s=2.0, max_entries=MAX_ENTRIES)
    await client.aclose()


async def test_entries_newest_first_and_latest_status(store: RolloutLogStore) -> None:
    assert await numbers(store, "r") == []
    assert await store.latest_status("p", "r") is None
    for n, code in enumerate([None, 101, None]):
        assert await store.append("p", record("r", n=n, code=code)) is None
    assert await numbers(store, "r") == [2, 1, 0]
    assert await latest_code(store, "r") == 101, "a record without a status does not clear the last one"
    assert await store.append("p", record("r", n=3, code=100)) is None
    assert await store.append("p", record("r", n=4, code=13)) is None
    assert await latest_code(store, "r") == 13, "a later status replaces even a final one"
    assert await numbers(store, "r", project="other") == []


async def test_a_full_log_refuses_plain_records_and_makes_room_for_statuses(store: RolloutLogStore) -> None:
    for n in range(MAX_ENTRIES):
        assert await store.append("p", record("r", n=n)) is None
    assert await store.append("p", record("r", n=99)) == "r"
    assert await numbers(store, "r") == [2, 1, 0], "a refused record is not kept"
    assert await store.append("p", record("r", n=3, code=100)) is None
    assert await numbers(store, "r") == [3, 2, 1], "the oldest entry made room"
    assert await latest_code(store, "r") == 100


async def test_a_record_of_several_rollouts_is_kept_under_all_or_none(store: RolloutLogStore) -> None:
    assert await store.append("p", record("a", "b", n=0, code=101)) is None
    assert await numbers(store, "a") == await numbers(store, "b") == [0]
    assert await latest_code(store, "a") == await latest_code(store, "b") == 101
    for n in range(1, MAX_ENTRIES):
        await store.append("p", record("b", n=n))
    assert await store.append("p", record("a", "b", n=7)) == "b"
    assert await numbers(store, "a") == [0], "nothing kept when one of the rollouts is full"
    assert await store.append("p", record("a", "b", n=8, code=100)) is None
    assert await numbers(store, "a") == [8, 0]
    assert await numbers(store, "b") == [8, 2, 1]


async def test_concurrent_records_never_grow_a_log_past_its_bound(store: RolloutLogStore) -> None:
    results = await asyncio.gather(*(store.append("p", record("r", "s", n=n)) for n in range(20)))
    assert len(await numbers(store, "r")) == MAX_ENTRIES
    assert len(await numbers(store, "s")) == MAX_ENTRIES
    assert results.count(None) >= MAX_ENTRIES


async def test_redis_keys_carry_the_rollout_key_and_its_ttl(
    redis_url: str, key_prefix: str, redis_client: redis.asyncio.Redis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    store = RedisRolloutLogs(client, prefix=key_prefix, ttl_s=TTL_S, timeout_s=2.0, max_entries=MAX_ENTRIES)
    await store.append("proj:x", record("r:1", n=0, code=101))
    await store.append("proj:x", record("r:1", n=1))
    await client.aclose()
    keys = sorted([key async for key in redis_client.scan_iter(match=f"{key_prefix}:*")])
    base = rollout_key(key_prefix, "proj:x", "r:1")
    assert keys == [f"{base}:log-status", f"{base}:logs"]
    for key in keys:
        assert TTL_S - 5 < await redis_client.ttl(key) <= TTL_S


async def test_memory_store_is_bounded_in_bytes_and_expires() -> None:
    store = MemoryRolloutLogs(ttl_s=TTL_S, max_entries=MAX_ENTRIES, max_bytes=200)
    big = StoredRecord(("old",), b"x" * 120, None)
    await store.append("p", big)
    await store.append("p", StoredRecord(("new",), b"y" * 120, None))
    assert await store.entries("p", "old") == [], "the rollout written longest ago was dropped"
    assert await store.entries("p", "new") == [b"y" * 120]
    assert store.size_bytes == 120
    expiring = MemoryRolloutLogs(ttl_s=0, max_entries=MAX_ENTRIES)
    await expiring.append("p", record("r", n=0, code=100))
    assert await expiring.entries("p", "r") == []
    assert await expiring.latest_status("p", "r") is None
    assert expiring.size_bytes == 0
