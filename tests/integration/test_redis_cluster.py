"""A real 3-master Redis Cluster (TLS, an ACL user): keys per rollout in one slot, MOVED/ASK, the whole gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from proxy_core.adapters.embedded_traces import SpanWrite
from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.adapters.redis_store import RedisRolloutStore
from proxy_core.adapters.redis_traces import RedisTraceBackend
from proxy_core.config_files import ModelCatalog
from proxy_core.redis_options import RedisOptions, RedisTls
from proxy_core.services.store import Usage, rollout_key, usage_key
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path
from tests.redis_servers import Access, Cluster, make_certificates, redis_cluster, wait_for

ROLLOUTS = [f"rollout-{n}" for n in range(10)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    # LiteLLM's blocking cluster client cannot present a client certificate: the servers ask for none,
    # the gateway's own clients present one anyway.
    access = Access(make_certificates(directory / "tls"), "gateway", "cluster-secret", client_certificate="optional")
    with redis_cluster(directory, access) as running:
        yield running


def options(cluster: Cluster, **overrides: Any) -> RedisOptions:
    tls = cluster.access.tls
    assert tls is not None
    values: dict[str, Any] = {
        "mode": "cluster",
        "url": cluster.url,
        "username": "gateway",
        "password": SecretStr(cluster.access.password or ""),
        "tls": RedisTls(tls.ca, tls.client_cert, tls.client_key),
        "timeout_s": 2.0,
    }
    return RedisOptions(**{**values, **overrides})


def settings_for(cluster: Cluster) -> dict[str, Any]:
    """The gateway's settings for the cluster, as environment variables would give them."""
    tls = cluster.access.tls
    assert tls is not None
    return {
        "redis_mode": "cluster",
        "redis_url": cluster.url,
        "redis_username": "gateway",
        "redis_password": cluster.access.password,
        "redis_tls_ca_file": tls.ca,
        "redis_tls_cert_file": tls.client_cert,
        "redis_tls_key_file": tls.client_key,
    }


async def test_each_rollout_lives_in_one_slot_and_rollouts_spread_over_the_masters(
    cluster: Cluster, key_prefix: str
) -> None:
    connection = RedisConnection(options(cluster))
    store = RedisRolloutStore(connection, prefix=key_prefix, ttl_s=600)
    try:
        await connection.learn_topology()  # as the gateway's start-up does
        await asyncio.gather(*(store.record("proj", r, f"id-{r}", Usage(3, 4, 0.5)) for r in ROLLOUTS))
        burst = [f"burst-{n:03d}" for n in range(300)]  # more at once than one node's connection pool
        await asyncio.gather(*(store.record("proj", ROLLOUTS[0], i) for i in burst))
        assert await store.insertion_ids("proj", ROLLOUTS[0]) == {f"id-{ROLLOUTS[0]}", *burst}
        status = await store.status("proj", ROLLOUTS[1])
        assert (status.count, status.prompt_tokens, status.completion_tokens, status.cost_usd) == (1, 3, 4, 0.5)
    finally:
        await connection.aclose()
    masters = set()
    with cluster.client() as client:
        for rollout in ROLLOUTS:
            ids, usage = rollout_key(key_prefix, "proj", rollout), usage_key(key_prefix, "proj", rollout)
            assert rollout in ids
            assert client.keyslot(ids) == client.keyslot(usage)
            assert 0 < client.ttl(ids) <= 600
            assert 0 < client.ttl(usage) <= 600
            masters.add(cluster.owner(client.keyslot(ids)).port)
    assert len(masters) == 3, "ten rollouts spread over the three masters"


def _move_slot(cluster: Cluster, slot: int, *, finish: bool) -> tuple[int, int]:
    """Start moving ``slot`` to another master (MIGRATING/IMPORTING, keys migrated); with ``finish``,
    give it to the new master. Returns (old, new) ports."""
    source = cluster.owner(slot)
    target = next(node for node in cluster.nodes if node is not source)
    ids = cluster.node_ids()
    with target.client() as target_client, source.client() as source_client:
        target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        source_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
        keys = source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            auth = ["AUTH2", "gateway", cluster.access.password]
            source_client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *keys)
        if finish:
            for node in cluster.nodes:
                with node.client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    return source.port, target.port


