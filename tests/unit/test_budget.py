"""The Langfuse read budget: the configured rate is the whole gateway's, whatever WORKERS says."""

from __future__ import annotations

import time

import pytest

from proxy_core.retry import RetryableError
from proxy_core.services.budget import ReadBudgets


@pytest.mark.parametrize(("processes", "burst", "rate_per_s"), [(1, 10, 4.0), (2, 5, 2.0), (4, 2, 1.0)])
async def test_each_worker_reads_at_its_share_of_the_budget(processes: int, burst: int, rate_per_s: float) -> None:
    bucket = ReadBudgets.shared_by(processes, rate_per_s=4.0, burst=10).for_key("https://langfuse|pk-lf-a")
    deadline = time.monotonic() + 0.05
    for _ in range(burst):
        await bucket.acquire(deadline)
    with pytest.raises(RetryableError) as refused:
        await bucket.acquire(deadline)
    assert refused.value.retry_after_s == pytest.approx(1 / rate_per_s, rel=0.1)


async def test_a_burst_never_falls_below_one_read() -> None:
    bucket = ReadBudgets.shared_by(64, rate_per_s=5.0, burst=10).for_key("k")
    await bucket.acquire(time.monotonic() + 0.05)
