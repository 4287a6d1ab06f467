"""A chat answer dumped without the SDK's model equals the SDK's own dump, key order included."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai import BaseModel as OpenAIBaseModel
from openai._models import construct_type
from openai.types.chat import ChatCompletion
from pydantic import Field

from proxy_core.adapters import openai_answer
from proxy_core.adapters.openai_answer import ChatCompletionAnswer, answer_as_sdk_dumps
from proxy_core.adapters.openai_direct import DirectOpenAI

_PLAIN: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_796_060_833,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 29, "completion_tokens": 2, "total_tokens": 31},
}
_FULL: dict[str, Any] = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "service_tier": "default",
    "system_fingerprint": "fp_1",
    "provider_extra": {"region": "eu", "ids": [1, 2]},
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "logprobs": {
                "content": [
                    {"token": "a", "logprob": 0, "bytes": [97], "top_logprobs": [{"token": "a", "logprob": -0.5}]}
                ],
                "refusal": None,
            },
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": "thinking",
                "annotations": [
                    {
                        "type": "url_citation",
                        "url_citation": {"end_index": 3, "start_index": 0, "title": "t", "url": "u"},
                    }
                ],
                "audio": {"id": "a1", "data": "AAA=", "expires_at": 2, "transcript": "x"},
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "t2", "type": "custom", "custom": {"name": "g", "input": "x"}, "extra": True},
                ],
            },
        },
        {"index": 1, "message": {"role": "assistant", "content": "b", "refusal": "no"}, "finish_reason": "length"},
    ],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": None},
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 1},
        "cost": 0.001,
    },
}


def _dumped(parse: Callable[[object], Any], data: object) -> object:
    """``parse(data).model_dump()`` key-ordered, or the type of what it raised."""
    with warnings.catch_warnings():  # the SDK's dump warns about values of unexpected types
        warnings.simplefilter("ignore")
        try:
            return _ordered(parse(copy.deepcopy(data)).model_dump())
        except Exception as exc:  # the same failure is expected of both
            return type(exc)


def _sdk(data: object) -> object:
    return _dumped(lambda value: construct_type(type_=ChatCompletion, value=value), data)


def _ours(data: object) -> object:
    return _dumped(lambda value: ChatCompletionAnswer.build(response=httpx.Response(200), data=value), data)


def _ordered(value: object) -> object:
    """Dicts as lists of pairs, so that equality also checks key order."""
    if isinstance(value, dict):
        return [(key, _ordered(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("answer", [_PLAIN, _FULL], ids=["plain", "every-declared-part"])
def test_a_canonical_answer_is_dumped_without_the_sdk_model_and_equals_it(answer: dict[str, Any]) -> None:
    assert answer_as_sdk_dumps(copy.deepcopy(answer)) is not None  # the fast path was taken
    assert _ours(answer) == _sdk(answer)
    built = ChatCompletionAnswer.build(response=httpx.Response(200), data=copy.deepcopy(answer))
    assert built.model_dump() is not built.model_dump()  # every dump is fresh: LiteLLM edits what it gets
    assert built.model_dump(exclude_none=True) == ChatCompletion.construct(**answer).model_dump(exclude_none=True)
    assert built.choices[0].message.role == "assistant"  # anything else is the SDK model's
    assert _ordered(copy.copy(built).model_dump()) == _ordered(copy.deepcopy(built).model_dump()) == _sdk(answer)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("created",), "1"),  # a string where an int is declared
        (("choices", 0, "index"), True),  # a bool is no int
        (("choices", 0, "message", "content"), ["part"]),
        (("usage", "prompt_tokens"), 1.0),  # the SDK's validation would make it an int
        (("choices", 0, "message", "tool_calls"), [{"id": "t", "type": "other"}]),  # unknown discriminator
        (("moderation",), {"input": {}, "output": {}}),  # a part not mapped here
        (("choices",), [None]),
        # an int in a float field that no float equals
        (("choices", 0, "logprobs"), {"content": [{"token": "a", "logprob": 2**60 + 1, "top_logprobs": []}]}),
    ],
)
def test_an_answer_of_other_types_goes_the_sdks_way(path: tuple[Any, ...], value: object) -> None:
    answer = copy.deepcopy(_PLAIN)
    target: Any = answer
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert answer_as_sdk_dumps(copy.deepcopy(answer)) is None
    assert _ours(answer) == _sdk(answer)
    assert isinstance(ChatCompletionAnswer.build(response=httpx.Response(200), data=answer), ChatCompletion)


def test_a_missing_required_field_goes_the_sdks_way() -> None:
    answer = copy.deepcopy(_PLAIN)
    del answer["choices"][0]["finish_reason"]
    assert answer_as_sdk_dumps(answer) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def _mutated(draw: st.DrawFn) -> object:
    answer = copy.deepcopy(draw(st.sampled_from([_PLAIN, _FULL])))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(answer)
        path = draw(st.sampled_from(paths))
        parent: Any = answer
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "extra"]))
        if action == "replace":
            parent[path[-1]] = draw(_JSON)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=5))] = draw(_JSON)
    return answer


@settings(max_examples=400, deadline=None)
@given(_mutated())
def test_any_answer_dumps_as_the_sdk_dumps_it(answer: object) -> None:
    assert _ours(answer) == _sdk(answer)


@pytest.mark.parametrize("answer", [_PLAIN, _FULL], ids=["plain", "every-declared-part"])
async def test_litellm_answers_the_same_through_either_client(answer: dict[str, Any]) -> None:
    async def complete(client_type: type[AsyncOpenAI]) -> dict[str, Any]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _request: httpx.Response(200, json=answer)))
        client = client_type(api_key="sk-a", base_url="http://upstream.test/v1", http_client=http, max_retries=0)
        response = await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], client=client
        )
        await http.aclose()
        dumped: dict[str, Any] = response.model_dump()
        return dumped

    expected, got = await complete(AsyncOpenAI), await complete(DirectOpenAI)
    assert _ordered(got) == _ordered(expected)


class _Renamed(OpenAIBaseModel):
    value: str = Field(alias="Value")


class _Defaulted(OpenAIBaseModel):
    values: list[str] = Field(default_factory=list)


@pytest.mark.parametrize("model", [_Renamed, _Defaulted], ids=["alias", "non-null-default"])
def test_a_model_whose_dump_is_not_reproduced_here_is_not_mapped(model: type[OpenAIBaseModel]) -> None:
    with pytest.raises(TypeError):
        openai_answer._model(model)


def test_without_a_mapped_shape_every_answer_takes_the_sdks_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_answer, "_CHAT_COMPLETION", None)
    assert answer_as_sdk_dumps(copy.deepcopy(_PLAIN)) is None
    built = ChatCompletionAnswer.build(response=httpx.Response(200), data=copy.deepcopy(_PLAIN))
    assert isinstance(built, ChatCompletion)
