"""What expired rollouts cost the in-process store, and what sweeping them costs the event loop.

Records ``--rollouts`` rollouts (one insertion id and its usage each, as a tracked completion
writes them) in ``MemoryRolloutStore`` with a 1 s TTL, waits for them to expire, and reports the
process's RSS and the store's entry count before and after one background sweep
(``ExpirySweeper``), with the sweep's longest batch: how long it held the event loop at a time.
With ``--tracemalloc`` it reports the bytes Python holds for the rollouts instead of RSS (the
allocator keeps freed arenas, so RSS falls by less than what was freed).

Run: ``python -m bench.memory_expiry_bench [--rollouts 100000] [--tracemalloc]`` from the
repository root. A few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc
import uuid
from pathlib import Path

from proxy_core.adapters.memory_store import MemoryRolloutStore
from proxy_core.services.expiry import ExpirySweeper
from proxy_core.services.store import Usage

TTL_S = 1


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def held_bytes(traced: bool) -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if traced else rss_bytes()


async def run(rollouts: int, traced: bool) -> dict[str, object]:
    if traced:
        tracemalloc.start()
    store = MemoryRolloutStore(ttl_s=TTL_S)
    empty = held_bytes(traced)
    for n in range(rollouts):
        await store.record("eval", f"rollout-{n}", str(uuid.uuid4()), Usage(120, 40, 0.0003))
    full = held_bytes(traced)
    await asyncio.sleep(TTL_S + 0.2)
    expired_held = store.held()["rollouts"]  # nothing read them: before the sweep, all still held
    sweeper = ExpirySweeper([store], interval_s=3600)
    started = time.perf_counter()
    dropped = await sweeper.sweep()
    took = time.perf_counter() - started
    swept = held_bytes(traced)
    return {
        "measure": "tracemalloc bytes" if traced else "RSS bytes",
        "rollouts": rollouts,
        "held_before_sweep": expired_held,
        "held_after_sweep": store.held()["rollouts"],
        "dropped": dropped,
        "bytes_empty": empty,
        "bytes_expired_unswept": full,
        "bytes_after_sweep": swept,
        "bytes_per_rollout": round((full - empty) / rollouts, 1),
        "freed_by_sweep": full - swept,
        "sweep_total_s": round(took, 4),
        "sweep_max_batch_s": round(sweeper.max_tick_s, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=100_000)
    parser.add_argument("--tracemalloc", action="store_true", help="count Python's allocations, not RSS")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rollouts, args.tracemalloc)), indent=2))


if __name__ == "__main__":
    main()
