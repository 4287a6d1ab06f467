"""Per-deployment ``rpm`` / ``tpm`` limits, enforced before the call and shared by every process.

LiteLLM's Router treats a deployment's ``rpm``/``tpm`` as a weight under ``simple-shuffle`` (its
default) and checks them only under ``usage-based-routing-v2``, and its 429 always says
``Retry-After: 60``. The gateway enforces them itself, whatever the routing strategy: before a
call, deployments at their limit are taken out of the Router's choice, and the chosen one's
request is counted atomically (``admit``) — when every deployment of the name is at its limit
the answer is 429 ``rate_limit_exceeded`` with ``Retry-After`` = the seconds until the soonest
window reopens.

Windows are fixed, 60 s long, and open with a deployment's first request (or first tokens)
after the previous one closed; each counter is a key that expires when its window closes, so
the time left is the key's TTL on the store's own clock. A window admits at most ``rpm``
requests; a request is admitted while the window's tokens are below ``tpm`` and its tokens
(prompt + completion, known once it answered) are added afterwards, so calls in flight when a
window fills can take it past ``tpm`` by their own size. Fixed windows allow up to twice the
rate across a window boundary, never more in any one window.

With Redis the counters are shared by every worker and replica (``UsageWindows`` port); without
it they live in the one process. If the shared store fails, this process counts on its own for
a few seconds rather than refusing or waiving every limited call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy_core.services.shared_state import SharedOrLocal

WINDOW_MS = 60_000

Metric = Literal["rpm", "tpm"]
METRICS: tuple[Metric, ...] = ("rpm", "tpm")


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One counter: a deployment's requests or tokens. ``group`` (its model name) keeps all of a
    name's counters together (one Redis Cluster slot), so one round trip reads them all."""

    group: str
    deployment_id: str
    metric: Metric


@dataclass(frozen=True, slots=True)
class Window:
    """A counter's value in its open window and the milliseconds until that window closes (0: none open)."""

    used: int
    ms_left: int


class UsageWindows(Protocol):
    """Fixed-window counters (the port the shared store implements); failures raise ``StoreUnavailableError``."""

    async def read(self, keys: Sequence[WindowKey]) -> list[Window]:
        """Each key's open window, in order (all keys share one group)."""
        ...

    async def admit(self, requests: WindowKey, rpm: int | None, tokens: WindowKey, tpm: int | None) -> Window | None:
        """Count one request unless a window is full: None when counted, else the full window."""
        ...

    async def add(self, key: WindowKey, amount: int) -> None:
        """Add ``amount`` to the key's window, opening one if none is open."""
        ...


class LocalUsageWindows:
    """``UsageWindows`` in process memory: the no-Redis default (one process)."""

    def __init__(self) -> None:
        self._windows: dict[WindowKey, tuple[int, float]] = {}

    def _window(self, key: WindowKey, now: float) -> Window:
        used, closes = self._windows.get(key, (0, now))
        if closes <= now:
            self._windows.pop(key, None)
            return Window(0, 0)
        return Window(used, math.ceil((closes - now) * 1000))

    async def read(self, keys: Sequence[WindowKey]) -> list[Window]:
        now = time.monotonic()
        return [self._window(key, now) for key in keys]

    async def admit(self, requests: WindowKey, rpm: int | None, tokens: WindowKey, tpm: int | None) -> Window | None:
        now = time.monotonic()
        for key, limit in ((tokens, tpm), (requests, rpm)):
            window = self._window(key, now)
            if limit is not None and window.used >= limit:
                return window
        if rpm is not None:
            self._count(requests, 1, now)
        return None

    async def add(self, key: WindowKey, amount: int) -> None:
        self._count(key, amount, time.monotonic())

    def _count(self, key: WindowKey, amount: int, now: float) -> None:
        window = self._window(key, now)
        closes = now + (window.ms_left / 1000 if window.ms_left else WINDOW_MS / 1000)
        self._windows[key] = (window.used + amount, closes)


@dataclass(frozen=True, slots=True)
class DeploymentLimit:
    """A deployment's configured limits (``model_info.id`` of the Router's deployment)."""

    group: str
    deployment_id: str
    rpm: int | None = None
    tpm: int | None = None

    def key(self, metric: Metric) -> WindowKey:
        return WindowKey(self.group, self.deployment_id, metric)

    def cap(self, metric: Metric) -> int | None:
        return self.rpm if metric == "rpm" else self.tpm


def retry_after_s(ms_left: int) -> int:
    """Whole seconds a client waits for a window that closes in ``ms_left`` (at least 1)."""
    return max(1, math.ceil(ms_left / 1000))


class DeploymentLimits:
    """The gateway's rpm/tpm policy over a ``UsageWindows`` store (module docstring)."""

    def __init__(self, limits: Iterable[DeploymentLimit], shared: UsageWindows | None = None) -> None:
        self._limits = {limit.deployment_id: limit for limit in limits if limit.rpm or limit.tpm}
        self._windows = SharedOrLocal[UsageWindows](shared, LocalUsageWindows(), "rate limits")

    def __bool__(self) -> bool:
        return bool(self._limits)

    def limit_of(self, deployment_id: str | None) -> DeploymentLimit | None:
        return self._limits.get(deployment_id) if deployment_id is not None else None

    async def open_deployments(self, deployment_ids: Sequence[str]) -> tuple[list[str], int | None]:
        """The deployments under their limits, and (when some are not) the seconds until the
        soonest of those reopens."""
        limited = [self._limits[d] for d in deployment_ids if d in self._limits]
        if not limited:
            return list(deployment_ids), None
        keys = [limit.key(metric) for limit in limited for metric in METRICS]
        windows = dict(zip(keys, await self._windows.run(lambda store: store.read(keys)), strict=True))
        full: dict[str, int] = {}
        for limit in limited:
            for metric in METRICS:
                window, cap = windows[limit.key(metric)], limit.cap(metric)
                if cap is not None and window.used >= cap:
                    full[limit.deployment_id] = max(full.get(limit.deployment_id, 0), window.ms_left)
        open_ids = [d for d in deployment_ids if d not in full]
        return open_ids, (retry_after_s(min(full.values())) if full else None)

    async def admit(self, deployment_id: str) -> int | None:
        """Count one request to the deployment: None when admitted, else the seconds to wait."""
        limit = self._limits.get(deployment_id)
        if limit is None:
            return None
        refused = await self._windows.run(
            lambda store: store.admit(limit.key("rpm"), limit.rpm, limit.key("tpm"), limit.tpm)
        )
        return retry_after_s(refused.ms_left) if refused is not None else None

    async def spend(self, deployment_id: str | None, tokens: int) -> None:
        """Add a finished call's tokens to its deployment's window (only where a ``tpm`` is set)."""
        limit = self.limit_of(deployment_id)
        if limit is None or limit.tpm is None or tokens <= 0:
            return
        await self._windows.run(lambda store: store.add(limit.key("tpm"), tokens))
