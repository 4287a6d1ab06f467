"""The in-process store's semantics and the circuit breaker in front of every store."""

from __future__ import annotations

import pytest

from proxy_core.adapters.memory_store import MemoryRolloutStore
from proxy_core.errors import StoreUnavailableError
from proxy_core.services.store import (
    CircuitBreaker,
    GuardedStore,
    RolloutStatus,
    cache_key,
    rollout_key,
    usage_key,
)


def test_key_is_namespaced_by_prefix_and_project() -> None:
    assert rollout_key("gw", "proj", "r1") == "gw:proj:rollout:r1"


def test_ids_with_the_separator_cannot_reach_another_key() -> None:
    """A rollout named ``r:usage`` must not own rollout ``r``'s usage hash (or any other key)."""
    ids = ["r", "r:usage", "r%3Ausage", "r:usage:usage", "x:rollout:r", "%", ":"]
    keys = [rollout_key("gw", "p", i) for i in ids] + [usage_key("gw", "p", i) for i in ids]
    keys += [rollout_key("gw", p, "r") for p in ("p:rollout:r", "p:cache", "p%3A")] + [
        cache_key("gw", "p:rollout", "r")
    ]
    assert len(set(keys)) == len(keys)
    assert rollout_key("gw", "p", "r:usage") == "gw:p:rollout:r%3Ausage"
    assert rollout_key("gw", "proj", "0193a6f0-7c1e-7d2a-9b1f-3c4d5e6f7a8b").endswith(
        ":rollout:0193a6f0-7c1e-7d2a-9b1f-3c4d5e6f7a8b"
    )


async def test_memory_store_sets_per_project() -> None:
    store = MemoryRolloutStore(ttl_s=60)
    await store.record("a", "r", "id2")
    await store.record("a", "r", "id1")
    await store.record("b", "r", "other")
    assert await store.insertion_ids("a", "r") == {"id1", "id2"}
    status = await store.status("a", "r")
    assert (status.count, status.first_insertion_id, status.last_insertion_id) == (2, "id1", "id2")
    assert status.ttl_s is not None
    assert 0 < status.ttl_s <= 60
    assert await store.status("a", "missing") == RolloutStatus(0, None, None, None)


class FailingStore(MemoryRolloutStore):
    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.calls = 0

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: object = None) -> None:
        self.calls += 1
        raise StoreUnavailableError("down")


async def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    inner = FailingStore()
    store = GuardedStore(inner, CircuitBreaker(threshold=3, cooldown_s=30))
    for _ in range(3):
        with pytest.raises(StoreUnavailableError):
            await store.record("p", "r", "i")
    with pytest.raises(StoreUnavailableError) as info:
        store.ensure_available()
    assert int(info.value.headers["Retry-After"]) >= 1
    assert "the completion was not sent" in info.value.message
    with pytest.raises(StoreUnavailableError):
        await store.record("p", "r", "i")
    assert inner.calls == 3
    with pytest.raises(StoreUnavailableError) as read:
        await store.insertion_ids("p", "r")
    assert "could not be read" in read.value.message, "a read must not speak of a completion"
