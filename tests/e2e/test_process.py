"""The gateway as users run it: `python -m proxy_core` in its own process, stopped with SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.process import LONG, ROLLOUT, GatewayProcess, flush_only_env, insertion_ids_received
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState

pytestmark = pytest.mark.e2e


def test_sigterm_delivers_every_acknowledged_trace(
    flush_only: tuple[dict[str, str], LangfuseState], tmp_path: Path
) -> None:
    env, langfuse_state = flush_only
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready()
        client = openai.OpenAI(base_url=f"{gateway.url}/{ROLLOUT.format(r='sig')}", api_key="k", max_retries=0)
        acknowledged = set()
        for n in range(20):
            raw = client.chat.completions.with_raw_response.create(
                model="fake", messages=[{"role": "user", "content": f"n={n}"}]
            )
            acknowledged.add(raw.headers["x-insertion-id"])
        in_flight: dict[str, object] = {}

        def slow_stream() -> None:
            with client.chat.completions.with_streaming_response.create(
                model="fake",
                messages=[{"role": "user", "content": f"[[chunks=15]] [[chunk_delay_ms=100]] [[content={LONG}]]"}],
                stream=True,
            ) as response:
                in_flight["id"] = response.headers["x-insertion-id"]
                in_flight["text"] = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)

        worker = threading.Thread(target=slow_stream)
        worker.start()
        time.sleep(0.5)
        assert insertion_ids_received(langfuse_state) == set()
        code = gateway.terminate()
        worker.join(10)
        assert code in (0, -signal.SIGTERM), gateway.log.read_text()
        assert in_flight.get("text") == LONG, "the in-flight stream was cut by the shutdown"
        acknowledged.add(str(in_flight["id"]))
        assert insertion_ids_received(langfuse_state) == acknowledged
        assert "tracing stopped: ended=" in gateway.log.read_text()
    finally:
        gateway.kill()


def test_a_stop_while_langfuse_hangs_is_bounded_and_spools_every_span(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    """A Langfuse that accepts connections and never answers: the stop still ends within
    SHUTDOWN_FLUSH_TIMEOUT_S (before, each queued batch waited a whole export timeout), and no
    span is lost: what could not be delivered is in the Redis spool, which the next process
    started on the same Redis delivers once Langfuse answers."""
    upstream, _, langfuse, langfuse_state = fakes
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        env = flush_only_env(
            tmp_path, upstream.url, f"http://127.0.0.1:{black_hole.getsockname()[1]}", redis_url, key_prefix
        )
        env.update(TRACING_QUEUE_SIZE="64", SHUTDOWN_FLUSH_TIMEOUT_S="3")
        gateway = GatewayProcess(env, tmp_path)
        acknowledged = set()
        try:
            gateway.wait_ready()
            client = openai.OpenAI(base_url=f"{gateway.url}/{ROLLOUT.format(r='hole')}", api_key="k", max_retries=0)
            for n in range(150):
                raw = client.chat.completions.with_raw_response.create(
                    model="fake", messages=[{"role": "user", "content": f"n={n}"}]
                )
                acknowledged.add(raw.headers["x-insertion-id"])
            started = time.monotonic()
            code = gateway.terminate(timeout=60)
            elapsed = time.monotonic() - started
        finally:
            gateway.kill()
    log = gateway.log.read_text()
    assert code in (0, -signal.SIGTERM), log
    assert elapsed < 8, f"shutdown took {elapsed:.1f} s with SHUTDOWN_FLUSH_TIMEOUT_S=3\n{log}"
    stopped = re.search(r"tracing stopped: (.*)", log)
    assert stopped is not None, log
    counts = dict(pair.split("=") for pair in stopped.group(1).split())
    assert (counts["queued"], counts["exported"], counts["spooled"], counts["dropped"]) == ("150", "0", "150", "0"), log

    restarted_env = flush_only_env(tmp_path, upstream.url, langfuse.url, redis_url, key_prefix)
    (tmp_path / "successor").mkdir()
    successor = GatewayProcess(restarted_env, tmp_path / "successor")
    try:
        successor.wait_ready()
        langfuse_state.wait_for(lambda: insertion_ids_received(langfuse_state) == acknowledged or None, timeout=60)
    finally:
        successor.kill()


def test_a_request_outliving_the_graceful_timeout_gets_an_openai_503(
    flush_only: tuple[dict[str, str], LangfuseState], tmp_path: Path
) -> None:
    """uvicorn cancels what still runs when GRACEFUL_SHUTDOWN_TIMEOUT_S is over: that was a
    plain-text 500 and a traceback per request."""
    env, _ = flush_only
    gateway = GatewayProcess({**env, "GRACEFUL_SHUTDOWN_TIMEOUT_S": "1"}, tmp_path)
    answers: list[httpx.Response] = []
    try:
        gateway.wait_ready()
        body = {"model": "fake", "messages": [{"role": "user", "content": "[[delay_ms=8000]] slow"}]}
        url = f"{gateway.url}/{ROLLOUT.format(r='grace')}/chat/completions"
        worker = threading.Thread(target=lambda: answers.append(httpx.post(url, json=body, timeout=30)))
        worker.start()
        time.sleep(0.5)
        code = gateway.terminate()
        worker.join(10)
    finally:
        gateway.kill()
    log = gateway.log.read_text()
    assert code in (0, -signal.SIGTERM), log
    assert len(answers) == 1, log
    assert answers[0].status_code == 503, answers[0].text
    assert answers[0].headers["retry-after"] == "1"
    assert answers[0].json()["error"]["code"] == "shutting_down"
    assert "Exception in ASGI application" not in log


def test_runs_with_no_configuration_at_all(tmp_path: Path) -> None:
    gateway = GatewayProcess({}, tmp_path)
    try:
        gateway.wait_ready()
        reply = httpx.post(
            f"{gateway.url}/rollout_id/r/invocation_id/i/experiment_id/e/run_id/x/row_id/y/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]},
            timeout=30,
        )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "Hello from the gateway's demo model."
        insertion_id = reply.headers["x-insertion-id"]
        read = httpx.get(f"{gateway.url}/v1/traces/pointwise", params={"tags": "rollout_id:r"}, timeout=30)
        assert read.status_code == 200, read.text
        (trace,) = read.json()["traces"]
        assert f"insertion_id:{insertion_id}" in trace["tags"]
        assert trace["output"] == {"role": "assistant", "content": "Hello from the gateway's demo model."}
        log = gateway.wait_for_log("proxy-core is ready on")
        assert "in-process rollout store" in log
        assert "traces go to the embedded store" in log
        banner = log[log.index("proxy-core is ready on") :]
        assert banner.startswith(f"proxy-core is ready on http://127.0.0.1:{gateway.port}\n")
        assert "  traces:   the embedded trace store, in this process" in banner
        assert "  rollouts: in this process (one process only)" in banner
        assert log.count("proxy-core is ready on") == 1
    finally:
        gateway.terminate()
        gateway.kill()


def test_rate_limits_hold_across_two_gateway_processes(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    """Two processes, one Redis, the default routing strategy: the rpm window is shared, not per process."""
    upstream = fakes[0]
    deployment_id = f"limited-{key_prefix}"
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "model_list:\n  - model_name: limited\n"
        f"    litellm_params: {{model: openai/fake-model, api_base: '{upstream.url}/v1', api_key: k, rpm: 4}}\n"
        f"    model_info: {{id: {deployment_id}}}\n"
    )
    env = {"GATEWAY_CONFIG": str(catalog), "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": key_prefix}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    gateways = [GatewayProcess(env, tmp_path / name) for name in ("a", "b")]
    try:
        for gateway in gateways:
            gateway.wait_ready()
        body = {"model": "limited", "messages": [{"role": "user", "content": "hi"}]}
        replies = [httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30) for gateway in gateways * 3]
        assert [reply.status_code for reply in replies] == [200, 200, 200, 200, 429, 429]
        assert 50 <= int(replies[-1].headers["retry-after"]) <= 60
        assert replies[-1].json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        for gateway in gateways:
            gateway.kill()
