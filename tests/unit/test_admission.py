"""Past the concurrency limit a request gets a 503 in the OpenAI shape at once; probes never do."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from proxy_core.api.admission import UNLIMITED_PATHS, ConcurrencyLimit


class _HeldApp:
    """Answers 200 once ``release`` is set; counts the requests it started."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.started += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_requests_past_the_limit_get_503_with_retry_after_and_probes_pass() -> None:
    held = _HeldApp()
    limited = ConcurrencyLimit(held, limit=3)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://gw") as client:
        first = [asyncio.create_task(client.post("/v1/chat/completions", json={})) for _ in range(3)]
        await _until(lambda: held.started == 3)
        refused = await client.post("/v1/chat/completions", json={})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {
            "error": {
                "message": "The gateway is serving its limit of 3 concurrent requests; retry shortly.",
                "type": "api_error",
                "param": None,
                "code": "server_overloaded",
            }
        }
        assert held.started == 3  # the refused request never reached the application
        probes = [asyncio.create_task(client.get(path)) for path in sorted(UNLIMITED_PATHS)]
        await _until(lambda: held.started == 3 + len(UNLIMITED_PATHS))
        held.release.set()
        assert [r.status_code for r in await asyncio.gather(*first, *probes)] == [200] * (3 + len(UNLIMITED_PATHS))
        assert limited.in_flight == 0
        assert (await client.post("/v1/chat/completions", json={})).status_code == 200  # room again


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimit(_HeldApp(), limit=0)  # type: ignore[arg-type]
