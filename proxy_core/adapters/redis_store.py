"""The rollout store on Redis (``redis.asyncio``), on any topology ``redis_connection`` builds.

Each rollout is a SET of insertion ids under ``{prefix}:{project}:rollout:{{rollout_id}}``, its
usage totals a hash beside it (ids escaped by ``key_part``, so no id can name another key; the
braces are a hash tag, so on a cluster both keys live in the rollout's one slot); a write is one
Lua script (``SADD`` + ``EXPIRE``, plus the usage totals), atomic and a single round trip, so no
key ever lives without a TTL. With ``REDIS_WAIT_REPLICAS`` the write is followed, on the same
connection, by ``WAIT`` (``REDIS_WAIT_TIMEOUT_MS``): the id is acknowledged only once that many replicas hold it, so a
failover cannot lose it; when they do not confirm in time the write is undone (best effort) and
the caller gets 503, so the unconfirmed id never becomes a phantom. Every call is bounded by a
short socket timeout and at most one immediate retry (a pooled connection may be stale after a
Redis restart or failover), so a dead or frozen Redis costs a request well under a second.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy_core.adapters.redis_connection import MIN_CONNECT_TIMEOUT_S, OVERLOAD_ALLOWANCE_S, RedisConnection
from proxy_core.errors import StoreUnavailableError
from proxy_core.redis_options import RedisOptions
from proxy_core.services.store import (
    RolloutStatus,
    Usage,
    cache_key,
    probe_key,
    rollout_key,
    usage_key,
    void_key,
)

__all__ = ["MIN_CONNECT_TIMEOUT_S", "OVERLOAD_ALLOWANCE_S", "RedisRolloutStore"]

logger = logging.getLogger(__name__)

PROBE_TTL_MS = 60_000
# One atomic command per completion: the id joins the rollout's set, the usage totals grow, and
# both keys get the TTL (a script runs atomically, like MULTI/EXEC, in a single round trip). An
# id already voided (its client was told the record failed) is not recorded.
RECORD_SCRIPT = """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""
# Voids an id whose record may or may not have happened: whichever of the two scripts runs first,
# the id ends up outside the rollout's set (and its usage outside the totals).
VOID_SCRIPT = """
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'prompt_tokens', 0 - tonumber(ARGV[3]))
  redis.call('HINCRBY', KEYS[2], 'completion_tokens', 0 - tonumber(ARGV[4]))
  redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', 0 - tonumber(ARGV[5]))
end
return 1
"""


