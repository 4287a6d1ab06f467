"""The rpm/tpm policy on in-process windows (the no-Redis default) and its fallback when Redis fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from proxy_core.errors import StoreUnavailableError
from proxy_core.services import rate_limits
from proxy_core.services.rate_limits import DeploymentLimit, DeploymentLimits, Window, WindowKey, retry_after_s

LIMITS = [DeploymentLimit("g", "a", rpm=2), DeploymentLimit("g", "b", tpm=10), DeploymentLimit("g", "c")]


async def test_requests_are_counted_until_the_window_is_full() -> None:
    limits = DeploymentLimits(LIMITS)
    assert await limits.admit("a") is None
    assert await limits.admit("a") is None
    refused = await limits.admit("a")
    assert refused is not None
    assert 59 <= refused <= 60
    assert await limits.admit("c") is None, "a deployment without limits is never refused"
    assert await limits.admit("unknown") is None
    assert await limits.open_deployments(["a", "b", "c"]) == (["b", "c"], refused)


async def test_tokens_refuse_once_the_window_holds_tpm_and_the_window_reopens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limits, "WINDOW_MS", 200)
    limits = DeploymentLimits(LIMITS)
    assert await limits.admit("b") is None
    await limits.spend("b", 9)
    assert await limits.admit("b") is None, "9 of 10 tokens used: one more call may start"
    await limits.spend("b", 4)
    assert await limits.admit("b") == 1, "a window closing in under a second is still 'retry in 1 s'"
    await limits.spend("a", 1000)  # no tpm on "a": nothing is counted
    await asyncio.sleep(0.25)
    assert await limits.admit("b") is None, "the window closed"


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [retry_after_s(ms) for ms in (0, 1, 999, 1000, 1001, 59_999)] == [1, 1, 1, 1, 2, 60]


class _Down:
    def __init__(self) -> None:
        self.calls = 0

    async def read(self, keys: Sequence[WindowKey]) -> list[Window]:
        self.calls += 1
        raise StoreUnavailableError("down")

    async def admit(self, requests: WindowKey, rpm: int | None, tokens: WindowKey, tpm: int | None) -> Window | None:
        self.calls += 1
        raise StoreUnavailableError("down")

    async def add(self, key: WindowKey, amount: int) -> None:
        self.calls += 1
        raise StoreUnavailableError("down")


async def test_while_the_shared_counters_fail_the_process_counts_on_its_own() -> None:
    shared = _Down()
    limits = DeploymentLimits(LIMITS, shared)
    answers = [await limits.admit("a") for _ in range(3)]
    assert answers[:2] == [None, None]
    assert answers[2] is not None, "the limit still holds in this process"
    assert shared.calls == 1, "the failing store is not waited for on every call"