async def test_moved_and_ask_redirections_are_followed(cluster: Cluster, key_prefix: str) -> None:
    """The client learnt the slot map before the slots moved; it follows MOVED and ASK to the new owner."""
    with cluster.client() as client:
        moved, asked = f"moved-{uuid.uuid4().hex[:6]}", f"asked-{uuid.uuid4().hex[:6]}"
        moved_slot = client.keyslot(rollout_key(key_prefix, "p", moved))
        asked_slot = client.keyslot(rollout_key(key_prefix, "p", asked))
    connection = RedisConnection(options(cluster))
    store = RedisRolloutStore(connection, prefix=key_prefix, ttl_s=600)
    try:
        await store.record("p", moved, "before")
        await store.record("p", asked, "before")
        # A script runs mid-migration only if every key it names is on one side: give the rollout
        # its voided-ids set too (otherwise Redis answers TRYAGAIN until the slot has moved).
        await store.void("p", asked, "voided")
        old, new = _move_slot(cluster, moved_slot, finish=True)
        await store.record("p", moved, "after")  # MOVED: the slot map is refreshed
        assert await store.insertion_ids("p", moved) == {"before", "after"}
        # Half-way: the keys went to the importing master, the slot is still the old one's. The old
        # master answers ASK; the client asks the new one, which holds both keys of the script.
        old_asked, new_asked = _move_slot(cluster, asked_slot, finish=False)
        await store.record("p", asked, "during")
        assert await store.insertion_ids("p", asked) == {"before", "during"}
    finally:
        await connection.aclose()
    assert cluster.owner(moved_slot).port == new != old
    assert cluster.owner(asked_slot).port == old_asked != new_asked
    node = next(n for n in cluster.nodes if n.port == new_asked)
    with node.client() as direct:
        direct.execute_command("ASKING")
        assert direct.smembers(rollout_key(key_prefix, "p", asked)) == {"before", "during"}


def routed_catalog(upstream_url: str, suffix: str, rpm: int = 3) -> ModelCatalog:
    """The test catalogue plus ``limited`` (one deployment at ``rpm``), routed by usage, so
    LiteLLM's Router keeps usage counters in Redis."""
    base = catalog_for(upstream_url).model_dump()
    limited = {
        "model_name": "limited",
        "litellm_params": {"model": "openai/fake-model", "api_base": f"{upstream_url}/v1", "api_key": "k", "rpm": rpm},
        "model_info": {"id": f"limited-{suffix}"},
    }
    base["model_list"] = [*base["model_list"], limited]
    base["router_settings"] = {"routing_strategy": "usage-based-routing-v2"}
    return ModelCatalog.model_validate(base)


async def test_two_gateways_on_the_cluster_record_limit_and_read_back_one_rollout(
    cluster: Cluster, gateway_factory: GatewayFactory, upstream: Any, key_prefix: str
) -> None:
    before = _all_keys(cluster)
    models = routed_catalog(upstream[0].url, uuid.uuid4().hex[:8])
    first, second = (gateway_factory(catalog=models, **settings_for(cluster)) for _ in range(2))
    rollout = f"cl-{uuid.uuid4().hex[:8]}"
    acknowledged = set()
    for n, gateway in enumerate((first, second) * 5):
        reply = await _post(gateway, f"/project_id/proj-a/{rollout_path(rollout)}/chat/completions", "fake", n)
        assert reply.status_code == 200, reply.text
        acknowledged.add(reply.headers["x-insertion-id"])

    for gateway in (first, second):
        traces = await _get(gateway, "/project_id/proj-a/traces", {"tags": f"rollout_id:{rollout}", "timeout_s": 30})
        assert traces.status_code == 200, traces.text
        found = {t.removeprefix("insertion_id:") for x in traces.json()["traces"] for t in x["tags"]}
        assert acknowledged <= found

    statuses = [(await _post(g, "/v1/chat/completions", "limited", 0)).status_code for g in (first, second) * 2]
    assert statuses == [200, 200, 200, 429]

    def new_keys() -> set[str]:  # LiteLLM's Router writes its usage counters in the background
        keys = _all_keys(cluster) - before
        return keys if any(key.startswith(f"{key_prefix}:router:") for key in keys) else set()

    keys = await asyncio.to_thread(wait_for, new_keys, 15, "the Router's usage counters on the cluster")
    assert all(key.startswith(f"{key_prefix}:") for key in keys), [k for k in keys if not k.startswith(key_prefix)]


def _all_keys(cluster: Cluster) -> set[str]:
    with cluster.client() as client:
        return {key for node in client.get_primaries() for key in client.scan_iter(target_nodes=node, count=1000)}


async def _post(gateway: Gateway, path: str, model: str, n: int) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": f"turn {n}"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        return await http.post(path, json=body)


async def _get(gateway: Gateway, path: str, params: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers={"authorization": "Bearer k"}) as http:
        return await http.get(path, params=params)


async def test_the_embedded_trace_store_writes_several_traces_in_one_transaction(
    cluster: Cluster, key_prefix: str
) -> None:
    """A write spans several traces and tags in one MULTI/EXEC: on a cluster its keys share the project's slot."""
    connection = RedisConnection(options(cluster))
    backend = RedisTraceBackend(connection.client, prefix=key_prefix, ttl_s=60, timeout_s=2.0)
    try:
        await backend.write(
            "proj",
            [
                SpanWrite("trace-1", "span-1", ("rollout_id:r", "insertion_id:a"), b"one"),
                SpanWrite("trace-2", "span-2", ("rollout_id:r", "insertion_id:b"), b"two"),
            ],
        )
        assert await backend.traces_tagged("proj", "rollout_id:r") == {"trace-1": [b"one"], "trace-2": [b"two"]}
    finally:
        await connection.aclose()
