"""A circuit breaker with a half-open state: closed → open → one trial → closed or open again.

A dead, frozen or write-refusing rollout store must cost requests as little as possible: once
``threshold`` consecutive failures have been seen, callers are refused at once for ``cooldown_s``.
When the cool-down is over the breaker is half-open: exactly one caller is let through as a trial
(``try_acquire_trial``), everyone else is still refused, and that one outcome decides whether the
breaker closes or opens for another cool-down. Letting every waiting caller through at the end of
the cool-down, as a plain timer would, sends a whole burst into a store that may still be down.
"""

from __future__ import annotations

import time
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one kind of operation (see the module docstring)."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 5.0) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._open_until: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        if time.monotonic() < self._open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def admits(self) -> bool:
        """Whether an ordinary caller may go ahead (only while closed)."""
        return self._open_until is None

    def retry_after_s(self) -> int:
        """Whole seconds until the next trial may run (at least 1)."""
        if self._open_until is None:
            return 1
        return max(1, int(self._open_until - time.monotonic() + 0.999))

    def try_acquire_trial(self) -> bool:
        """In the half-open state, the right to run the one trial; False for everyone else."""
        if self.state is not BreakerState.HALF_OPEN or self._trial_running:
            return False
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._open_until = None
        self._trial_running = False

    def failed(self) -> None:
        was_trial = self._trial_running
        self._trial_running = False
        self._failures += 1
        if was_trial or self._failures >= self._threshold:
            self._open_until = time.monotonic() + self._cooldown_s
            self._failures = 0
