"""The gateway's one retry policy: bounded attempts, a total deadline, jittered backoff, Retry-After.

Every place that waits and tries again goes through ``retrying`` (polling Langfuse until a
rollout's traces are all visible), its blocking twin (loading the secrets at start-up) or
``backoff_s`` (replaying spooled trace spans, a loop that keeps its own schedule), so backoff and
``Retry-After`` handling are decided once. Built on tenacity.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_any,
    retry_base,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)
from tenacity.stop import stop_base


class RetryableError(Exception):
    """A failure worth retrying; ``retry_after_s`` is the server's requested pause, if any."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def backoff_s(attempt: int, *, base_s: float = 0.25, cap_s: float = 8.0, retry_after_s: float | None = None) -> float:
    """The pause before try number ``attempt + 1``: exponential, equal jitter, at least ``Retry-After``.

    Equal jitter spreads clients out but never waits zero; a server's requested pause wins when
    it is longer. Used by ``retrying`` and by loops that keep their own schedule (trace replay).
    """
    step = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    delay = step / 2 + random.uniform(0, step / 2)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return float(delay)


def _wait(base_s: float, cap_s: float, deadline: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        retry_after = error.retry_after_s if isinstance(error, RetryableError) else None
        delay = backoff_s(state.attempt_number, base_s=base_s, cap_s=cap_s, retry_after_s=retry_after)
        return float(max(0.0, min(delay, deadline - time.monotonic())))

    return wait


class _StopAt(stop_base):
    """Stop once the deadline (a ``time.monotonic()`` instant) has passed."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self._deadline


def retrying(
    *,
    attempts: int,
    deadline: float,
    base_s: float = 0.25,
    cap_s: float = 8.0,
    until: Callable[[Any], bool] | None = None,
) -> AsyncRetrying:
    """An ``AsyncRetrying`` that retries ``RetryableError`` (and results failing ``until``).

    ``deadline`` is a ``time.monotonic()`` instant; no attempt starts after it. When attempts
    run out on results, the last result is returned (the caller judges it); when they run out
    on errors, the last error is raised.
    """
    retry: retry_base = retry_if_exception_type(RetryableError)
    if until is not None:
        retry = retry_any(retry, retry_if_result(lambda result: not until(result)))
    return AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)) | _StopAt(deadline),
        wait=_wait(base_s, cap_s, deadline),
        retry=retry,
        reraise=True,
        retry_error_callback=_last_result,
    )


def retrying_blocking(*, deadline: float, base_s: float = 0.25, cap_s: float = 8.0) -> Retrying:
    """The blocking twin of ``retrying`` for code on threads of its own (loading the secrets):
    retries ``RetryableError`` until ``deadline``, then raises the last one."""
    return Retrying(
        stop=_StopAt(deadline),
        wait=_wait(base_s, cap_s, deadline),
        retry=retry_if_exception_type(RetryableError),
        reraise=True,
    )


def _last_result(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()
