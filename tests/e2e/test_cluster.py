"""Two gateway processes on a 3-master Redis Cluster, configured as operators do: only REDIS_MODE and REDIS_URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy_core.services.store import rollout_key
from tests.e2e.process import ROLLOUT, GatewayProcess, flush_only_env
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.redis_servers import Cluster, redis_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_two_processes_serve_one_rollout_and_either_reads_it_back_complete(
    cluster: Cluster,
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    key_prefix: str,
) -> None:
    upstream, _, langfuse, _ = fakes
    env = flush_only_env(tmp_path, upstream.url, langfuse.url, cluster.url, key_prefix)
    env.update(REDIS_MODE="cluster", TRACING_BATCH_DELAY_MS="50")  # REDIS_URL names one node; no REDIS_HOST
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    gateways = [GatewayProcess(env, tmp_path / name) for name in ("a", "b")]
    try:
        for gateway in gateways:
            gateway.wait_ready()
        acknowledged = set()
        for n in range(10):
            gateway = gateways[n % 2]
            reply = httpx.post(
                f"{gateway.url}/{ROLLOUT.format(r='across')}/chat/completions",
                json={"model": "fake", "messages": [{"role": "user", "content": f"turn {n}"}]},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            acknowledged.add(reply.headers["x-insertion-id"])
        for gateway in gateways:
            traces = httpx.get(
                f"{gateway.url}/traces", params={"tags": "rollout_id:across", "timeout_s": 30}, timeout=60
            )
            assert traces.status_code == 200, traces.text
            tags = {tag for trace in traces.json()["traces"] for tag in trace["tags"]}
            assert {f"insertion_id:{i}" for i in acknowledged} <= tags
            assert traces.json()["total_traces"] == 10
    finally:
        for gateway in gateways:
            gateway.kill()
    with cluster.client() as client:
        assert client.smembers(rollout_key(key_prefix, "e2e", "across")) == acknowledged
