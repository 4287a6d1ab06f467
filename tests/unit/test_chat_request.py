"""What a chat body may contain, and where each part goes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy_core.errors import InvalidRequestError
from proxy_core.services.chat_request import parse_chat_request, parse_json_body

MESSAGES = [{"role": "user", "content": "hi"}]


def test_split_into_params_extras_and_metadata() -> None:
    request = parse_chat_request(
        {
            "model": "m",
            "messages": MESSAGES,
            "temperature": 0.2,
            "stream": True,
            "top_k": 5,
            "user": "u1",
            "metadata": {"tags": ["mine", "rollout_id:spoof", "insertion_id:x", "mine"], "team": "a"},
        }
    )
    assert request.stream is True
    assert request.params == {"temperature": 0.2, "user": "u1"}
    assert request.extra_body == {"top_k": 5}
    assert request.client_tags == ["mine"]
    assert request.client_metadata == {"team": "a"}


@pytest.mark.parametrize(
    "key",
    ["api_base", "base_url", "api_key", "langfuse_public_key", "langfuse_host", "mock_response", "custom_llm_provider",
     "litellm_anything", "extra_headers", "no-log"],
)  # fmt: skip
def test_control_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request({"model": "m", "messages": MESSAGES, key: "x"})
    assert info.value.param == key


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "", "messages": MESSAGES}, "model"),
        ({"model": 3, "messages": MESSAGES}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["x"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": MESSAGES, "n": 1.5}, "n"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
        ({"model": "m", "messages": MESSAGES, "tools": {}}, "tools"),
        ({"model": "m", "messages": MESSAGES, "metadata": []}, "metadata"),
        ({"model": "m", "messages": MESSAGES, "metadata": {"tags": "a,b"}}, "metadata.tags"),
        ({"model": "m", "messages": MESSAGES, "metadata": {"k": {"nested": 1}}}, "metadata.k"),
    ],
)
def test_wrong_types_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    assert info.value.param == param


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"x"', b"null", b"[" * 100_000])
def test_body_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_json_body(raw)
    assert info.value.code == "invalid_json"
