"""The composition root: ``create_app(settings)`` wires settings, adapters, services and routes.

Long-lived clients (the Redis pool, the tracing exporters) are created in the lifespan, once per
application, and closed there on shutdown: traces still queued are flushed within
``SHUTDOWN_FLUSH_TIMEOUT_S`` so that a graceful stop loses no acknowledged completion's trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from proxy_core.adapters.embedded_traces import (
    EmbeddedOrLangfuseIntake,
    EmbeddedOrLangfuseSource,
    EmbeddedTraceStore,
    MemoryTraceBackend,
    TraceBackend,
)
from proxy_core.adapters.langfuse_api import LangfuseReadClient
from proxy_core.adapters.litellm_client import LiteLLMClient
from proxy_core.adapters.litellm_origin import provider_of_model
from proxy_core.adapters.litellm_router import LimitedRouter, build_router
from proxy_core.adapters.litellm_tracing import ExportTuning, LangfuseTracing
from proxy_core.adapters.memory_rollout_logs import MemoryRolloutLogs
from proxy_core.adapters.memory_spool import MemorySpanSpool
from proxy_core.adapters.memory_store import MemoryRolloutStore
from proxy_core.adapters.otlp_intake import LangfuseOtlpIntake
from proxy_core.adapters.otlp_json import OtlpJsonCodec
from proxy_core.adapters.prometheus_metrics import PrometheusMetrics
from proxy_core.adapters.proxy_forwarder import HttpxProxyTransport
from proxy_core.adapters.redis_budget import RedisTokenBuckets
from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.adapters.redis_limits import RedisUsageWindows
from proxy_core.adapters.redis_rollout_logs import RedisRolloutLogs
from proxy_core.adapters.redis_spool import RedisSpanSpool
from proxy_core.adapters.redis_store import RedisRolloutStore
from proxy_core.adapters.redis_traces import RedisTraceBackend
from proxy_core.adapters.stream_limits import StreamLimits
from proxy_core.api import dispatch, health, openapi
from proxy_core.api.admission import ConcurrencyLimit
from proxy_core.api.deps import Services
from proxy_core.api.errors import register_error_handlers
from proxy_core.api.observability import ObservedFastAPI
from proxy_core.config_files import ConfigError
from proxy_core.secrets_wiring import build_secrets_source, current_secrets
from proxy_core.services.auth import AuthProvider
from proxy_core.services.base_url import BaseUrlPolicy
from proxy_core.services.budget import ReadBudgets
from proxy_core.services.completions import CompletionPolicy, CompletionService
from proxy_core.services.expiry import Expiring, ExpirySweeper
from proxy_core.services.forwarding import ForwardingService
from proxy_core.services.governance import Governance
from proxy_core.services.llm import LlmClient
from proxy_core.services.metrics import GatewayMetrics, MetricsService
from proxy_core.services.models import ModelResolver
from proxy_core.services.preparation import RequestPreparer
from proxy_core.services.projects import ProjectDirectory
from proxy_core.services.prompts import PromptCache
from proxy_core.services.response_cache import ResponseCache
from proxy_core.services.rollout_logs import RolloutLogsService, RolloutLogStore
from proxy_core.services.sanitizer import Sanitizer
from proxy_core.services.scores import ScoresService
from proxy_core.services.secrets import (
    SecretsRefresher,
)
from proxy_core.services.store import GuardedStore, RolloutStore
from proxy_core.services.trace_delivery import TraceDelivery
from proxy_core.services.trace_ports import SpanSpool
from proxy_core.services.trace_projects import DeliveryTuning
from proxy_core.services.trace_source import TraceSource
from proxy_core.services.traces import TracesService
from proxy_core.settings import Settings

logger = logging.getLogger("proxy_core")

# Without writes of its own for this long, the gateway probes the rollout store (readiness).
STORE_PROBE_INTERVAL_S = 1.0

StoreFactory = Callable[[Settings, RedisConnection | None], RolloutStore]
LogStoreFactory = Callable[[Settings, RolloutStore], RolloutLogStore]
TraceSourceFactory = Callable[[Settings, RedisConnection | None], TraceSource]


def connect_redis(settings: Settings) -> RedisConnection | None:
    """The application's one Redis client for the configured topology, or None without Redis."""
    options = settings.redis_options
    if options is None:
        return None
    logger.info("Redis: %s mode, %d replica(s) must confirm each insertion id", options.mode, options.wait_replicas)
    return RedisConnection(options)


def build_store(settings: Settings, redis: RedisConnection | None) -> RolloutStore:
    """Redis when configured; otherwise an in-process store (single process only)."""
    if redis is None:
        logger.warning("no Redis configured: using an in-process rollout store (single process only)")
        return MemoryRolloutStore(ttl_s=settings.redis_key_ttl_s)
    return RedisRolloutStore(redis, prefix=settings.redis_key_prefix, ttl_s=settings.redis_key_ttl_s)


