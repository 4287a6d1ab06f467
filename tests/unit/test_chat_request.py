"""What a chat body may contain, and where each part goes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
            "metadata": {
                "tags": [
                    "mine",
                    "rollout_id:spoof",
                    "insertion_id:x",
                    "mine",
                    "experiment:e",
                    "variant:b",
                    "prompt:p:9",
                ],
                "team": "a",
            },
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
        ({"model": "m", "messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": [None]}]}, "messages[0].content[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": ["hi"]}], "stream": True}, "messages[0].content[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "messages[0].content[0].type"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": 1}]}]}, "messages[0].content[0].type"),
        (
            {"model": "m", "messages": [*MESSAGES, {"role": "user", "content": [{"type": "text", "text": "a"}, []]}]},
            "messages[1].content[1]",
        ),
        ({"model": "m", "messages": MESSAGES, "response_format": "json"}, "response_format"),
        ({"model": "m", "messages": MESSAGES, "response_format": ["json_object"]}, "response_format"),
        ({"model": "m", "messages": MESSAGES, "response_format": {"json": True}}, "response_format.type"),
        ({"model": "m", "messages": MESSAGES, "max_completion_tokens": "5"}, "max_completion_tokens"),
    ],
)
def test_wrong_types_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    assert (info.value.status_code, info.value.param, info.value.code) == (400, param, "invalid_value")


def test_a_malformed_content_part_is_named_exactly() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request({"model": "m", "messages": [{"role": "user", "content": ["hi"]}]})
    assert info.value.to_body() == {
        "error": {
            "message": "messages[0].content[0] must be an object with a 'type'.",
            "type": "invalid_request_error",
            "param": "messages[0].content[0]",
            "code": "invalid_value",
        }
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("n", 0), ("n", -1), ("n", 129), ("n", 1000), ("n", True), ("max_tokens", -5), ("max_tokens", 0),
     ("max_tokens", False), ("max_completion_tokens", 0), ("max_completion_tokens", -1)],
)  # fmt: skip
def test_out_of_range_counts_are_400(name: str, value: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request({"model": "m", "messages": MESSAGES, name: value})
    assert (info.value.param, info.value.code) == (name, "invalid_value")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m" * 513}, "'model' must be at most 512 characters."),
        ({"model": " "}, "'model' must be a non-empty string."),
        ({"max_tokens": 1e30}, "'max_tokens' must be an integer within 64 bits."),
        ({"seed": -(2.0**63)}, "'seed' must be an integer within 64 bits."),
        ({"max_tokens": 1.5}, "'max_tokens' must be an integer."),
        ({"stream_options": {"include_usage": "yes"}}, "'stream_options.include_usage' must be a boolean."),
    ],
)
def test_messages_name_what_is_wrong(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request({"model": "m", "messages": MESSAGES, **body})
    assert info.value.message == message


def test_an_integer_beyond_64_bits_is_named_as_such() -> None:
    body = parse_json_body(
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 30 + b"}"
    )
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    assert info.value.message == "'max_tokens' must be an integer within 64 bits."


def test_valid_shapes_and_bounds_pass() -> None:
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    extremes = {"n": 128, "max_tokens": 1, "max_completion_tokens": 10**9, "response_format": {"type": "json_object"}}
    messages = [{"role": "user", "content": parts}, {"role": "assistant", "content": None}]
    request = parse_chat_request({"model": "m", "messages": messages, "response_format": None, **extremes})
    assert request.params == extremes
    assert request.messages == messages
    assert parse_chat_request({"model": "m", "messages": MESSAGES, "n": 1}).params == {"n": 1}


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b'"x"', b"null", b"[" * 100_000, b'"\\ud83d"', b'["\\ud83d"]'],
)
def test_body_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_json_body(raw)
    assert info.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"model":"m","messages":[{"role":"user","content":"broken \\ud83d end"}]}',
            {"model": "m", "messages": [{"role": "user", "content": "broken \ufffd end"}]},
        ),
        (b'{"k\\uDC00":["\\ud800",{"x":"\\udfff!"}]}', {"k\ufffd": ["\ufffd", {"x": "\ufffd!"}]}),
        (
            b'{"a":"\\ud83d\\ude00\\ud83d","n":1.5,"m":[true,null,-7]}',
            {"a": "\U0001f600\ufffd", "n": 1.5, "m": [True, None, -7]},
        ),
        (b'{"a":"\\ud83d\\u0041","b":"\\\\ud83d"}', {"a": "\ufffdA", "b": "\\ud83d"}),
    ],
)
def test_lone_surrogates_become_replacement_characters(raw: bytes, expected: dict[str, Any]) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)  # the fallback is what serves these
    assert parse_json_body(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"\\ud83d"',
        b'{"a":"\\ud83d",}',
        b'{"a":"\\ud83d","b":NaN}',
        b'{"a":"\\ud83d","b":Infinity}',
        b'{"a":"\\ud83d","b":1e400}',
        b'{"a":"\\ud83d \xff"}',
        b'\xef\xbb\xbf{"a":"\\ud83d"}',
        '{"a":"\\ud83d"}'.encode("utf-16"),
        b'{"a":' + b"[" * 100_000 + b'"\\ud83d"',
        b'{"a":"\\\\ud83d" x}',
    ],
)
def test_invalid_json_with_a_surrogate_is_still_invalid_json(raw: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError) as decode:
        orjson.loads(raw)
    with pytest.raises(InvalidRequestError) as info:
        parse_json_body(raw)
    assert (info.value.code, info.value.param) == ("invalid_json", None)
    assert info.value.message == f"The request body is not valid JSON: {decode.value.msg}."


def _served(value: Any) -> Any:
    """``value`` as the gateway should serve it: a surrogate pair is one character, a lone one U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [_served(item) for item in value]
    if isinstance(value, dict):
        return {_served(key): _served(item) for key, item in value.items()}
    return value


_TEXT = st.text(st.characters(categories=("L", "N", "P", "Zs", "Cc", "Cs")), max_size=8)
_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
)
_VALUES = st.recursive(
    _SCALARS | _TEXT, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4)
)


@given(st.dictionaries(_TEXT, _VALUES, max_size=4))
def test_any_body_is_served_with_lone_surrogates_replaced(body: dict[str, Any]) -> None:
    assert parse_json_body(json.dumps(body).encode()) == _served(body)
