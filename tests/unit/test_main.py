"""The process entry point: configuration errors, uvicorn's options, runtime tuning."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest
from pydantic_settings import SettingsError

from proxy_core import main as main_module
from proxy_core.config_files import ConfigError, ModelCatalog, SecretsFile
from proxy_core.main import (
    GIL_SWITCH_INTERVAL_S,
    YOUNG_GENERATION_THRESHOLD,
    main,
    tune_garbage_collector,
    tune_thread_switching,
    uvicorn_options,
)
from proxy_core.settings import Settings


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


def test_a_settings_parse_error_is_one_line_and_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unparsable() -> Settings:
        raise SettingsError('error parsing value for field "limits" from source "EnvSettingsSource"')

    monkeypatch.setattr(main_module, "Settings", unparsable)
    assert main() == 2
    assert capsys.readouterr().err == "proxy_core: invalid configuration: LIMITS: cannot be parsed\n"


def test_a_config_error_spanning_lines_is_reported_on_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bad_file() -> Settings:
        raise ConfigError("s.yaml is not valid YAML: while parsing\n  in line 1\nexpected '}'")

    monkeypatch.setattr(main_module, "Settings", bad_file)
    assert main() == 2
    assert capsys.readouterr().err == (
        "proxy_core: invalid configuration: s.yaml is not valid YAML: while parsing in line 1 expected '}'\n"
    )


def test_uvicorn_logs_access_without_query_values_and_serves_no_websockets() -> None:
    options = uvicorn_options(Settings(secrets=SecretsFile(), catalog=ModelCatalog()))
    assert options["ws"] == "none"
    access = options["log_config"]["loggers"]["uvicorn.access"]
    assert access["filters"] == ["query_values"]
    assert options["log_config"]["filters"]["query_values"] == {"()": "proxy_core.serving.QueryValuesFilter"}
