"""Giving a swept table's memory back: a dict keeps the hash table of its largest size.

Deleting from a Python dict frees the entries but not the table's slots: after 100,000 expired
rollouts were swept, the empty table still held ~7 MB (traced). Once a sweep has left a table at
most a batch of entries and far below the size it once had, it is copied into one of the right
size; the copy costs at most a batch, like the sweep itself.
"""

from __future__ import annotations

from typing import Any, TypeVar

SHRINK_BELOW = 1 / 8

D = TypeVar("D", bound=dict[Any, Any])


class Shrinking:
    """The largest size a table reached since it was last copied, to tell when to copy it."""

    def __init__(self) -> None:
        self.peak = 0

    def grew(self, size: int) -> None:
        if size > self.peak:
            self.peak = size

    def shrunk(self, table: D, limit: int) -> D:
        """``table``, or a compact copy of it (same type, same order) once it holds at most
        ``limit`` entries and less than ``SHRINK_BELOW`` of its peak."""
        if len(table) <= limit and len(table) < self.peak * SHRINK_BELOW:
            self.peak = len(table)
            return table.copy()  # type: ignore[return-value]
        return table
