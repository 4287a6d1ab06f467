"""The deployments' rpm/tpm windows in Redis, shared by every worker and replica.

Each counter is a key ``{prefix}:limits:{<model name>}:<deployment id>:rpm|tpm`` that expires when
its window closes (its TTL is the time left, on Redis's clock). The model name is the hash tag,
so every counter of one name lives in one Redis Cluster slot and one script reads or updates them
in a single round trip, atomically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.exceptions import RedisError

from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.errors import StoreUnavailableError
from proxy_core.services.rate_limits import WINDOW_MS, UsageWindows, Window, WindowKey
from proxy_core.services.store import key_part

# Every key's value and milliseconds left (0 when no window is open).
READ_SCRIPT = """
local result = {}
for i, key in ipairs(KEYS) do
  local left = redis.call('PTTL', key)
  if left < 0 then left = 0 end
  result[2 * i - 1] = tonumber(redis.call('GET', key) or '0')
  result[2 * i] = left
end
return result
"""
# A counter without a TTL is a window just opened (or one that lost its TTL): it closes in a window.
_OPEN = """
local function open(key, window)
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, window) end
end
"""
# Refuse (0, ms left of the full window) if the tokens or the requests are at their limit (0 = no
# limit); otherwise count the request (opening its window) and return (1, 0).
ADMIT_SCRIPT = (
    _OPEN
    + """
local window = tonumber(ARGV[3])
for i = 2, 1, -1 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    open(KEYS[i], window)
    if tonumber(redis.call('GET', KEYS[i]) or '0') >= limit then
      return {0, math.max(0, redis.call('PTTL', KEYS[i]))}
    end
  end
end
if tonumber(ARGV[1]) > 0 then
  redis.call('INCR', KEYS[1])
  open(KEYS[1], window)
end
return {1, 0}
"""
)
ADD_SCRIPT = (
    _OPEN
    + """
redis.call('INCRBY', KEYS[1], ARGV[1])
open(KEYS[1], ARGV[2])
return 1
"""
)


def window_key(prefix: str, key: WindowKey) -> str:
    return f"{prefix}:limits:{{{key_part(key.group)}}}:{key_part(key.deployment_id)}:{key.metric}"


class RedisUsageWindows(UsageWindows):
    """Implements ``UsageWindows`` on the application's Redis connection (any topology)."""

    def __init__(self, connection: RedisConnection, *, prefix: str) -> None:
        self._prefix = prefix
        self._deadline_s = connection.deadline_s
        client = connection.client
        self._read = client.register_script(READ_SCRIPT)
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._add = client.register_script(ADD_SCRIPT)

    async def read(self, keys: Sequence[WindowKey]) -> list[Window]:
        values = await self._run(self._read(keys=[window_key(self._prefix, key) for key in keys]))
        return [Window(int(values[i]), int(values[i + 1])) for i in range(0, len(values), 2)]

    async def admit(self, requests: WindowKey, rpm: int | None, tokens: WindowKey, tpm: int | None) -> Window | None:
        keys = [window_key(self._prefix, requests), window_key(self._prefix, tokens)]
        admitted, ms_left = await self._run(self._admit(keys=keys, args=[rpm or 0, tpm or 0, WINDOW_MS]))
        return None if int(admitted) else Window(0, int(ms_left))

    async def add(self, key: WindowKey, amount: int) -> None:
        await self._run(self._add(keys=[window_key(self._prefix, key)], args=[amount, WINDOW_MS]))

    async def _run(self, pending: Awaitable[Any]) -> list[int]:
        try:
            async with asyncio.timeout(self._deadline_s):
                result: list[int] = await pending
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not reach the rate-limit counters ({type(exc).__name__}).") from exc
        return result
