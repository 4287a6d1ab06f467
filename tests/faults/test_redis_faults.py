"""A rollout store that refuses writes or freezes, against a real gateway process and a Redis of
the test's own: readiness tells the truth, the provider is not paid for calls that cannot be
recorded, and /traces returns no phantom step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy_core.services.store import rollout_key
from tests.e2e.process import PROJECT, ROLLOUT, GatewayProcess, flush_only_env
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app
from tests.faults.redis_process import RedisProcess
from tests.faults.traffic import run_traffic

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path) as server:
        yield server


@pytest.fixture
def fakes() -> Iterator[tuple[ServerThread, UpstreamState, ServerThread, LangfuseState]]:
    upstream_state = UpstreamState()
    langfuse_state = LangfuseState({PROJECT[0]: (PROJECT[1], PROJECT[2])})
    with (
        ServerThread(create_upstream_app(upstream_state)) as upstream,
        ServerThread(create_langfuse_app(state=langfuse_state)) as langfuse,
    ):
        yield upstream, upstream_state, langfuse, langfuse_state


@pytest.fixture
def gateway(
    tmp_path: Path,
    redis_server: RedisProcess,
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
) -> Iterator[GatewayProcess]:
    upstream, _, langfuse, _ = fakes
    env = flush_only_env(tmp_path, upstream.url, langfuse.url, redis_server.url, "faults")
    env.update(TRACING_BATCH_DELAY_MS="200", REDIS_TIMEOUT_S="1")
    process = GatewayProcess(env, tmp_path)
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def wait_ready_status(gateway: GatewayProcess, status: int, within_s: float) -> float:
    started = time.monotonic()
    while httpx.get(f"{gateway.url}/ready", timeout=5).status_code != status:
        assert time.monotonic() - started < within_s, f"/ready did not turn {status} within {within_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def tracked(gateway: GatewayProcess, rollout: str, text: str = "hi") -> httpx.Response:
    body = {"model": "fake", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gateway.url}/{ROLLOUT.format(r=rollout)}/chat/completions", json=body, timeout=30)


def test_a_store_refusing_writes_is_unready_and_costs_no_provider_call(
    gateway: GatewayProcess,
    redis_server: RedisProcess,
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
) -> None:
    upstream_state = fakes[1]
    assert tracked(gateway, "w").status_code == 200
    redis_server.config_set("min-replicas-to-write", "1")  # writes fail (NOREPLICAS), reads still work
    took = wait_ready_status(gateway, 503, within_s=5)  # no traffic: the gateway's own probe finds out
    store = httpx.get(f"{gateway.url}/ready", timeout=5).json()["store"]
    assert store["state"] == "down"
    assert "NOREPLICAS" in (store["last_error"] or "") or "replicas" in (store["last_error"] or "").lower()
    before = len(upstream_state.completion_requests)
    for n in range(12):
        refused = tracked(gateway, "w", f"refused {n}")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert httpx.get(f"{gateway.url}/rollouts/w", timeout=5).status_code == 200  # a read works in between
    assert len(upstream_state.completion_requests) == before, "the provider was paid for unrecordable calls"
    redis_server.config_set("min-replicas-to-write", "0")
    back = wait_ready_status(gateway, 200, within_s=15)
    assert tracked(gateway, "w").status_code == 200
    print(f"/ready turned 503 {took:.1f} s after writes were refused and 200 {back:.1f} s after they were taken")


def test_a_frozen_store_costs_a_handful_of_provider_calls_and_leaves_no_phantom(
    gateway: GatewayProcess,
    redis_server: RedisProcess,
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
) -> None:
    upstream_state, langfuse_state = fakes[1], fakes[3]
    assert tracked(gateway, "frozen").status_code == 200
    redis_server.freeze()
    try:
        frozen_from = len(upstream_state.completion_requests)
        during = run_traffic(gateway.url, "frozen", rate_per_s=20, seconds=6)
        paid_while_frozen = len(upstream_state.completion_requests) - frozen_from
    finally:
        redis_server.thaw()
    assert paid_while_frozen <= 10, f"{paid_while_frozen} provider calls for {len(during.statuses)} requests"
    assert len(during.statuses) >= 100
    wait_ready_status(gateway, 200, within_s=15)
    after = run_traffic(gateway.url, "frozen", rate_per_s=20, seconds=1)
    acknowledged = during.acknowledged | after.acknowledged
    assert after.share_ok() == 1.0
    # Every call that reached the provider was traced; only recorded ones are steps of the rollout.
    langfuse_state.wait_for(lambda: len(langfuse_state.traces(PROJECT[0])) >= len(acknowledged) + 1, timeout=20)
    response = httpx.get(f"{gateway.url}/traces", params={"tags": "rollout_id:frozen", "limit": 1000}, timeout=60)
    assert response.status_code == 200, response.text
    returned = {t.removeprefix("insertion_id:") for trace in response.json()["traces"] for t in trace["tags"]
                if t.startswith("insertion_id:")}  # fmt: skip
    assert acknowledged <= returned
    assert len(returned) == response.json()["total_traces"] == len(acknowledged) + 1, "a phantom step was returned"
    print(f"frozen 6 s at 20 req/s: {len(during.statuses)} requests, {paid_while_frozen} provider calls")


def test_a_restarted_store_with_aof_keeps_every_acknowledged_id(
    tmp_path: Path, fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState]
) -> None:
    """Redis killed and started again during traffic (AOF; the compose file flushes it every second,
    which loses nothing to a killed process either): the gateway reconnects by itself, and every
    acknowledged id is still recorded."""
    upstream, _, langfuse, _ = fakes
    (tmp_path / "redis").mkdir()
    redis_server = RedisProcess(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always").start()
    env = flush_only_env(tmp_path, upstream.url, langfuse.url, redis_server.url, "restart")
    env.update(TRACING_BATCH_DELAY_MS="200", REDIS_TIMEOUT_S="1")
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready()
        before = run_traffic(gateway.url, "restart", rate_per_s=20, seconds=2)
        redis_server.stop()
        down = run_traffic(gateway.url, "restart", rate_per_s=20, seconds=1)
        assert all(status in (200, 503) for status in down.statuses), down.statuses
        redis_server.start()
        wait_ready_status(gateway, 200, within_s=15)
        after = run_traffic(gateway.url, "restart", rate_per_s=20, seconds=2)
        assert after.share_ok() == 1.0, after.statuses
        acknowledged = before.acknowledged | down.acknowledged | after.acknowledged
        with redis_server.client() as client:
            recorded = client.smembers(rollout_key("restart", PROJECT[0], "restart"))
        assert acknowledged <= recorded, f"{len(acknowledged - recorded)} acknowledged ids were lost"
    finally:
        gateway.kill()
        redis_server.stop()
