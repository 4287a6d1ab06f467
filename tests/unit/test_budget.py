"""The Langfuse read budget: its rate and burst, and the order waiting reads are served in."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest

from proxy_core.errors import StoreUnavailableError
from proxy_core.retry import RetryableError
from proxy_core.services.budget import LocalTokenBuckets, ReadBudgets, reading_for

KEY = "https://langfuse|pk-lf-a"


async def test_a_burst_then_the_rate() -> None:
    bucket = ReadBudgets(rate_per_s=4.0, burst=10).for_key(KEY)
    deadline = time.monotonic() + 0.05
    for _ in range(10):
        await bucket.acquire(deadline)
    with pytest.raises(RetryableError) as refused:
        await bucket.acquire(deadline)
    assert refused.value.retry_after_s == pytest.approx(1 / 4.0, rel=0.1)


class Grants:
    """Reads granted per flow, and a way to wait until they add up to something."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    async def add(self, flow: str) -> None:
        async with self._changed:
            self.counts[flow] += 1
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[Counter[str]], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.counts))


async def _poll_forever(budgets: ReadBudgets, flow: str, grants: Grants) -> None:
    """A rollout whose traces are never complete: it reads as often as the budget lets it."""
    with reading_for(flow):
        while True:
            await budgets.for_key(KEY).acquire(time.monotonic() + 60)
            await grants.add(flow)


async def test_a_new_rollout_is_served_before_forty_polling_ones() -> None:
    """FIFO would put the newcomer behind forty queued polls (0.8 s at 50 reads/s)."""
    budgets = ReadBudgets(rate_per_s=50.0, burst=1)
    grants = Grants()
    pollers = [asyncio.create_task(_poll_forever(budgets, f"incomplete-{n}", grants)) for n in range(40)]
    try:
        await grants.wait_until(lambda counts: len(counts) == 40)  # every poller has read and queued again
        started = time.monotonic()
        with reading_for("complete"):
            await budgets.for_key(KEY).acquire(time.monotonic() + 10)
        waited = time.monotonic() - started
    finally:
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
    assert waited < 0.3, f"the complete rollout waited {waited:.2f} s behind the pollers"


async def test_backlogged_rollouts_share_the_budget_equally() -> None:
    """One rollout with ten concurrent pollers gets no more reads than a rollout with one."""
    budgets = ReadBudgets(rate_per_s=200.0, burst=1)
    grants = Grants()
    tasks = [asyncio.create_task(_poll_forever(budgets, "greedy", grants)) for _ in range(10)]
    tasks.append(asyncio.create_task(_poll_forever(budgets, "modest", grants)))
    try:
        await grants.wait_until(lambda counts: sum(counts.values()) >= 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    counts = grants.counts
    assert abs(counts["greedy"] - counts["modest"]) <= 0.2 * sum(counts.values()), counts


async def test_a_waiter_past_its_deadline_gives_up_and_the_queue_moves_on() -> None:
    bucket = ReadBudgets(rate_per_s=10.0, burst=1).for_key(KEY)
    await bucket.acquire(time.monotonic() + 1)
    with reading_for("a"):
        first = asyncio.create_task(bucket.acquire(time.monotonic() + 1))
    await asyncio.sleep(0)
    with reading_for("b"), pytest.raises(RetryableError):
        await bucket.acquire(time.monotonic() + 0.01)  # queued behind "a", gives up
    await first
    with reading_for("c"):
        await bucket.acquire(time.monotonic() + 1)  # the queue was not left stuck


class _FailingSource:
    def __init__(self) -> None:
        self.calls = 0

    async def take(self, key: str, rate_per_s: float, burst: int, max_wait_s: float) -> tuple[bool, float]:
        self.calls += 1
        raise StoreUnavailableError("down")


async def test_a_failing_shared_bucket_falls_back_to_the_process() -> None:
    shared = _FailingSource()
    bucket = ReadBudgets(rate_per_s=1.0, burst=2, shared=shared).for_key(KEY)
    deadline = time.monotonic() + 0.05
    await bucket.acquire(deadline)
    await bucket.acquire(deadline)
    with pytest.raises(RetryableError):
        await bucket.acquire(deadline)
    assert shared.calls == 1, "the shared bucket is not asked again on every read while it is down"


async def test_local_buckets_reserve_the_next_token_within_the_wait_allowed() -> None:
    buckets = LocalTokenBuckets()
    assert await buckets.take("k", 50.0, 1, 0.0) == (True, 0.0)
    taken, wait = await buckets.take("k", 50.0, 1, 0.0)
    assert not taken
    assert 0 < wait <= 0.02
    taken, wait = await buckets.take("k", 50.0, 1, 1.0)
    assert taken, "reserved ahead"
    assert 0 < wait <= 0.02
    taken, later = await buckets.take("k", 50.0, 1, 1.0)
    assert taken
    assert later == pytest.approx(wait + 0.02, abs=0.005), "the next caller is served after the reserved token"


async def test_a_turn_its_deadline_cancelled_is_passed_over() -> None:
    """A deadline cancels the waiter's turn at once, but the waiter leaves the queue only when it
    next runs; a read finishing in between once handed the turn to it anyway (InvalidStateError,
    a 500) and left the queue stuck. ``Task.cancel`` reproduces that moment exactly."""
    budget = ReadBudgets(rate_per_s=1.0, burst=1).for_key(KEY)
    await budget.acquire(time.monotonic() + 1)  # the burst: the next token is a second away
    holder = asyncio.create_task(budget.acquire(time.monotonic() + 5))  # sleeps for its reserved token
    await asyncio.sleep(0.05)
    with reading_for("late"):  # two new flows: served in arrival order
        late = asyncio.create_task(budget.acquire(time.monotonic() + 5))
    await asyncio.sleep(0.05)
    with reading_for("following"):
        following = asyncio.create_task(budget.acquire(time.monotonic() + 5))
    await asyncio.sleep(0.05)
    holder.cancel()  # runs first: it passes the turn on ...
    late.cancel()  # ... to the head of the queue, whose turn is already cancelled
    await asyncio.wait_for(following, 3)  # served: the queue moved on
    for task in (holder, late):
        with pytest.raises(asyncio.CancelledError):
            await task
