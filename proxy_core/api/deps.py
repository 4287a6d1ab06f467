"""Dependencies: the per-application services container, built by the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from proxy_core.services.completions import CompletionService
from proxy_core.services.forwarding import ForwardingService
from proxy_core.services.metrics import MetricsService
from proxy_core.services.rollout_logs import RolloutLogsService
from proxy_core.services.scores import ScoresService
from proxy_core.services.store import GuardedStore
from proxy_core.services.traces import TracesService
from proxy_core.settings import Settings


@dataclass(slots=True)
class Services:
    """Long-lived objects shared by every request of one application instance."""

    settings: Settings
    completions: CompletionService
    traces: TracesService
    store: GuardedStore
    model_names: tuple[str, ...]
    scores: ScoresService
    logs: RolloutLogsService
    span_counts: Callable[[], dict[str, int]] | None = None
    delivery_report: Callable[[], dict[str, Any]] | None = None
    metrics: MetricsService | None = None
    shutting_down: bool = False
    forwarding: ForwardingService | None = None  # the catch-all, when LITELLM_PROXY_URL is set


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a thread pool, per request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
