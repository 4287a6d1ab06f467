"""Remote rollouts' log entries and latest status on Redis, beside the rollout's insertion ids.

Per rollout, two keys named after the rollout's own key (``rollout_key(...)``), so they share its
namespace (and its hash slot, once the key carries a hash tag) and an operator finds them with it:

* ``…:logs``, a LIST of entries (JSON), newest at the head, at most ``max_entries`` long;
* ``…:log-status``, a STRING: the ``/status`` fields of the latest record that had a status.

Both carry the rollout TTL, refreshed on every write, and are written by one Lua script per
rollout, so neither ever exists without it. ``/status`` is one ``GET``. The adapter uses the
rollout store's client: one connection pool for everything a rollout keeps.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy_core.adapters.redis_store import OVERLOAD_ALLOWANCE_S
from proxy_core.errors import StoreUnavailableError
from proxy_core.services.rollout_logs import StoredRecord
from proxy_core.services.store import rollout_key

# KEYS: the entry list, the status key. ARGV: entry, status ('' for none), TTL, max entries,
# refuse ('1': a full list refuses the entry; '0': the oldest entry makes room).
APPEND_SCRIPT = """
local held = redis.call('LLEN', KEYS[1])
local most = tonumber(ARGV[4])
if held >= most and ARGV[5] == '1' then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
if held >= most then redis.call('LTRIM', KEYS[1], 0, most - 1) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
else
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""


def logs_key(prefix: str, project_id: str, rollout_id: str) -> str:
    return f"{rollout_key(prefix, project_id, rollout_id)}:logs"


def log_status_key(prefix: str, project_id: str, rollout_id: str) -> str:
    return f"{rollout_key(prefix, project_id, rollout_id)}:log-status"


class RedisRolloutLogs:
    def __init__(self, client: Redis, *, prefix: str, ttl_s: int, timeout_s: float, max_entries: int) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._deadline_s = timeout_s * 2 + OVERLOAD_ALLOWANCE_S  # as the rollout store's own calls
        self._append = client.register_script(APPEND_SCRIPT)

    async def append(self, project_id: str, record: StoredRecord) -> str | None:
        """One script per rollout: each rollout's keys stay in one slot, whatever the topology.

        A record naming one rollout (the usual case) is checked and kept atomically. A record naming
        several is checked against all of them first, so a full log refuses it before anything is
        kept; a log that fills between the check and the write makes room (it never grows past
        ``max_entries``).
        """
        refuse = record.status is None
        try:
            async with asyncio.timeout(self._deadline_s):
                if refuse and len(record.rollout_ids) > 1:
                    full = await self._first_full(project_id, record.rollout_ids)
                    if full is not None:
                        return full
                    refuse = False
                kept = await asyncio.gather(
                    *(self._append_one(project_id, rollout_id, record, refuse) for rollout_id in record.rollout_ids)
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not keep the log record ({type(exc).__name__}).") from exc
        return None if all(kept) else record.rollout_ids[0]

    async def _first_full(self, project_id: str, rollout_ids: tuple[str, ...]) -> str | None:
        lengths = await asyncio.gather(
            *(self._client.llen(logs_key(self._prefix, project_id, rollout_id)) for rollout_id in rollout_ids)
        )
        return next((rid for rid, held in zip(rollout_ids, lengths, strict=True) if held >= self._max_entries), None)

    async def _append_one(self, project_id: str, rollout_id: str, record: StoredRecord, refuse: bool) -> bool:
        keys = [logs_key(self._prefix, project_id, rollout_id), log_status_key(self._prefix, project_id, rollout_id)]
        status = record.status or b""
        args: list[bytes | str | int] = [record.entry, status, self._ttl_s, self._max_entries, "1" if refuse else "0"]
        return bool(await self._append(keys=keys, args=args))

    async def entries(self, project_id: str, rollout_id: str) -> list[bytes | str]:
        try:
            async with asyncio.timeout(self._deadline_s):
                key = logs_key(self._prefix, project_id, rollout_id)
                entries: list[bytes | str] = await self._client.lrange(key, 0, -1)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not read the rollout's log ({type(exc).__name__}).") from exc
        return entries

    async def latest_status(self, project_id: str, rollout_id: str) -> bytes | str | None:
        try:
            async with asyncio.timeout(self._deadline_s):
                key = log_status_key(self._prefix, project_id, rollout_id)
                status: bytes | str | None = await self._client.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not read the rollout's status ({type(exc).__name__}).") from exc
        return status
