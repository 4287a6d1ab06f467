"""The gateway as users run it: `python -m proxy_core` in its own process, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("e2e", "pk-lf-e2e", "sk-lf-e2e")
LONG = "abcdefghijklmnopqrstuvwxyz0123456789"
ROLLOUT = "rollout_id/{r}/invocation_id/i/experiment_id/e/run_id/run/row_id/row"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_", "LANGFUSE_"))}
        full_env.update(env, PORT=str(self.port), HOST="127.0.0.1", PYTHONPATH=str(ROOT))
        self.log = cwd / "gateway.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy_core"],
            cwd=cwd,
            env=full_env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log_handle.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log_handle.close()


@pytest.fixture
def fakes() -> Iterator[tuple[ServerThread, UpstreamState, ServerThread, LangfuseState]]:
    upstream_state = UpstreamState()
    langfuse_state = LangfuseState({PROJECT[0]: (PROJECT[1], PROJECT[2])})
    with (
        ServerThread(create_upstream_app(upstream_state)) as upstream,
        ServerThread(create_langfuse_app(state=langfuse_state)) as langfuse,
    ):
        yield upstream, upstream_state, langfuse, langfuse_state


def insertion_ids_received(state: LangfuseState) -> set[str]:
    ids = set()
    for span in state.spans(PROJECT[0]):
        raw = span.attributes.get("langfuse.trace.tags")
        if span.parent_span_id is None and isinstance(raw, str):
            ids.update(t.removeprefix("insertion_id:") for t in json.loads(raw) if t.startswith("insertion_id:"))
    return ids


def test_sigterm_delivers_every_acknowledged_trace(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    upstream, _, langfuse, langfuse_state = fakes
    secrets = tmp_path / "secrets.yaml"
    project, public_key, secret_key = PROJECT
    secrets.write_text(
        f"langfuse_keys:\n  {project}: {{public_key: {public_key}, secret_key: {secret_key}, host: '{langfuse.url}'}}\n"
        f"default_project_id: {project}\n"
    )
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "model_list:\n  - model_name: fake\n"
        f"    litellm_params: {{model: openai/fake-model, api_base: '{upstream.url}/v1', api_key: sk-up}}\n"
    )
    gateway = GatewayProcess(
        {
            "SECRETS_PATH": str(secrets),
            "GATEWAY_CONFIG": str(catalog),
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
            # Nothing leaves before shutdown: only the shutdown flush can deliver these spans.
            "TRACING_BATCH_DELAY_MS": "600000",
            "LOG_LEVEL": "INFO",
        },
        tmp_path,
    )
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
        assert "tracing stopped: exported=" in gateway.log.read_text()
    finally:
        gateway.kill()


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
        assert "x-insertion-id" in reply.headers
        log = gateway.log.read_text()
        assert "in-process rollout store" in log
        assert "tracing is off" in log
    finally:
        gateway.terminate()
        gateway.kill()


def test_rate_limits_hold_across_two_gateway_processes(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> None:
    """Two processes, one Redis: the Router's per-minute counters are shared, not per process."""
    upstream = fakes[0]
    deployment_id = f"limited-{key_prefix}"
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "model_list:\n  - model_name: limited\n"
        f"    litellm_params: {{model: openai/fake-model, api_base: '{upstream.url}/v1', api_key: k, rpm: 4}}\n"
        f"    model_info: {{id: {deployment_id}}}\n"
        "router_settings: {routing_strategy: usage-based-routing-v2}\n"
    )
    env = {"GATEWAY_CONFIG": str(catalog), "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": key_prefix}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    gateways = [GatewayProcess(env, tmp_path / name) for name in ("a", "b")]
    try:
        for gateway in gateways:
            gateway.wait_ready()
        time.sleep(max(0.0, time.time() % 60 - 50))  # the Router counts per minute: stay inside one
        body = {"model": "limited", "messages": [{"role": "user", "content": "hi"}]}
        statuses = []
        for gateway in gateways * 3:
            statuses.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30).status_code)
        assert statuses[0] == 200
        # Separate per-process counters would let all six through (three each); LiteLLM syncs its
        # counters to Redis asynchronously, so the shared limit may admit one call late.
        assert statuses.count(200) < 6, f"each process let its own quota through: {statuses}"
        refused = httpx.post(f"{gateways[1].url}/v1/chat/completions", json=body, timeout=30)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    finally:
        for gateway in gateways:
            gateway.kill()
