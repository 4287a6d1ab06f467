"""The in-process store's semantics and the circuit breaker in front of every store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.adapters.memory_store import MemoryRolloutStore
from proxy_core.errors import StoreUnavailableError
from proxy_core.services.breaker import BreakerState, CircuitBreaker
from proxy_core.services.store import (
    GuardedStore,
    RolloutStatus,
    cache_key,
    rollout_key,
    usage_key,
)


def test_key_is_namespaced_by_prefix_and_project_and_tagged_by_rollout() -> None:
    assert rollout_key("gw", "proj", "r1") == "gw:proj:rollout:{r1}"
    assert usage_key("gw", "proj", "r1") == "gw:proj:rollout:{r1}:usage"
    assert cache_key("gw", "proj", "ab12") == "gw:proj:cache:{ab12}"


def _hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first ``{`` and the next ``}``, if not empty."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start != -1 and end > start + 1 else key


def test_ids_with_the_separator_cannot_reach_another_key() -> None:
    """A rollout named ``r:usage`` must not own rollout ``r``'s usage hash (or any other key)."""
    ids = ["r", "r:usage", "r%3Ausage", "r:usage:usage", "x:rollout:r", "%", ":", "{r}", "r}:usage", "%7Br%7D"]
    keys = [rollout_key("gw", "p", i) for i in ids] + [usage_key("gw", "p", i) for i in ids]
    keys += [rollout_key("gw", p, "r") for p in ("p:rollout:r", "p:cache", "p%3A", "p{x}")] + [
        cache_key("gw", "p:rollout", "r")
    ]
    assert len(set(keys)) == len(keys)
    assert rollout_key("gw", "p", "r:usage") == "gw:p:rollout:{r%3Ausage}"
    assert rollout_key("gw", "p{", "{r}") == "gw:p%7B:rollout:{%7Br%7D}"
    assert rollout_key("gw", "proj", "0193a6f0-7c1e-7d2a-9b1f-3c4d5e6f7a8b").endswith(
        ":rollout:{0193a6f0-7c1e-7d2a-9b1f-3c4d5e6f7a8b}"
    )


@given(
    project=st.text(min_size=1, max_size=20),
    rollout=st.text(min_size=1, max_size=20),
    other=st.text(min_size=1, max_size=20),
)
def test_a_rollouts_keys_share_one_hash_tag_and_no_other_rollouts(project: str, rollout: str, other: str) -> None:
    """Braces in an id can neither split a rollout's keys over two slots nor pick another's tag."""
    tag = _hash_tag(rollout_key("gw", project, rollout))
    assert _hash_tag(usage_key("gw", project, rollout)) == tag
    assert _hash_tag(rollout_key("gw", project, rollout) + ":logs") == tag
    if other != rollout:
        assert _hash_tag(rollout_key("gw", project, other)) != tag


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


class FlakyStore(MemoryRolloutStore):
    """An in-process store whose writes (records and probes) fail while ``refuse_writes`` is set."""

    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.records = 0
        self.probes = 0
        self.refuse_writes = True
        self.probe_delay_s = 0.0

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: object = None) -> None:
        self.records += 1
        if self.refuse_writes:
            raise StoreUnavailableError("down")
        await super().record(project_id, rollout_id, insertion_id)

    async def probe_write(self) -> None:
        self.probes += 1
        await asyncio.sleep(self.probe_delay_s)
        if self.refuse_writes:
            raise StoreUnavailableError("OOM command not allowed")


async def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    inner = FlakyStore()
    store = GuardedStore(inner, CircuitBreaker(threshold=3, cooldown_s=30))
    for _ in range(3):
        with pytest.raises(StoreUnavailableError):
            await store.record("p", "r", "i")
    with pytest.raises(StoreUnavailableError) as info:
        await store.ensure_writable()
    assert int(info.value.headers["Retry-After"]) >= 1
    assert "the completion was not sent" in info.value.message
    assert inner.probes == 0, "an open breaker refuses without touching the store"
    assert not store.health().writable
    assert store.health().as_dict() == {
        "state": "down",
        "writes": "open",
        "reads": "closed",
        "last_error": "down",
    }


async def test_reads_do_not_reset_write_failures() -> None:
    """A store that refuses writes but answers reads (READONLY, OOM) stays refused for completions."""
    inner = FlakyStore()
    store = GuardedStore(inner, CircuitBreaker(threshold=3, cooldown_s=30))
    for _ in range(3):
        with pytest.raises(StoreUnavailableError):
            await store.record("p", "r", "i")
        assert await store.insertion_ids("p", "r") == set()  # a successful read in between
    with pytest.raises(StoreUnavailableError):
        await store.ensure_writable()
    assert store.health().writes is BreakerState.OPEN


