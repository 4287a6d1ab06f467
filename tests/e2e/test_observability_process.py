"""``WORKERS=2`` and ``LOG_FORMAT=json`` as users run them: one scrape sums both workers, and every
line the gateway writes, from start-up to shutdown, is one JSON object."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bench.procfs import process_tree
from tests.e2e.process import PROJECT, ROLLOUT, GatewayProcess, flush_only_env
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads Linux /proc")]

SUCCEEDED, FAILED = 20, 2
ROUTE = (
    "/rollout_id/{rollout_id}/invocation_id/{invocation_id}/experiment_id/{experiment_id}/run_id/{run_id}"
    "/row_id/{row_id}/chat/completions"
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: GatewayProcess) -> Samples:
    with httpx.Client(timeout=10) as fresh:  # a new connection: any worker may answer
        page = fresh.get(f"{gateway.url}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(what)


def metrics_dir_of(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (entry,) = [item for item in environ if item.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(entry.partition(b"=")[2].decode())


def completions_by_worker(directory: Path) -> dict[str, float]:
    """Each worker's own count of successful completions, read from its files alone."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        (family,) = [f for f in MultiProcessCollector.merge([str(path)]) if f.name == "gateway_completions"] or [None]
        total = sum(s.value for s in family.samples if s.labels.get("outcome") == "success") if family else 0.0
        counts[path.stem.removeprefix("counter_")] = total
    return counts


def test_two_workers_answer_one_sum_and_log_json_from_start_to_shutdown(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    upstream, _, langfuse, _ = fakes
    env = flush_only_env(tmp_path, upstream.url, langfuse.url, redis_url, key_prefix)
    env.update(WORKERS="2", LOG_FORMAT="json", TRACING_BATCH_DELAY_MS="100")
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready(timeout=90)
        until(
            lambda: (
                value(scrape(gateway), "gateway_breaker_state", breaker="rollout_store_writes", state="closed") == 2
            ),
            60,
            "both workers started",
        )
        directory = metrics_dir_of(process_tree(gateway.process.pid)[1])
        url = f"{gateway.url}/{ROLLOUT.format(r='metrics')}/chat/completions"
        request_ids = {}
        for n in range(SUCCEEDED + FAILED):  # a new connection each: the kernel spreads them over the workers
            request_id = str(uuid.uuid4())
            content = "[[status=500]]" if n < FAILED else f"n={n}"
            answer = httpx.post(
                url,
                json={"model": "fake", "messages": [{"role": "user", "content": content}]},
                headers={"x-request-id": request_id},
                timeout=30,
            )
            assert answer.headers["x-request-id"] == request_id
            assert answer.status_code == (500 if n < FAILED else 200), answer.text
            request_ids[request_id] = answer.headers.get("x-insertion-id")

        per_worker = completions_by_worker(directory)
        assert len(per_worker) == 2, per_worker
        assert min(per_worker.values()) >= 1, per_worker
        for _ in range(6):  # whichever worker answers the scrape, it reports the sum
            samples = scrape(gateway)
            labels = {"project": PROJECT[0], "endpoint": "chat_completions"}
            assert value(samples, "gateway_completions_total", outcome="success", **labels) == SUCCEEDED
            assert value(samples, "gateway_completions_total", outcome="provider_error", **labels) == FAILED
            assert value(samples, "gateway_requests_total", route=ROUTE, method="POST", code="200") == SUCCEEDED
            assert value(samples, "gateway_requests_total", route=ROUTE, method="POST", code="500") == FAILED
            assert value(samples, "gateway_overhead_seconds_count", **labels) == SUCCEEDED
        until(
            lambda: (
                value(scrape(gateway), "gateway_trace_spans_total", project=PROJECT[0], state="exported")
                == SUCCEEDED + FAILED
            ),
            30,
            "every span exported",
        )

        assert gateway.terminate(timeout=60) in (0, -signal.SIGTERM)
        assert not directory.exists(), "the workers' metric files outlived the gateway"
    finally:
        gateway.kill()

    lines = [json.loads(line) for line in gateway.log.read_text().splitlines()]  # every line is JSON
    assert all({"timestamp", "level", "message", "request_id"} <= line.keys() for line in lines)
    messages = [line["message"] for line in lines]
    assert sum(m.startswith("Started server process") for m in messages) == 2
    assert sum(m.startswith("tracing stopped: ended=") for m in messages) == 2
    assert messages[-1].startswith("Stopping parent process")
    served = [line for line in lines if line["logger"] == "uvicorn.access" and line["path"].endswith("/completions")]
    assert {line["request_id"] for line in served} == set(request_ids)
    for line in served:  # a failed completion had its insertion id too; only the answer did not carry it
        assert line["insertion_id"] == (request_ids[line["request_id"]] or line["insertion_id"])
        assert (line["route"], line["project"]) == (ROUTE, PROJECT[0])
    failures = [line for line in lines if line["message"].startswith("request failed: status=500")]
    assert len(failures) == FAILED
    assert all(line["request_id"] in request_ids for line in failures)
