"""The Router's own Redis client waits no longer than the rollout store's."""

from __future__ import annotations

from proxy_core.adapters.litellm_router import build_router
from proxy_core.config_files import ModelCatalog

ROUTED = ModelCatalog.model_validate(
    {
        "model_list": [
            {"model_name": "routed", "litellm_params": {"model": "openai/a", "api_base": "http://a/v1", "rpm": 5}},
            {"model_name": "routed", "litellm_params": {"model": "openai/b", "api_base": "http://b/v1", "rpm": 5}},
        ]
    }
)


def test_router_redis_gets_the_gateway_timeout() -> None:
    """LiteLLM's default is 5 s per Redis call: a frozen Redis cost routed calls 7-12 s."""
    router = build_router(ROUTED, "redis://127.0.0.1:6379/0", redis_timeout_s=0.5)
    assert router is not None
    try:
        redis_cache = router.cache.redis_cache
        assert redis_cache is not None
        assert redis_cache.redis_kwargs["socket_timeout"] == 0.5
        assert redis_cache.redis_kwargs["socket_connect_timeout"] == 2.0
        assert redis_cache.init_async_client().connection_pool.connection_kwargs["socket_timeout"] == 0.5
    finally:
        router.discard()
