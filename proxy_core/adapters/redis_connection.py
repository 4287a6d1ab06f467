"""Redis clients for the three topologies, built in one place and shared by every Redis adapter.

``standalone`` is one server (``redis.asyncio.Redis``); ``cluster`` is a Redis Cluster reached
through any node (``redis.asyncio.cluster.RedisCluster``, which learns the slot map and follows
``MOVED``/``ASK``); ``sentinel`` asks Sentinel for the current master before each new connection
and drops connections to a demoted one, so a failover is ridden out without a restart. Username,
password and TLS apply to every topology (and, with Sentinel, the TLS options to the sentinels too).

Whatever the topology, a process keeps at most ``MAX_CONNECTIONS`` sockets per server and a burst
queues for one instead of opening hundreds at once; each round trip is bounded by
``REDIS_TIMEOUT_S`` and retried at most once, immediately (a pooled socket may be stale after a
restart or a failover).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy_core.redis_options import RedisOptions

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
# Slack for waiting on a pooled connection and on a busy event loop, on top of the round trips.
OVERLOAD_ALLOWANCE_S = 3.0
# Opening a TCP socket is bounded apart from round trips. The bound is a clock around the
# event loop, so on a busy loop (a burst opening the pool's sockets at once, a long garbage
# collection) a healthy Redis on loopback can miss a sub-second one; a refused port still
# fails at once, and a frozen Redis is caught by the round-trip timeout after connecting.
MIN_CONNECT_TIMEOUT_S = 2.0
# Cluster clients retry a command on another node after MOVED or a connection error; bounded too.
CLUSTER_RETRIES = 2


def stale_connection_retry() -> Retry:
    """One immediate retry on a broken connection (a pooled one is stale after a Redis restart or a
    failover), none on a timeout: a frozen Redis would cost twice the timeout, and a script that
    timed out may have run (its usage totals would count twice)."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def deadline_s(timeout_s: float) -> float:
    """The outer bound of one store operation: two round trips (the first may meet a stale socket)
    plus the allowance; a safety net that also counts queueing for a connection and loop delay."""
    return timeout_s * 2 + OVERLOAD_ALLOWANCE_S


def tls_kwargs(options: RedisOptions) -> dict[str, Any]:
    """redis-py's TLS keyword arguments (empty when TLS is off)."""
    if options.tls is None:
        return {}
    kwargs: dict[str, Any] = {"ssl": True}
    if options.tls.ca_file is not None:
        kwargs["ssl_ca_certs"] = str(options.tls.ca_file)
    if options.tls.cert_file is not None:
        kwargs["ssl_certfile"] = str(options.tls.cert_file)
        kwargs["ssl_keyfile"] = str(options.tls.key_file)
    return kwargs


def _connection_kwargs(options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": options.timeout_s,
        "socket_connect_timeout": max(options.timeout_s, MIN_CONNECT_TIMEOUT_S),
        "health_check_interval": 30,
    }
    if options.username is not None:
        kwargs["username"] = options.username
    if options.password is not None:
        kwargs["password"] = options.password_value
    return kwargs


class _GatedCluster(RedisCluster):
    """A cluster client whose commands queue for one of ``MAX_CONNECTIONS`` slots.

    redis-py's cluster client raises ``MaxConnectionsError`` when a node's pool is full instead
    of waiting; the gate keeps a burst below that bound, as the blocking pool does elsewhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(MAX_CONNECTIONS)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().execute_command(*args, **kwargs)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's bound on sockets."""


def _standalone(options: RedisOptions) -> Redis:
    kwargs = _connection_kwargs(options)
    if (options.url or "").startswith("rediss://"):
        kwargs.update((name, value) for name, value in tls_kwargs(options).items() if name != "ssl")
    pool = BlockingConnectionPool.from_url(
        options.url or "",
        retry=stale_connection_retry(),
        max_connections=MAX_CONNECTIONS,
        timeout=deadline_s(options.timeout_s),
        **kwargs,
    )
    return Redis(connection_pool=pool)


def _cluster(options: RedisOptions) -> RedisCluster:
    host, port = options.node()
    return _GatedCluster(
        host=host,
        port=port,
        max_connections=MAX_CONNECTIONS,
        retry=Retry(NoBackoff(), CLUSTER_RETRIES),
        **_connection_kwargs(options),
        **tls_kwargs(options),
    )


def _sentinel(options: RedisOptions) -> tuple[Redis, Sentinel]:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": options.timeout_s,
        "socket_connect_timeout": max(options.timeout_s, MIN_CONNECT_TIMEOUT_S),
        **tls_kwargs(options),
    }
    if options.sentinel_username is not None:
        sentinel_kwargs["username"] = options.sentinel_username
    if options.sentinel_password is not None:
        sentinel_kwargs["password"] = options.sentinel_password_value
    sentinel = Sentinel(list(options.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(
        options.service or "",
        connection_pool_class=_BlockingSentinelPool,
        db=options.db,
        retry=stale_connection_retry(),
        max_connections=MAX_CONNECTIONS,
        timeout=deadline_s(options.timeout_s),
        **_connection_kwargs(options),
        **tls_kwargs(options),
    )
    return master, sentinel


class RedisConnection:
    """The application's Redis client for the configured topology (``client``), closed once at shutdown.

    ``client`` is a ``Redis`` (standalone, or the Sentinel-managed master) or a ``RedisCluster``;
    their command methods are the same, so adapters use either through the same calls, keeping
    every key of one multi-key script in one hash slot.
    """

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._sentinel: Sentinel | None = None
        self.client: Any
        if options.mode == "cluster":
            self.client = _cluster(options)
        elif options.mode == "sentinel":
            self.client, self._sentinel = _sentinel(options)
        else:
            self.client = _standalone(options)

    @property
    def deadline_s(self) -> float:
        return deadline_s(self.options.timeout_s)

    @property
    def waits_for_replicas(self) -> bool:
        """Whether writes that must survive a failover wait for ``WAIT`` (never on a cluster)."""
        return self.options.wait_replicas > 0 and self.options.mode != "cluster"

    async def learn_topology(self) -> None:
        """Have a cluster client learn which master serves which slots before the first burst.

        redis-py learns it on first use; a burst of first commands at once can then drop a
        connection another of them is opening. Best effort: a cluster unreachable now is learnt on
        first use, as it would have been, and readiness says so meanwhile.
        """
        if not isinstance(self.client, RedisCluster):
            return
        try:
            async with asyncio.timeout(self.deadline_s):
                await self.client.initialize()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("the Redis Cluster's topology could not be read at start-up: %s", type(exc).__name__)

    async def recheck_master(self) -> None:
        """With Sentinel, ask which server is the master now; connections to a former one are dropped.

        redis-py asks only when it opens a connection, so a pooled one keeps writing to a master
        that lost its replicas in a failover (or a partition) and is not demoted yet: writes that
        no replica confirms say so, and the next ones go to the new master.
        """
        if self._sentinel is None:
            return
        try:
            async with asyncio.timeout(self.deadline_s):
                await self.client.connection_pool.get_master_address()
        except (RedisError, OSError, TimeoutError):
            return  # the next connection asks again

    async def aclose(self) -> None:
        if isinstance(self.client, RedisCluster):
            await self.client.aclose()
        else:
            await self.client.aclose(close_connection_pool=True)
        if self._sentinel is not None:
            await self._sentinel.aclose()
