"""LiteLLM's ``Router`` for the model names that need routing: several deployments, limits, fallbacks.

Names with one deployment and no fallback chain are called directly (``litellm.acompletion``),
which saves the Router's per-call overhead on the common path. With Redis configured, the
Router keeps its usage counters and cooldowns there (on the same topology as the rollout store,
under ``{REDIS_KEY_PREFIX}:router:``), so they hold across workers and replicas.

A deployment's ``rpm``/``tpm`` are the gateway's to enforce (``services.rate_limits``), under
every routing strategy: ``LimitedRouter`` leaves deployments at their limit out of the Router's
choice and counts the chosen one's request before the call. LiteLLM itself no longer sees them
as limits; where its ``simple-shuffle`` used them as weights, they become the deployments'
``weight``, so the traffic split is what it was.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import litellm

from proxy_core.adapters.litellm_errors import DeploymentRateLimitError
from proxy_core.adapters.redis_connection import MIN_CONNECT_TIMEOUT_S, tls_kwargs
from proxy_core.config_files import ConfigError, Deployment, ModelCatalog
from proxy_core.redis_options import RedisOptions
from proxy_core.services.llm import CallInfo, ChunkStream
from proxy_core.services.rate_limits import DeploymentLimit, DeploymentLimits, UsageWindows

logger = logging.getLogger(__name__)

LIMIT_KEYS = ("rpm", "tpm")
CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "_async_success_callback",
    "failure_callback",
    "_async_failure_callback",
)


def _limit(deployment: Deployment, name: str) -> int | None:
    value = deployment.litellm_params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model_list: {deployment.model_name!r} has {name}={value!r}; it must be a positive integer")
    return value


def _weights(deployments: Sequence[Deployment]) -> list[float] | None:
    """The weights ``simple-shuffle`` drew from for these deployments of one name: their
    ``weight`` if any has one, else their ``rpm``, else their ``tpm`` (None: uniform)."""
    for name in ("weight", "rpm", "tpm"):
        values = [float(d.litellm_params.get(name) or 0) for d in deployments]
        if max(values, default=0.0) > 0:
            return values
    return None


def router_deployments(catalog: ModelCatalog) -> tuple[list[dict[str, Any]], list[DeploymentLimit]]:
    """The routed deployments as the Router takes them, each with a stable id (reported as
    ``x-gateway-deployment``), and the limits the gateway enforces for them."""
    routed = catalog.routed_names()
    model_list: list[dict[str, Any]] = []
    limits: list[DeploymentLimit] = []
    for name in (name for name in catalog.public_model_names if name in routed):
        deployments = catalog.deployments_for(name)
        weights = _weights(deployments)
        for index, deployment in enumerate(deployments, start=1):
            info = dict(deployment.model_info)
            info.setdefault("id", f"{name}-{index}")
            params = {k: v for k, v in deployment.litellm_params.items() if k not in LIMIT_KEYS}
            if weights is not None:
                params["weight"] = weights[index - 1]
            model_list.append({"model_name": name, "litellm_params": params, "model_info": info})
            rpm, tpm = _limit(deployment, "rpm"), _limit(deployment, "tpm")
            if rpm is not None or tpm is not None:
                limits.append(DeploymentLimit(name, str(info["id"]), rpm, tpm))
    return model_list, limits


def router_model_list(catalog: ModelCatalog) -> list[dict[str, Any]]:
    return router_deployments(catalog)[0]


def _deployment_id(deployment: dict[str, Any]) -> str:
    return str((deployment.get("model_info") or {}).get("id"))


class LimitedRouter(litellm.Router):  # type: ignore[misc]
    """LiteLLM's Router with the gateway's rpm/tpm limits applied before every call (module docstring)."""

    def __init__(self, limits: DeploymentLimits, **options: Any) -> None:
        self.gateway_limits = limits
        before = {name: list(getattr(litellm, name)) for name in CALLBACK_LISTS}
        super().__init__(**options)
        # What the Router hooked into LiteLLM's global lists, its routing strategy's logger included:
        # its own ``discard`` leaves that logger behind, so a later Router would run it too.
        self._hooked = {
            name: [hook for hook in getattr(litellm, name) if not any(hook is old for old in before[name])]
            for name in CALLBACK_LISTS
        }

    def discard(self) -> None:
        """Unhook everything this Router hooked into LiteLLM's global callback lists."""
        super().discard()
        for name, hooks in self._hooked.items():
            hooked = getattr(litellm, name)
            hooked[:] = [hook for hook in hooked if not any(hook is mine for mine in hooks)]
        self._hooked = {}

    async def async_callback_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[dict[str, Any]],
        messages: Any,
        parent_otel_span: Any,
        request_kwargs: dict[str, Any] | None = None,
        logging_obj: Any = None,
    ) -> list[dict[str, Any]]:
        """LiteLLM's filters, then: deployments at their limit are not chosen; none left is a 429."""
        deployments: list[dict[str, Any]] = await super().async_callback_filter_deployments(
            model, healthy_deployments, messages, parent_otel_span, request_kwargs, logging_obj
        )
        if not self.gateway_limits or not deployments:
            return deployments
        open_ids, retry_after = await self.gateway_limits.open_deployments([_deployment_id(d) for d in deployments])
        if not open_ids:
            raise _refused(model, retry_after or 1)
        allowed = set(open_ids)
        return [deployment for deployment in deployments if _deployment_id(deployment) in allowed]

    async def async_routing_strategy_pre_call_checks(
        self, deployment: dict[str, Any], parent_otel_span: Any, logging_obj: Any = None
    ) -> None:
        """LiteLLM's checks, then the chosen deployment's request is counted, or refused (429)."""
        await super().async_routing_strategy_pre_call_checks(deployment, parent_otel_span, logging_obj)
        if not self.gateway_limits:
            return
        retry_after = await self.gateway_limits.admit(_deployment_id(deployment))
        if retry_after is not None:
            raise _refused(str(deployment.get("model_name")), retry_after)

    async def spend(self, info: CallInfo) -> None:
        """A finished call's tokens count towards its deployment's ``tpm`` window."""
        if self.gateway_limits:
            await self.gateway_limits.spend(info.deployment, info.prompt_tokens + info.completion_tokens)

    def counted(self, stream: ChunkStream) -> ChunkStream:
        """``stream``, whose tokens are spent (``spend``) once it has been read to its end."""
        if not self.gateway_limits:
            return stream
        return _SpendingStream(stream, self)


