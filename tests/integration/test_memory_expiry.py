"""Without Redis, a running gateway drops expired rollouts, logs and traces with no request asking."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from proxy_core.app import create_app
from proxy_core.config_files import SecretsFile
from proxy_core.settings import Settings
from tests.fakes.server import ServerThread
from tests.integration.conftest import catalog_for, rollout_path
from tests.integration.test_rollout_logs import record

ROLLOUTS = 6
TTL_S = 2


def held(app: object) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for part in app.state.sweeper.structures:  # type: ignore[attr-defined]
        counts = part.held()
        sizes.update(counts if isinstance(counts, dict) else {type(part).__name__: counts})
    return sizes


async def test_the_lifespan_sweeps_expired_entries_from_process_memory() -> None:
    settings = Settings(
        redis_url=None,
        redis_key_ttl_s=TTL_S,
        memory_sweep_interval_s=0.2,
        secrets=SecretsFile(),  # no Langfuse project: traces go to the embedded store, in process
        catalog=catalog_for("http://127.0.0.1:9"),
        tracing_batch_delay_ms=20,
    )
    app = create_app(settings)
    with ServerThread(app, loop="asyncio") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for _ in range(ROLLOUTS):
                rollout = f"sweep-{uuid.uuid4().hex[:8]}"
                body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
                answer = await http.post(f"/{rollout_path(rollout)}/chat/completions", json=body)
                assert answer.status_code == 200, answer.text
                assert (await http.post("/logs", json=record(rollout, code=100))).status_code == 200
        await asyncio.sleep(0.5)  # the traces' export
        before = held(app)
        for table in ("rollouts", "MemoryRolloutLogs", "MemoryTraceBackend"):
            assert before[table] == ROLLOUTS, before
        await asyncio.sleep(TTL_S + 0.5)  # no request in between: only the sweep can drop them
        after = held(app)
        sweeper = app.state.sweeper
    assert after == {name: 0 for name in after}, after
    assert sweeper.dropped >= 3 * ROLLOUTS
