"""What a test's Redis namespace holds, apart from the gateway's write-probe key (which holds no data)."""

from __future__ import annotations

import redis.asyncio

from proxy_core.services.store import probe_key


async def data_keys(client: redis.asyncio.Redis, prefix: str) -> list[str]:
    return [key async for key in client.scan_iter(match=f"{prefix}:*") if key != probe_key(prefix)]
