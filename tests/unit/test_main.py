"""The process entry point's runtime tuning."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from proxy_core.main import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    survivor = [object() for _ in range(100)]
    tune_garbage_collector()
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold()[0] >= YOUNG_GENERATION_THRESHOLD
