"""The tracing logger starts quietly: LiteLLM's proxy-server wiring is not the gateway's."""

from __future__ import annotations

import logging

import pytest

from proxy_core.adapters.litellm_tracing import LangfuseTracing


def test_start_up_logs_no_proxy_server_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    LangfuseTracing()
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
