"""The process entry point's runtime tuning."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from proxy_core.main import (
    GIL_SWITCH_INTERVAL_S,
    YOUNG_GENERATION_THRESHOLD,
    tune_garbage_collector,
    tune_thread_switching,
)


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


@pytest.fixture
def restored_switch_interval() -> Iterator[None]:
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("restored_switch_interval")
def test_threads_hand_over_the_gil_sooner_than_cpythons_default() -> None:
    sys.setswitchinterval(0.005)
    tune_thread_switching()
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    assert GIL_SWITCH_INTERVAL_S < 0.005