def build_log_store(settings: Settings, store: RolloutStore) -> RolloutLogStore:
    """Remote rollouts' logs go where the rollouts are: on the Redis store's client, or in process."""
    if isinstance(store, RedisRolloutStore):
        return RedisRolloutLogs(
            store.client,
            prefix=settings.redis_key_prefix,
            ttl_s=settings.redis_key_ttl_s,
            timeout_s=settings.redis_timeout_s,
            max_entries=settings.rollout_log_max_entries,
        )
    return MemoryRolloutLogs(ttl_s=settings.redis_key_ttl_s, max_entries=settings.rollout_log_max_entries)


def build_embedded_traces(settings: Settings, store: RolloutStore) -> EmbeddedTraceStore:
    """The embedded trace store beside the rollout store: on its Redis client, or in process."""
    backend: TraceBackend
    if isinstance(store, RedisRolloutStore):
        backend = RedisTraceBackend(
            store.client,
            prefix=settings.redis_key_prefix,
            ttl_s=settings.redis_key_ttl_s,
            timeout_s=settings.redis_timeout_s,
        )
    else:
        backend = MemoryTraceBackend(ttl_s=settings.redis_key_ttl_s, max_bytes=settings.embedded_traces_max_mb << 20)
    return EmbeddedTraceStore(backend)


def build_trace_source(settings: Settings, redis: RedisConnection | None) -> TraceSource:
    """One pooled HTTP client for every Langfuse read, with a per-project read budget shared by
    every process through Redis when there is one."""
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        follow_redirects=False,
    )
    shared = RedisTokenBuckets(redis, prefix=settings.redis_key_prefix) if redis is not None else None
    return LangfuseReadClient(client, ReadBudgets(settings.langfuse_read_rps, settings.langfuse_read_burst, shared))


def build_llm_router(settings: Settings, redis: RedisConnection | None) -> LimitedRouter | None:
    """LiteLLM's Router for the routed names, its counters and the rpm/tpm windows in Redis when configured."""
    windows = RedisUsageWindows(redis, prefix=settings.redis_key_prefix) if redis is not None else None
    return build_router(settings.catalog, settings.redis_options, windows=windows, key_prefix=settings.redis_key_prefix)


def _base_url_policy(settings: Settings) -> BaseUrlPolicy:
    try:
        return BaseUrlPolicy(settings.allowed_base_urls)
    except ValueError as exc:
        raise ConfigError(f"ALLOWED_BASE_URLS: {exc}") from exc


def build_spool(settings: Settings, store: RolloutStore) -> SpanSpool:
    """The trace spool beside the rollout store: in Redis (shared, durable) or in memory."""
    if isinstance(store, RedisRolloutStore):
        return RedisSpanSpool(
            store.client,
            prefix=settings.redis_key_prefix,
            max_bytes=settings.trace_spool_max_bytes,
            ttl_s=settings.redis_key_ttl_s,
            timeout_s=settings.redis_timeout_s * 2,
        )
    return MemorySpanSpool(max_bytes=settings.trace_spool_max_bytes)


def start_tracing(
    settings: Settings,
    projects: ProjectDirectory,
    sanitizer: Sanitizer,
    store: RolloutStore,
    embedded: EmbeddedTraceStore,
    metrics: GatewayMetrics,
    *,
    always: bool,
) -> LangfuseTracing | None:
    """The tracing logger and the delivery behind it, registered and running; None without
    projects (unless ``always``). Spans of embedded-store targets go to its intake."""
    if not projects.tracing_enabled and not always:
        return None
    delivery = TraceDelivery(
        targets=projects.targets,
        intake=EmbeddedOrLangfuseIntake(embedded, LangfuseOtlpIntake()),
        spool=build_spool(settings, store),
        codec=OtlpJsonCodec(),
        tuning=DeliveryTuning(
            max_batch_bytes=settings.trace_export_max_batch_bytes,
            live_timeout_s=settings.tracing_export_timeout_ms / 1000,
        ),
        metrics=metrics,
    )
    delivery.start()
    tracing = LangfuseTracing(
        delivery,
        destination=projects.project_at,
        redaction=sanitizer.span_redaction,
        tuning=ExportTuning(queue_size=settings.tracing_queue_size, batch_delay_ms=settings.tracing_batch_delay_ms),
    )
    tracing.register()
    return tracing


