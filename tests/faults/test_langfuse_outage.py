"""Langfuse outages against a real gateway process: every acknowledged trace arrives in the end.

The Langfuse emulator is stopped (connections refused) and started again on the same port with
the same data, as a restarted server would be; the gateway is stopped with SIGTERM or killed
with SIGKILL and started again on the same Redis. Each test counts what the gateway acknowledged
and what Langfuse received.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import PROJECT, GatewayProcess, flush_only_env, insertion_ids_received
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app
from tests.faults.traffic import run_traffic

pytestmark = pytest.mark.e2e


class Langfuse:
    """The emulator as a server that can be stopped and started again at the same address."""

    def __init__(self) -> None:
        self.state = LangfuseState({PROJECT[0]: (PROJECT[1], PROJECT[2])})
        self._server: ServerThread | None = ServerThread(create_langfuse_app(state=self.state)).start()
        self.port = self._server.port
        self.url = self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def start(self) -> None:
        self._server = ServerThread(create_langfuse_app(state=self.state), port=self.port).start()


@pytest.fixture
def langfuse() -> Iterator[Langfuse]:
    server = Langfuse()
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[ServerThread]:
    with ServerThread(create_upstream_app(UpstreamState())) as server:
        yield server


def gateway_env(
    tmp_path: Path, upstream: ServerThread, langfuse: Langfuse, redis_url: str, prefix: str
) -> dict[str, str]:
    env = flush_only_env(tmp_path, upstream.url, langfuse.url, redis_url, prefix)
    env["TRACING_BATCH_DELAY_MS"] = "200"
    return env


def ready(gateway: GatewayProcess) -> httpx.Response:
    return httpx.get(f"{gateway.url}/ready", timeout=5)


def wait_delivered(langfuse: Langfuse, acknowledged: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while insertion_ids_received(langfuse.state) != acknowledged:
        missing = len(acknowledged - insertion_ids_received(langfuse.state))
        assert time.monotonic() < deadline, f"{missing} of {len(acknowledged)} acknowledged traces never arrived"
        time.sleep(0.2)


def test_an_outage_loses_no_acknowledged_trace_and_keeps_the_gateway_ready(
    tmp_path: Path, upstream: ServerThread, langfuse: Langfuse, redis_url: str, key_prefix: str
) -> None:
    gateway = GatewayProcess(gateway_env(tmp_path, upstream, langfuse, redis_url, key_prefix), tmp_path)
    try:
        gateway.wait_ready()
        langfuse.stop()
        outcomes = run_traffic(gateway.url, "outage", rate_per_s=25, seconds=6)
        assert outcomes.share_ok() >= 0.95, outcomes.statuses
        during = ready(gateway)
        assert during.status_code == 200, "a Langfuse outage alone does not take the gateway out of rotation"
        project = during.json()["tracing"]["projects"][PROJECT[0]]
        assert project["langfuse"] == "down"
        assert project["spool"]["spans"] > 0
        assert insertion_ids_received(langfuse.state) == set()

        langfuse.start()
        recovered = time.monotonic()
        wait_delivered(langfuse, outcomes.acknowledged, timeout_s=60)
        after = ready(gateway).json()
        assert after["spans"]["dropped"] == 0
        assert after["spans"]["replayed"] + after["spans"]["exported"] >= len(outcomes.acknowledged)
        print(f"{len(outcomes.acknowledged)} acknowledged, all delivered {time.monotonic() - recovered:.1f} s "
              "after Langfuse answered again")  # fmt: skip
    finally:
        gateway.kill()


def test_a_killed_gateway_leaves_nothing_behind_that_its_successor_cannot_deliver(
    tmp_path: Path, upstream: ServerThread, langfuse: Langfuse, redis_url: str, key_prefix: str
) -> None:
    """SIGKILL 5 s after the last acknowledged completion, during an outage: the spans are in the
    Redis spool by then, and a new process started the same way delivers them."""
    env = gateway_env(tmp_path, upstream, langfuse, redis_url, key_prefix)
    first = GatewayProcess(env, tmp_path)
    try:
        first.wait_ready()
        langfuse.stop()
        outcomes = run_traffic(first.url, "killed", rate_per_s=20, seconds=3)
        assert outcomes.share_ok() >= 0.95
        time.sleep(5)
    finally:
        first.kill()
    langfuse.start()
    (tmp_path / "second").mkdir()
    second = GatewayProcess(env, tmp_path / "second")
    try:
        second.wait_ready()
        wait_delivered(langfuse, outcomes.acknowledged, timeout_s=90)
    finally:
        second.kill()


def test_one_oversized_span_does_not_take_the_others_down(
    tmp_path: Path, upstream: ServerThread, langfuse: Langfuse, redis_url: str, key_prefix: str
) -> None:
    """Behind an intake with a 4 MiB body limit: 40 small completions and one with 5 MB of content."""
    langfuse.state.max_ingest_bytes = 4 * 1024 * 1024
    env = gateway_env(tmp_path, upstream, langfuse, redis_url, key_prefix)
    env["TRACING_BATCH_DELAY_MS"] = "3000"  # all 41 spans in one batch
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready()
        small = run_traffic(gateway.url, "big", rate_per_s=40, seconds=0.5)
        big = run_traffic(gateway.url, "big", rate_per_s=1, seconds=0.5, content="x" * 5_000_000)
        acknowledged = small.acknowledged | big.acknowledged
        assert len(acknowledged) == len(small.statuses) + 1
        wait_delivered(langfuse, acknowledged, timeout_s=30)
        spans = ready(gateway).json()["spans"]
        assert spans["rejected"] == 0
        assert spans["truncated"] >= 1
    finally:
        gateway.kill()
