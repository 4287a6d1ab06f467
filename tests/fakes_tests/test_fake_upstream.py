"""The fake provider speaks OpenAI's protocol to the official client and obeys its knobs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes import FakeUpstream


@pytest.fixture
def client(fake_upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_upstream.base_url, api_key="k", max_retries=0, timeout=10) as c:
        yield c


def _user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_non_streaming_completion_echoes_the_prompt(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    reply = client.chat.completions.create(model="my-model", messages=_user("hello there"))
    assert reply.object == "chat.completion"
    assert reply.model == "my-model"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    (request,) = fake_upstream.state.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k"
    assert request.body["model"] == "my-model"
    assert request.last_user_text == "hello there"


def test_streaming_sends_role_content_finish_usage_and_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=_user("stream this [[chunks=5]]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks[1:6]]
    assert "".join(c or "" for c in contents) == "echo: stream this"
    assert len(contents) == 5
    assert chunks[6].choices[0].finish_reason == "stop"
    assert chunks[7].choices == []
    assert chunks[7].usage is not None
    assert len(chunks) == 8


def test_stream_frames_are_raw_sse(fake_upstream: FakeUpstream) -> None:
    body = {"model": "m", "stream": True, "messages": _user("hi [[chunks=2]]")}
    with httpx.Client() as http, http.stream("POST", fake_upstream.base_url + "/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in r.iter_lines() if line]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    assert len(frames) == 1 + 2 + 1 + 1


def test_fixed_content_and_unprefixed_path(fake_upstream: FakeUpstream) -> None:
    body = {"model": "m", "messages": _user("[[content=forty two]]")}
    reply = httpx.post(fake_upstream.url + "/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"] == "forty two"


def test_rate_limit_with_retry_after_raises_rate_limit_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=_user("x [[status=429]] [[retry_after=2]]"))
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body == {
        "message": "fake upstream error 429",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError), (500, openai.InternalServerError)],
)
def test_error_statuses_map_to_client_errors(
    client: openai.OpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error):
        client.chat.completions.create(model="m", messages=_user(f"x [[status={status}]]"))


def test_cut_stream_raises_in_the_client(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=_user("a long answer [[chunks=6]] [[cut_after=2]]"),
        stream=True,
    )
    received: list[object] = []

    def consume() -> None:
        for chunk in stream:
            received.append(chunk)

    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        consume()
    assert len(received) == 3  # role chunk + 2 content chunks
    assert len(fake_upstream.state.cut) == 1


def test_delay_is_applied(client: openai.OpenAI) -> None:
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=_user("slow [[delay_ms=150]]"))
    assert time.monotonic() - started >= 0.15


def test_hang_answers_nothing_and_records_the_abort(fake_upstream: FakeUpstream) -> None:
    body = {"model": "m", "messages": _user("[[hang]]")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake_upstream.base_url + "/chat/completions", json=body, timeout=0.3)
    fake_upstream_state = fake_upstream.state
    deadline = time.monotonic() + 3
    while not fake_upstream_state.aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.last_user_text for r in fake_upstream_state.aborted] == ["[[hang]]"]


def test_client_leaving_mid_stream_is_recorded(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=_user("x [[chunks=50]] [[chunk_delay_ms=20]]"),
        stream=True,
    )
    for index, _chunk in enumerate(stream):
        if index == 2:
            break
    stream.close()
    deadline = time.monotonic() + 3
    while not fake_upstream.state.aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake_upstream.state.aborted) == 1


def test_global_defaults_and_queued_failures(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    state = fake_upstream.state
    state.default_content = "canned"
    state.default_chunks = 4
    reply = client.chat.completions.create(model="m", messages=_user("anything"))
    assert reply.choices[0].message.content == "canned"

    state.fail_next(2, status=503, retry_after=1)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=_user("x"))
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "1"
    client.chat.completions.create(model="m", messages=_user("x"))

    state.reset()
    assert state.requests == []
    assert state.default_content is None


def test_models_and_unknown_routes(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    assert [m.id for m in client.models.list()] == ["fake-model"]
    response = httpx.post(fake_upstream.url + "/v1/images/generations", json={})
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    bad = httpx.post(fake_upstream.base_url + "/chat/completions", content=b"not json")
    assert bad.status_code == 400
