"""LiteLLM's ``Router`` for the model names that need routing: several deployments, fallbacks.

Names with one deployment and no fallback chain are called directly (``litellm.acompletion``),
which saves the Router's per-call overhead on the common path. With Redis configured, the
Router keeps its usage counters (rpm/tpm per deployment) and cooldowns there, so limits hold
across workers and replicas.
"""

from __future__ import annotations

from typing import Any

import litellm

from proxy_core.adapters.redis_store import MIN_CONNECT_TIMEOUT_S
from proxy_core.config_files import ModelCatalog


def router_model_list(catalog: ModelCatalog) -> list[dict[str, Any]]:
    """The routed deployments, each with a stable id (reported as ``x-gateway-deployment``)."""
    routed = catalog.routed_names()
    model_list: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for deployment in catalog.model_list:
        if deployment.model_name not in routed:
            continue
        index = counts[deployment.model_name] = counts.get(deployment.model_name, 0) + 1
        info = dict(deployment.model_info)
        info.setdefault("id", f"{deployment.model_name}-{index}")
        model_list.append(
            {"model_name": deployment.model_name, "litellm_params": dict(deployment.litellm_params), "model_info": info}
        )
    return model_list


def build_router(catalog: ModelCatalog, redis_url: str | None, redis_timeout_s: float = 2.0) -> litellm.Router | None:
    """One Router for the application, or None when no model name needs one.

    With Redis, the Router keeps its rpm/tpm counters there through a Redis client of its own;
    it gets the gateway's ``REDIS_TIMEOUT_S`` (LiteLLM's default is 5 s per call), so a frozen
    Redis costs a routed call what it costs the rollout store.
    """
    model_list = router_model_list(catalog)
    if not model_list:
        return None
    settings = catalog.router_settings
    options: dict[str, Any] = {
        "model_list": model_list,
        "routing_strategy": settings.routing_strategy,
        "fallbacks": [{source: list(targets)} for chain in settings.fallbacks for source, targets in chain.items()],
        "num_retries": settings.num_retries,
        "retry_after": settings.retry_after,
    }
    for name in ("timeout", "allowed_fails", "cooldown_time"):
        value = getattr(settings, name)
        if value is not None:
            options[name] = value
    if redis_url is not None:
        options["redis_url"] = redis_url
        options["cache_kwargs"] = {
            "socket_timeout": redis_timeout_s,
            "socket_connect_timeout": max(redis_timeout_s, MIN_CONNECT_TIMEOUT_S),
        }
    return litellm.Router(**options)
