"""The metrics port: what the gateway counts and times, named by what happened, not by the backend.

Services and the HTTP layer report through ``GatewayMetrics``; the Prometheus adapter implements
it, ``NoMetrics`` is the default for tests and embedders that do not scrape. Every label value a
caller passes comes from a small fixed set or from the gateway's configuration (route templates,
configured project ids, outcome and state names), never from a request: a rollout, row, user or
insertion id as a label would make one series per id and grow a scrape without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from proxy_core.errors import (
    GatewayError,
    PermissionDeniedError,
    RateLimitError,
    ShuttingDownError,
    StoreUnavailableError,
    UpstreamError,
)
from proxy_core.services.auth import AuthProvider

# Completion outcomes (``gateway_completions_total{outcome}``).
SUCCESS = "success"
CANCELLED = "cancelled"
INVALID_REQUEST = "invalid_request"
RATE_LIMITED = "rate_limited"
PROVIDER_ERROR = "provider_error"
STORE_UNAVAILABLE = "store_unavailable"
ERROR = "error"
# Breaker states (``gateway_breaker_state{state}``), as ``breaker.BreakerState`` names them.
BREAKER_STATES = ("closed", "open", "half_open")
# The client went away (499): not one of the gateway's errors, but not a success either.
CLIENT_CLOSED_STATUS = 499


def outcome_of(error: BaseException) -> str:
    """The outcome label of a completion that ended with ``error``."""
    if isinstance(error, GatewayError):
        if error.status_code == CLIENT_CLOSED_STATUS or isinstance(error, ShuttingDownError):
            return CANCELLED
        if isinstance(error, StoreUnavailableError):
            return STORE_UNAVAILABLE
        if isinstance(error, RateLimitError):
            return RATE_LIMITED
        if isinstance(error, UpstreamError):
            return PROVIDER_ERROR
        if error.status_code < 500:
            return INVALID_REQUEST
        return ERROR
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        return CANCELLED
    return ERROR


class GatewayMetrics(Protocol):
    """What the gateway reports; each method is cheap and never raises."""

    def request(self, route: str, method: str, code: int, duration_s: float) -> None:
        """One HTTP request answered (``route``: a template such as ``/project_id/{project_id}/traces``)."""

    def completion(self, project: str, endpoint: str, outcome: str) -> None:
        """One completion ended, well or not (``outcome``: one of the names above)."""

    def provider_duration(self, project: str, endpoint: str, seconds: float) -> None:
        """How long the provider took to answer a completion (a stream: until its last chunk)."""

    def overhead(self, project: str, endpoint: str, seconds: float) -> None:
        """The gateway's own time on a successful completion: its handling minus the provider's."""

    def store_error(self, operation: str) -> None:
        """The rollout store failed a ``record`` or a ``read``."""

    def breaker_state(self, breaker: str, state: str) -> None:
        """A circuit breaker of this process moved to ``state``."""

    def traces_wait(self, project: str, outcome: str, seconds: float) -> None:
        """A ``/traces`` call waited ``seconds`` for a rollout's traces and ended with ``outcome``."""

    def spans(self, project: str, state: str, count: int) -> None:
        """``count`` trace spans of ``project`` reached ``state`` (queued, exported, spooled, replayed, …)."""

    def spool_depth(self, project: str, spans: int) -> None:
        """Spans of ``project`` in the trace spool (Langfuse could not take them yet), now."""


class NoMetrics:
    """Reports nothing: the default where nobody scrapes."""

    def request(self, route: str, method: str, code: int, duration_s: float) -> None:
        return None

    def completion(self, project: str, endpoint: str, outcome: str) -> None:
        return None

    def provider_duration(self, project: str, endpoint: str, seconds: float) -> None:
        return None

    def overhead(self, project: str, endpoint: str, seconds: float) -> None:
        return None

    def store_error(self, operation: str) -> None:
        return None

    def breaker_state(self, breaker: str, state: str) -> None:
        return None

    def traces_wait(self, project: str, outcome: str, seconds: float) -> None:
        return None

    def spans(self, project: str, state: str, count: int) -> None:
        return None

    def spool_depth(self, project: str, spans: int) -> None:
        return None


class MetricsPage(Protocol):
    """The scrape: the metrics of every worker of this gateway, in the backend's text format."""

    def render(self) -> tuple[bytes, str]:
        """The page and its content type."""
        ...


class MetricsService:
    """``GET /metrics``: open without gateway keys; with them, only to a key valid for every project.

    The page names every configured project (as label values), which a key bound to some
    projects must not learn, just as an unknown project's 404 does not list them.
    """

    def __init__(self, page: MetricsPage, auth: AuthProvider) -> None:
        self._page = page
        self._auth = auth

    async def scrape(self, headers: Mapping[str, str]) -> tuple[bytes, str]:
        principal = await self._auth.authenticate(headers)
        if principal.projects is not None:
            raise PermissionDeniedError("Reading /metrics needs a gateway key valid for every project ('*').")
        return self._page.render()
