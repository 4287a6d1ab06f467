"""The Router: its own Redis client on the gateway's topology and timeout, and the limits it leaves to the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy_core.adapters.litellm_router import build_router, redis_cache_options, router_deployments
from proxy_core.config_files import ConfigError, ModelCatalog
from proxy_core.redis_options import RedisOptions, RedisTls
from proxy_core.services.rate_limits import DeploymentLimit

ROUTED = ModelCatalog.model_validate(
    {
        "model_list": [
            {"model_name": "routed", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "rpm": 5}},
            {"model_name": "routed", "litellm_params": {"model": "openai/b", "api_base": "http://b/v1", "rpm": 15}},
            {"model_name": "tokens", "litellm_params": {"model": "openai/c", "tpm": 1000}, "model_info": {"id": "t"}},
            {"model_name": "plain", "litellm_params": {"model": "openai/d"}},
        ]
    }
)


def test_router_redis_gets_the_gateway_timeout_and_namespace() -> None:
    """LiteLLM's default is 5 s per Redis call: a frozen Redis cost routed calls 7-12 s."""
    options = RedisOptions(mode="standalone", url="redis://127.0.0.1:6379/0", timeout_s=0.5)
    router = build_router(ROUTED, options, key_prefix="gw-test")
    assert router is not None
    try:
        redis_cache = router.cache.redis_cache
        assert redis_cache is not None
        assert redis_cache.redis_kwargs["socket_timeout"] == 0.5
        assert redis_cache.redis_kwargs["socket_connect_timeout"] == 2.0
        assert redis_cache.namespace == "gw-test:router"
        assert redis_cache.init_async_client().connection_pool.connection_kwargs["socket_timeout"] == 0.5
    finally:
        router.discard()


def test_limits_become_the_gateways_and_weights_keep_the_split() -> None:
    model_list, limits = router_deployments(ROUTED)
    params = {entry["model_info"]["id"]: entry["litellm_params"] for entry in model_list}
    assert set(params) == {"routed-1", "routed-2", "t"}, "a name without limits or peers is not routed"
    assert params["routed-1"] == {"model": "openai/a", "api_base": "http://a/v1", "weight": 5.0}
    assert params["routed-2"]["weight"] == 15.0
    assert "tpm" not in params["t"]
    assert limits == [
        DeploymentLimit("routed", "routed-1", rpm=5),
        DeploymentLimit("routed", "routed-2", rpm=15),
        DeploymentLimit("tokens", "t", tpm=1000),
    ]


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True])
def test_a_limit_must_be_a_positive_integer(value: object) -> None:
    catalog = ModelCatalog.model_validate(
        {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": value}}]}
    )
    with pytest.raises(ConfigError, match=r"'m' has rpm=.*; it must be a positive integer"):
        router_deployments(catalog)


def test_cache_options_per_topology(tmp_path: Path) -> None:
    tls = RedisTls(ca_file=tmp_path / "ca.pem")
    standalone = RedisOptions(mode="standalone", url="rediss://h:1/2", username="u", tls=tls, timeout_s=1.0)
    assert redis_cache_options(standalone, "gw")["url"] == f"rediss://u@h:1/2?ssl_ca_certs={tmp_path}/ca.pem"

    cluster: dict[str, Any] = redis_cache_options(RedisOptions(mode="cluster", url="redis://n:7001", tls=tls), "gw")
    assert cluster["startup_nodes"] == [{"host": "n", "port": 7001}]
    assert (cluster["ssl"], cluster["ssl_ca_certs"], cluster["namespace"]) == (
        True,
        str(tmp_path / "ca.pem"),
        "gw:router",
    )
    assert "url" not in cluster, "a URL makes LiteLLM's blocking cluster client pass 'ssl' to each connection"

    sentinel = redis_cache_options(
        RedisOptions(mode="sentinel", url=None, sentinels=(("s1", 1), ("s2", 2)), service="m", db=3), "gw"
    )
    assert sentinel["sentinel_nodes"] == [["s1", 1], ["s2", 2]]
    assert (sentinel["service_name"], sentinel["db"]) == ("m", 3)


def test_an_unreachable_cluster_does_not_stop_the_router(caplog: pytest.LogCaptureFixture) -> None:
    """LiteLLM's cluster client connects as it is made; the Router keeps its counters in process instead."""
    options = RedisOptions(mode="cluster", url="redis://127.0.0.1:1", timeout_s=0.2)
    router = build_router(ROUTED, options)
    assert router is not None
    try:
        assert router.cache.redis_cache is None
        assert "its Redis client could not be made" in caplog.text
    finally:
        router.discard()


def test_a_discarded_router_leaves_no_hook_in_litellms_global_lists() -> None:
    """LiteLLM's own ``discard`` left the routing strategy's logger registered: every later
    Router in the process (a test's next gateway) ran the stale one too, on a closed client."""
    import litellm

    lists = ("callbacks", "success_callback", "_async_success_callback", "failure_callback", "_async_failure_callback")
    before = {name: list(getattr(litellm, name)) for name in lists}
    catalog = ModelCatalog.model_validate(
        {**ROUTED.model_dump(), "router_settings": {"routing_strategy": "least-busy"}}
    )
    router = build_router(catalog, None)
    assert router is not None
    assert any(len(getattr(litellm, name)) > len(before[name]) for name in lists)
    router.discard()
    assert {name: list(getattr(litellm, name)) for name in lists} == before
