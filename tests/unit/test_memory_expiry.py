"""In-process stores expire what they hold in the background, with no read to trigger it."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import orjson

from proxy_core.adapters.embedded_traces import MemoryTraceBackend, SpanWrite
from proxy_core.adapters.memory_rollout_logs import MemoryRolloutLogs
from proxy_core.adapters.memory_store import MemoryRolloutStore
from proxy_core.services.expiry import Expiring, ExpirySweeper
from proxy_core.services.rollout_logs import StoredRecord
from proxy_core.services.store import Usage

KEYS = 5_000
TTL_S = 1
FILL_TTL_S = 2  # filling takes a few hundred ms on a busy machine: nothing may expire meanwhile


async def fill(store: MemoryRolloutStore, logs: MemoryRolloutLogs, traces: MemoryTraceBackend, n: int) -> None:
    for i in range(n):
        await store.record("p", f"r{i}", f"id-{i}", Usage(1, 2, 0.1))
        await store.void("p", f"r{i}", f"void-{i}")
        await store.cache_response("p", f"c{i}", b"{}", FILL_TTL_S)
        await logs.append("p", StoredRecord((f"r{i}",), orjson.dumps({"n": i}), None))
        await traces.write("p", [SpanWrite(f"t{i}", "s", (f"rollout_id:r{i}",), b"{}")])


def held(store: MemoryRolloutStore, logs: MemoryRolloutLogs, traces: MemoryTraceBackend) -> dict[str, int]:
    return {**store.held(), "logs": logs.held(), "traces": traces.held(), "tag index": traces.index_size()}


async def test_expired_keys_leave_memory_without_being_read() -> None:
    store = MemoryRolloutStore(ttl_s=FILL_TTL_S)
    logs = MemoryRolloutLogs(ttl_s=FILL_TTL_S, max_entries=10)
    traces = MemoryTraceBackend(ttl_s=FILL_TTL_S, max_bytes=1 << 30)
    assert all(isinstance(part, Expiring) for part in (store, logs, traces))
    await fill(store, logs, traces, KEYS)
    sweeper = ExpirySweeper([store, logs, traces], interval_s=0.1)
    sweeper.start()
    try:
        await asyncio.sleep(0.25)  # a sweep or two, before the TTL
        before = held(store, logs, traces)
        assert before == {k: KEYS for k in before}, f"swept before the TTL ran out: {before}"
        await asyncio.sleep(FILL_TTL_S)
        after = held(store, logs, traces)
    finally:
        await sweeper.aclose()
    assert after == {k: 0 for k in after}, after
    assert sweeper.dropped == 5 * KEYS  # rollouts, voided sets, cached responses, logs, traces
    assert sweeper.max_tick_s < 0.1, f"one batch held the event loop {sweeper.max_tick_s * 1000:.1f} ms"


async def test_a_sweep_keeps_what_was_written_again() -> None:
    """A write renews the TTL: a rollout written again is not swept with the ones left alone."""
    store = MemoryRolloutStore(ttl_s=TTL_S)
    await store.record("p", "kept", "a")
    await store.record("p", "left", "a")
    await store.cache_response("p", "c", b"old", TTL_S)
    await asyncio.sleep(0.6)
    await store.record("p", "kept", "b")
    await store.cache_response("p", "c", b"new", 5)  # the old expiry must not drop the new body
    await asyncio.sleep(0.5)
    assert store.sweep_expired(100) == 2  # "left", and the cached body's first expiry
    assert await store.insertion_ids("p", "kept") == {"a", "b"}
    assert await store.cached_response("p", "c") == b"new"
    assert store.held() == {"rollouts": 1, "voided": 0, "cached": 1}


async def test_a_sweep_does_at_most_its_batch_then_yields() -> None:
    store = MemoryRolloutStore(ttl_s=0)
    for i in range(2_500):
        await store.record("p", f"r{i}", "a")
    assert store.sweep_expired(1_000) == 1_000
    ticks: list[int] = []

    async def count_ticks() -> None:
        while True:
            ticks.append(len(ticks))
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_ticks())
    sweeper = ExpirySweeper([store], interval_s=60, batch=500)
    started = time.perf_counter()
    assert await sweeper.sweep() == 1_500
    counter.cancel()
    assert len(ticks) >= 3, "the sweep never let other tasks run between its batches"
    assert store.held()["rollouts"] == 0
    assert time.perf_counter() - started < 1


async def test_voided_ids_expire_but_still_refuse_a_late_record_meanwhile() -> None:
    store = MemoryRolloutStore(ttl_s=TTL_S)
    await store.record("p", "r", "a", Usage(10, 5, 1.0))
    await store.void("p", "r", "a", Usage(10, 5, 1.0))
    await store.record("p", "r", "a", Usage(10, 5, 1.0))  # the late write of a voided id
    assert await store.insertion_ids("p", "r") == set()
    assert store.held()["voided"] == 1
    await asyncio.sleep(TTL_S + 0.05)
    assert store.sweep_expired(10) == 2
    assert store.held() == {"rollouts": 0, "voided": 0, "cached": 0}


async def test_a_swept_table_gives_its_memory_back() -> None:
    """A dict keeps its largest hash table: emptied by deletes alone, 20,000 slots keep ~950 kB."""
    tracemalloc.start()
    try:
        store = MemoryRolloutStore(ttl_s=0)
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            await store.record("p", f"r{i}", "a")
        full = tracemalloc.get_traced_memory()[0] - baseline
        while store.sweep_expired(1_000):
            pass
        left = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert full > 5_000_000
    assert left < 300_000, f"{left} B still held after sweeping {full} B"  # ~950 kB without the copy
