"""One shared read per key; each caller waits for it no longer than its own deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy_core.retry import RetryableError
from proxy_core.services.single_flight import SingleFlight


class SlowRead:
    """A read that takes ``seconds`` and counts how often it ran and how often it was cancelled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0
        self.cancelled = 0

    async def __call__(self) -> str:
        self.started += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "traces"


def later(seconds: float) -> float:
    return time.monotonic() + seconds


async def test_concurrent_callers_share_one_read() -> None:
    flights, read = SingleFlight(), SlowRead(0.1)
    results = await asyncio.gather(*(flights.run("k", read, deadline=later(5)) for _ in range(10)))
    assert results == ["traces"] * 10
    assert read.started == 1
    assert flights.inflight() == 0


async def test_a_caller_waits_for_a_shared_read_no_longer_than_its_own_deadline() -> None:
    flights, read = SingleFlight(), SlowRead(1.5)
    patient = asyncio.create_task(flights.run("k", read, deadline=later(10)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(RetryableError):
        await flights.run("k", read, deadline=later(0.3))
    assert time.monotonic() - started < 0.6, "the waiter outlived its deadline"
    assert await patient == "traces", "the patient caller's read went on"
    assert (read.started, read.cancelled) == (1, 0)


async def test_the_starter_leaving_does_not_cancel_the_read_others_wait_for() -> None:
    flights, read = SingleFlight(), SlowRead(0.3)
    starter = asyncio.create_task(flights.run("k", read, deadline=later(10)))
    await asyncio.sleep(0.05)
    follower = asyncio.create_task(flights.run("k", read, deadline=later(10)))
    await asyncio.sleep(0.05)
    starter.cancel()  # its client disconnected
    assert await follower == "traces"
    assert (read.started, read.cancelled) == (1, 0)


async def test_a_read_nobody_waits_for_is_cancelled() -> None:
    flights, read = SingleFlight(), SlowRead(5)
    callers = [asyncio.create_task(flights.run("k", read, deadline=later(10))) for _ in range(3)]
    await asyncio.sleep(0.05)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)
    assert (read.started, read.cancelled) == (1, 1)
    assert flights.inflight() == 0
    assert await flights.run("k", SlowRead(0), deadline=later(1)) == "traces", "a new caller starts a new read"


async def test_the_reads_own_timeout_is_not_taken_for_the_callers_deadline() -> None:
    async def timing_out() -> str:
        raise TimeoutError("the trace store did not answer")

    with pytest.raises(TimeoutError, match="did not answer"):
        await SingleFlight().run("k", timing_out, deadline=later(5))
