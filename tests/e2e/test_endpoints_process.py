"""Every endpoint in a gateway process of its own, with the official clients, through a SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.e2e.process import ROLLOUT, GatewayProcess, insertion_ids_received
from tests.fakes.langfuse_state import LangfuseState

pytestmark = pytest.mark.e2e


def test_every_endpoint_is_recorded_and_its_trace_delivered_at_shutdown(
    flush_only: tuple[dict[str, str], LangfuseState], tmp_path: Path
) -> None:
    env, langfuse_state = flush_only
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready()
        base = f"{gateway.url}/{ROLLOUT.format(r='every')}"
        with (
            openai.OpenAI(base_url=base, api_key="k", max_retries=0) as client,
            anthropic.Anthropic(base_url=base, api_key="k", max_retries=0) as messages,
        ):
            acknowledged = call_every_endpoint(client, messages)
        status = httpx.get(f"{gateway.url}/rollouts/every").json()
        assert status["expected_count"] == len(acknowledged) == 5
        code = gateway.terminate()
        assert code in (0, -signal.SIGTERM), gateway.log.read_text()
        assert insertion_ids_received(langfuse_state) == acknowledged
    finally:
        gateway.kill()


def call_every_endpoint(client: openai.OpenAI, messages: anthropic.Anthropic) -> set[str]:
    """One call of each endpoint but chat, streamed where it can be; their insertion ids."""
    acknowledged = set()
    with client.responses.with_streaming_response.create(model="fake", input="hi", stream=True) as streamed:
        acknowledged.add(streamed.headers["x-insertion-id"])
        assert [event.type for event in streamed.parse()][-1] == "response.completed"
    acknowledged.add(client.responses.with_raw_response.create(model="fake", input="hi").headers["x-insertion-id"])
    raw = client.embeddings.with_raw_response.create(model="fake", input=["a", "b"])
    assert len(raw.parse().data) == 2
    acknowledged.add(raw.headers["x-insertion-id"])
    with client.completions.with_streaming_response.create(model="fake", prompt="hi", stream=True) as streamed:
        acknowledged.add(streamed.headers["x-insertion-id"])
        assert "".join(chunk.choices[0].text for chunk in streamed.parse() if chunk.choices) == "echo: hi"
    with messages.messages.stream(model="fake", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "echo: hi"
        acknowledged.add(stream.response.headers["x-insertion-id"])
    return acknowledged