def create_app(
    settings: Settings,
    *,
    llm: LlmClient | None = None,
    store_factory: StoreFactory = build_store,
    log_store_factory: LogStoreFactory = build_log_store,
    trace_source_factory: TraceSourceFactory = build_trace_source,
    auth: AuthProvider | None = None,
) -> FastAPI:
    """Build the gateway. ``llm``/``store_factory``/``auth`` are seams for tests and embedders."""
    secrets_source = build_secrets_source(settings)
    secrets = current_secrets(settings, secrets_source, auth)
    refresher = SecretsRefresher(secrets, secrets_source, settings.secrets_refresh_s)
    projects = secrets.projects()
    models = ModelResolver(settings.catalog, provider_of_model)
    base_urls = _base_url_policy(settings)
    auth_provider = secrets.auth()
    sanitizer = Sanitizer(settings.catalog)
    sanitizer.warm_up([*secrets.snapshot.secrets.langfuse_keys, *settings.catalog.projects])
    catalog_settings = settings.catalog.litellm_settings
    policy = CompletionPolicy(
        trace_name=settings.trace_name,
        timeout_s=catalog_settings.request_timeout or settings.request_timeout,
        max_retries=settings.upstream_max_retries,
        drop_params=catalog_settings.drop_params,
    )
    metrics = PrometheusMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect_redis(settings)
        if redis is not None:
            await redis.learn_topology()
        inner_store = store_factory(settings, redis)
        store = GuardedStore(inner_store, metrics=metrics)
        embedded = build_embedded_traces(settings, inner_store)
        # A refresh of the secrets may bring the first project: then tracing runs from the start.
        tracing = start_tracing(settings, projects, sanitizer, inner_store, embedded, metrics, always=refresher.enabled)
        where = secrets_source.name if secrets_source is not None else settings.secrets_path
        if tracing is None:
            logger.warning("no Langfuse projects configured (%s): tracing is off", where)
        elif not secrets.snapshot.secrets.langfuse_keys:
            logger.warning("no Langfuse projects configured (%s): traces go to the embedded store", where)
        trace_source = EmbeddedOrLangfuseSource(embedded, trace_source_factory(settings, redis))
        governance = Governance(settings.catalog, settings.environment)
        owned: LiteLLMClient | None = None
        llm_client: LlmClient
        if llm is None:
            llm_client = owned = LiteLLMClient(
                build_llm_router(settings, redis),
                refuses=base_urls.address_rule,
                tracing=tracing,
                stream_limits=StreamLimits(settings.stream_idle_timeout_s, settings.max_stream_trace_bytes),
            )
        else:
            llm_client = llm
        completions = CompletionService(
            llm=llm_client,
            store=store,
            auth=auth_provider,
            projects=projects,
            models=models,
            base_urls=base_urls,
            policy=policy,
            governance=governance,
            sanitizer=sanitizer,
            preparer=RequestPreparer(governance, PromptCache(trace_source, settings.prompt_cache_ttl_s)),
            cache=ResponseCache(store, settings.catalog.response_cache),
            backlog=tracing.delivery if tracing is not None else None,
            metrics=metrics,
        )
        traces = TracesService(
            store=store,
            source=trace_source,
            auth=auth_provider,
            projects=projects,
            max_poll_interval_s=settings.traces_poll_max_interval_s,
            metrics=metrics,
        )
        scores = ScoresService(source=trace_source, auth=auth_provider, projects=projects)
        log_store = log_store_factory(settings, inner_store)
        logs = RolloutLogsService(
            store=log_store,
            auth=auth_provider,
            projects=projects,
            sanitizer=sanitizer,
            max_entry_bytes=settings.rollout_log_max_entry_bytes,
        )
        proxy: HttpxProxyTransport | None = None
        forwarding: ForwardingService | None = None
        if settings.litellm_proxy_url is not None:
            proxy = HttpxProxyTransport(settings.litellm_proxy_url, settings.request_timeout)
            proxy_key = settings.litellm_proxy_api_key
            forwarding = ForwardingService(proxy, auth_provider, proxy_key.get_secret_value() if proxy_key else None)
        services = Services(
            settings,
            completions,
            traces,
            store,
            settings.catalog.public_model_names,
            scores,
            logs,
            span_counts=tracing.span_counts if tracing is not None else None,
            delivery_report=tracing.delivery.report if tracing is not None else None,
            metrics=MetricsService(metrics, auth_provider),
            forwarding=forwarding,
        )
        app.state.services = services
        app.state.tracing = tracing
        store_watch = asyncio.create_task(store.watch(STORE_PROBE_INTERVAL_S), name="store-watch")
        held = (inner_store, log_store, embedded.backend)
        sweeper = ExpirySweeper(
            [part for part in held if isinstance(part, Expiring)], interval_s=settings.memory_sweep_interval_s
        )
        sweeper.start()
        app.state.sweeper = sweeper
        refresher.start()
        try:
            yield
        finally:
            services.shutting_down = True
            store_watch.cancel()
            await sweeper.aclose()
            await refresher.aclose()
            # One budget for everything tracing still holds: LiteLLM's logging, the processors,
            # the delivery (what it cannot deliver in time is spooled).
            deadline = time.monotonic() + settings.shutdown_flush_timeout_s
            if owned is not None:
                await owned.drain(max(0.0, deadline - time.monotonic()))
            if tracing is not None:
                await tracing.aclose(deadline)
            await trace_source.aclose()
            if proxy is not None:
                await proxy.aclose()
            await store.aclose()
            sanitizer.close()
            if owned is not None:
                await owned.aclose()
            if redis is not None:
                await redis.aclose()
            metrics.close()

    app = ObservedFastAPI(
        metrics=metrics,
        title="proxy-core",
        summary="Evaluation-aware OpenAI-compatible LLM gateway",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    openapi.install(app)
    register_error_handlers(app)
    if settings.max_concurrent_requests > 0:
        app.add_middleware(ConcurrencyLimit, limit=settings.max_concurrent_requests)
    app.include_router(health.router)
    app.include_router(dispatch.router)
    return app