class _SpendingStream:
    """A routed stream that hands its usage to ``LimitedRouter.spend`` when it ends."""

    def __init__(self, inner: ChunkStream, router: LimitedRouter) -> None:
        self._inner = inner
        self._router = router

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        async for chunk in self._inner:
            yield chunk
        await self._router.spend(self._inner.info)

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def info(self) -> CallInfo:
        return self._inner.info


def _refused(model: str, retry_after_s: int) -> DeploymentRateLimitError:
    return DeploymentRateLimitError(
        f"Rate limit reached for model {model!r}: every deployment is at its configured rpm/tpm limit "
        f"for this window; retry in {retry_after_s} s.",
        model=model,
        retry_after_s=retry_after_s,
    )


def redis_cache_options(options: RedisOptions, prefix: str) -> dict[str, Any]:
    """LiteLLM's Redis cache options for the gateway's topology, credentials, TLS and timeouts.

    LiteLLM's default is 5 s per Redis call; with the gateway's ``REDIS_TIMEOUT_S`` a frozen
    Redis costs a routed call what it costs the rollout store.
    """
    cache: dict[str, Any] = {
        "namespace": f"{prefix}:router",
        "socket_timeout": options.timeout_s,
        "socket_connect_timeout": max(options.timeout_s, MIN_CONNECT_TIMEOUT_S),
    }
    tls = tls_kwargs(options)
    if options.mode == "standalone":
        # LiteLLM builds a URL-configured client from the URL alone (credentials and TLS files included).
        return {**cache, "url": options.url_with_credentials(**{k: v for k, v in tls.items() if k != "ssl"})}
    if options.username is not None:
        cache["username"] = options.username
    if options.password is not None:
        cache["password"] = options.password_value
    cache.update(tls)
    if options.mode == "cluster":
        host, port = options.node()
        return {**cache, "startup_nodes": [{"host": host, "port": port}]}
    cache.update(sentinel_nodes=[list(node) for node in options.sentinels], service_name=options.service, db=options.db)
    if options.sentinel_password is not None:
        cache["sentinel_password"] = options.sentinel_password_value
    return cache


def _attach_redis(router: LimitedRouter, options: RedisOptions, prefix: str) -> None:
    """Give the Router its own Redis client; if LiteLLM cannot make one, its counters stay in process.

    LiteLLM connects a cluster client as it makes it, so an unreachable cluster at start-up would
    otherwise stop the gateway; and its blocking cluster client cannot present a TLS client
    certificate. Either way the gateway starts, and says so: its own rate limits do not depend on
    the Router's counters.
    """
    try:
        cache = litellm.Router._create_redis_cache(redis_cache_options(options, prefix))
    except Exception as exc:  # LiteLLM raises whatever its Redis client raised
        logger.warning(
            "LiteLLM's Router keeps its usage counters and cooldowns in this process: "
            "its Redis client could not be made (%s: %s)",
            type(exc).__name__,
            exc,
        )
        return
    router.update_redis_cache(cache)


def build_router(
    catalog: ModelCatalog,
    redis: RedisOptions | None,
    *,
    windows: UsageWindows | None = None,
    key_prefix: str = "gw",
) -> LimitedRouter | None:
    """One Router for the application, or None when no model name needs one.

    ``windows``: where the rpm/tpm counters are shared (Redis); None counts in this process only.
    """
    model_list, limits = router_deployments(catalog)
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
    router = LimitedRouter(DeploymentLimits(limits, windows), **options)
    if redis is not None:
        _attach_redis(router, redis, key_prefix)
    return router
