"""State shared by every process through a store (Redis), kept in process while the store fails.

Rate-limit windows and the Langfuse read budget are counters every worker and replica share.
When the store fails, refusing every call that needs one would turn a Redis hiccup into an
outage, and waiving them would let a burst through; counting in this process keeps each process
within the limit on its own until the store answers again. It is asked again after
``RETRY_SHARED_S``, not on every call, so a dead or frozen store costs no timeout per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from proxy_core.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

RETRY_SHARED_S = 5.0

S = TypeVar("S")
T = TypeVar("T")


class SharedOrLocal(Generic[S]):
    """Runs operations on ``shared`` (None: there is none), or on ``local`` while ``shared`` fails."""

    def __init__(self, shared: S | None, local: S, what: str) -> None:
        self._shared = shared
        self._local = local
        self._what = what
        self._local_until = 0.0

    async def run(self, operation: Callable[[S], Awaitable[T]]) -> T:
        if self._shared is not None and time.monotonic() >= self._local_until:
            try:
                return await operation(self._shared)
            except StoreUnavailableError as exc:
                logger.warning(
                    "%s: the shared store failed (%s); this process counts on its own for %.0f s",
                    self._what,
                    exc.message,
                    RETRY_SHARED_S,
                )
                self._local_until = time.monotonic() + RETRY_SHARED_S
        return await operation(self._local)