class RedisRolloutStore:
    def __init__(
        self, target: RedisConnection | str, *, prefix: str, ttl_s: int, timeout_s: float | None = None
    ) -> None:
        """``target``: the application's shared connection, or a standalone URL (this store's own)."""
        if isinstance(target, str):
            target = RedisConnection(RedisOptions(mode="standalone", url=target, timeout_s=timeout_s or 2.0))
            self._owns_connection = True
        else:
            self._owns_connection = False
        self.connection = target
        self._prefix = prefix
        self._ttl_s = ttl_s
        # The socket timeouts bound each round trip (a frozen Redis fails in ~2 × timeout_s). This
        # outer deadline is only a safety net: it also counts waiting for a pooled connection and
        # event-loop delay, which under CPU overload are not the store's fault and must not trip
        # the circuit breaker.
        self._deadline_s = target.deadline_s
        self._client = target.client
        self._record_script = self._client.register_script(RECORD_SCRIPT)
        self._void_script = self._client.register_script(VOID_SCRIPT)
        self._wait_replicas = target.options.wait_replicas if target.waits_for_replicas else 0
        # Below the socket timeout (checked at start-up), so a slow replica reads as "not confirmed".
        options = target.options
        self._wait_timeout_ms = options.wait_timeout_ms or max(1, int(options.timeout_s * 500))

    @property
    def client(self) -> Any:
        """The store's client, shared with the other Redis adapters (a rollout's log, the trace
        spool, the embedded trace store): one pool, closed here."""
        return self._client

    def _key(self, project_id: str, rollout_id: str) -> str:
        return rollout_key(self._prefix, project_id, rollout_id)

    def _keys(self, project_id: str, rollout_id: str) -> list[str]:
        return [
            self._key(project_id, rollout_id),
            usage_key(self._prefix, project_id, rollout_id),
            void_key(self._prefix, project_id, rollout_id),
        ]

    def _args(self, insertion_id: str, usage: Usage | None) -> list[str | int | float]:
        usage = usage or Usage()
        return [insertion_id, self._ttl_s, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd or 0]

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        keys, args = self._keys(project_id, rollout_id), self._args(insertion_id, usage)
        try:
            async with asyncio.timeout(self._deadline_s):
                if not self._wait_replicas:
                    await self._record_script(keys=keys, args=args)
                    return
                confirmed = await self._record_and_wait(keys, args)
        except (RedisTimeoutError, RedisConnectionError, OSError, TimeoutError) as exc:
            # The script may have reached Redis before the connection failed (a frozen server
            # runs it when it wakes): the caller voids the id.
            raise StoreUnavailableError(
                f"Could not record the insertion id ({type(exc).__name__}).", outcome_unknown=True
            ) from exc
        except RedisError as exc:
            raise StoreUnavailableError(f"Could not record the insertion id ({type(exc).__name__}).") from exc
        if confirmed < self._wait_replicas:
            # Recorded on the master but not on enough replicas: a failover could lose it, so the
            # client is not told it succeeded, and the caller voids the id (no phantom step).
            await self.connection.recheck_master()
            raise StoreUnavailableError(
                f"The insertion id was not confirmed by {self._wait_replicas} Redis replica(s) "
                f"({confirmed} did); it was not recorded.",
                outcome_unknown=True,
            )

    async def _record_and_wait(self, keys: list[str], args: list[str | int | float]) -> int:
        """The write, then ``WAIT`` on the same connection (it counts that connection's writes)."""
        pipe = self._client.pipeline(transaction=False)
        await self._record_script(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
        results = await pipe.execute()
        return int(results[-1])

    async def void(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._void_script(keys=self._keys(project_id, rollout_id), args=self._args(insertion_id, usage))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not void the insertion id ({type(exc).__name__}).") from exc

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]:
        try:
            async with asyncio.timeout(self._deadline_s * 4):
                members = await self._client.smembers(self._key(project_id, rollout_id))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not read the rollout ({type(exc).__name__}).") from exc
        return {m if isinstance(m, str) else m.decode() for m in members}

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus:
        ids = await self.insertion_ids(project_id, rollout_id)
        try:
            async with asyncio.timeout(self._deadline_s):
                ttl = await self._client.ttl(self._key(project_id, rollout_id))
                totals = await self._client.hgetall(usage_key(self._prefix, project_id, rollout_id))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not read the rollout ({type(exc).__name__}).") from exc
        ordered = sorted(ids)
        return RolloutStatus(
            count=len(ordered),
            first_insertion_id=ordered[0] if ordered else None,
            last_insertion_id=ordered[-1] if ordered else None,
            ttl_s=ttl if ttl >= 0 else None,
            prompt_tokens=int(totals.get("prompt_tokens", 0)),
            completion_tokens=int(totals.get("completion_tokens", 0)),
            cost_usd=float(totals.get("cost_usd", 0.0)),
        )

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._deadline_s):
                value = await self._client.get(cache_key(self._prefix, project_id, key))
        except (RedisError, OSError, TimeoutError):
            return None
        return value.encode() if isinstance(value, str) else value

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._client.set(cache_key(self._prefix, project_id, key), body, ex=ttl_s)
        except (RedisError, OSError, TimeoutError):
            return

    async def probe_write(self) -> None:
        """``SET`` of a short-lived key of the gateway's own: fails while Redis refuses writes, and
        with ``REDIS_WAIT_REPLICAS`` while too few replicas confirm one (a record would fail too)."""
        key = probe_key(self._prefix)
        try:
            async with asyncio.timeout(self._deadline_s):
                if not self._wait_replicas:
                    await self._client.set(key, "1", px=PROBE_TTL_MS)
                    return
                pipe = self._client.pipeline(transaction=False)
                pipe.set(key, "1", px=PROBE_TTL_MS)
                pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
                confirmed = int((await pipe.execute())[-1])
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"The rollout store refused a write ({type(exc).__name__}: {exc}).") from exc
        if confirmed < self._wait_replicas:
            await self.connection.recheck_master()
            raise StoreUnavailableError(
                f"The rollout store's replicas did not confirm a write ({confirmed} of {self._wait_replicas})."
            )

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._deadline_s):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        """Close the connection if this store made it; a shared one is closed by its owner."""
        if self._owns_connection:
            await self.connection.aclose()