async def test_a_recent_write_vouches_and_a_stale_one_is_probed_once_for_all_callers() -> None:
    inner = FlakyStore()
    inner.refuse_writes = False
    store = GuardedStore(inner, fresh_write_s=0.2)
    await store.record("p", "r", "i")
    await store.ensure_writable()
    assert inner.probes == 0, "a write that just succeeded needs no probe"
    await asyncio.sleep(0.25)
    inner.probe_delay_s = 0.05
    await asyncio.gather(*(store.ensure_writable() for _ in range(20)))
    assert inner.probes == 1, "callers waiting together share one probe"


async def test_write_refusal_costs_callers_nothing_but_a_shared_probe() -> None:
    inner = FlakyStore()
    store = GuardedStore(inner, CircuitBreaker(threshold=2, cooldown_s=30), fresh_write_s=0.0)
    inner.probe_delay_s = 0.02
    results = await asyncio.gather(*(store.ensure_writable() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(result, StoreUnavailableError) for result in results)
    assert inner.probes == 1
    with pytest.raises(StoreUnavailableError):
        await store.ensure_writable()  # the second failure opens the breaker
    for _ in range(5):
        with pytest.raises(StoreUnavailableError):
            await store.ensure_writable()
    assert inner.probes == 2, "while open, nobody probes"


async def test_after_the_cooldown_one_trial_decides() -> None:
    inner = FlakyStore()
    store = GuardedStore(inner, CircuitBreaker(threshold=1, cooldown_s=0.1), fresh_write_s=0.0)
    with pytest.raises(StoreUnavailableError):
        await store.ensure_writable()
    assert store.health().writes is BreakerState.OPEN
    await asyncio.sleep(0.12)
    assert store.health().writes is BreakerState.HALF_OPEN
    inner.probe_delay_s = 0.05
    trial = asyncio.ensure_future(store.ensure_writable())
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(store.ensure_writable())
    for outcome in await asyncio.gather(trial, late, return_exceptions=True):
        assert isinstance(outcome, StoreUnavailableError)
    assert inner.probes == 2, "one trial in the half-open state, joined by the later caller"
    assert store.health().writes is BreakerState.OPEN, "a failed trial opens the breaker again"
    await asyncio.sleep(0.12)
    inner.refuse_writes = False
    await asyncio.gather(*(store.ensure_writable() for _ in range(5)))
    assert inner.probes == 3
    assert store.health().writable


async def test_the_watch_probes_without_traffic_and_readiness_follows() -> None:
    inner = FlakyStore()
    inner.refuse_writes = False
    store = GuardedStore(inner, CircuitBreaker(threshold=5, cooldown_s=0.05))
    watch = asyncio.ensure_future(store.watch(0.02))
    try:
        await _until(lambda: inner.probes >= 1)
        assert store.health().writable
        inner.refuse_writes = True
        await _until(lambda: not store.health().writable)
        inner.refuse_writes = False
        await _until(lambda: store.health().writable)
    finally:
        watch.cancel()


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_breaker_grants_one_trial_at_a_time() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=0.0)
    breaker.failed()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire_trial()
    assert not breaker.try_acquire_trial()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.admits


class TimingOutStore(MemoryRolloutStore):
    """Records time out (their outcome unknown); voids fail twice before the store takes them."""

    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.void_attempts = 0

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: object = None) -> None:
        await super().record(project_id, rollout_id, insertion_id)  # it did reach the store
        raise StoreUnavailableError("timed out", outcome_unknown=True)

    async def void(self, project_id: str, rollout_id: str, insertion_id: str, usage: object = None) -> None:
        self.void_attempts += 1
        if self.void_attempts < 3:
            raise StoreUnavailableError("still frozen")
        await super().void(project_id, rollout_id, insertion_id)


async def test_a_record_that_timed_out_is_voided_until_the_store_takes_it() -> None:
    inner = TimingOutStore()
    store = GuardedStore(inner)
    with pytest.raises(StoreUnavailableError):
        await store.record("p", "r", "ghost")
    assert await inner.insertion_ids("p", "r") == {"ghost"}
    await _until(lambda: inner.void_attempts >= 3, timeout_s=10)
    assert await inner.insertion_ids("p", "r") == set(), "the client was told it failed: it is no step"
    await store.aclose()
