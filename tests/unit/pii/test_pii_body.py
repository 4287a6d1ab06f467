"""Chat-body redaction: every text field a provider or a trace sees, and nothing else."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from proxy_core.services.pii import (
    PiiEngineError,
    PiiRedactor,
    PlaceholderMemo,
    redact_chat_body,
    redact_message,
    redact_tool_arguments,
)

SSN = "234-56-7890"
PHONE = "312-555-0147"
EMAIL = "jane.roe@example.org"
NPI = 1234567893
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_member",
            "description": "Find a member by SSN such as 345-67-8901 or NPI 1245319599.",
            "parameters": {"type": "object", "properties": {"ssn": {"type": "string"}}},
        },
    }
]


def chat_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 1234567893,
        "stream": True,
        "user": EMAIL,
        "tools": TOOLS,
        "prediction": {"type": "content", "content": f"Member SSN: {SSN}"},
        "metadata": {"session": f"caller {PHONE}", "tags": [f"ssn {SSN}", 3], "flags": {"vip": True}},
        "messages": [
            {"role": "system", "content": f"Caller SSN is {SSN}."},
            {
                "role": "user",
                "name": f"caller-{PHONE}",
                "content": [
                    {"type": "text", "text": f"My SSN is {SSN}, call {PHONE}."},
                    {"type": "image_url", "image_url": {"url": "https://img.example/4111111111111111.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "lookup_member",
                            "arguments": json.dumps({"ssn": SSN, "npi": NPI, "note": "urgent", "n": 2}),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"Found member, email {EMAIL}"},
            {
                "role": "assistant",
                "content": "Calling the legacy function.",
                "function_call": {"name": "lookup_member", "arguments": f"ssn={SSN}"},
            },
        ],
    }


@pytest.fixture
def redactor() -> PiiRedactor:
    return PiiRedactor(member_id_patterns=[r"[A-Z]{3}[0-9]{9}"])


@pytest.fixture
def redacted(redactor: PiiRedactor) -> dict[str, Any]:
    return redact_chat_body(chat_body(), redactor, PlaceholderMemo())


def test_no_identifier_survives_in_text_fields(redacted: dict[str, Any]) -> None:
    visible = dict(redacted)
    del visible["tools"], visible["max_tokens"]
    dumped = json.dumps(visible)
    for value in (SSN, PHONE, EMAIL, str(NPI)):
        assert value not in dumped


def test_message_fields_are_redacted(redacted: dict[str, Any]) -> None:
    system, user, assistant, tool, legacy = redacted["messages"]
    assert system["content"] == "Caller SSN is <REDACTED_SSN_1>."
    assert user["name"] == "caller-REDACTED_PHONE_1"
    assert user["content"][0] == {"type": "text", "text": "My SSN is <REDACTED_SSN_1>, call <REDACTED_PHONE_1>."}
    assert tool["content"] == "Found member, email <REDACTED_EMAIL_1>"
    assert legacy["function_call"] == {"name": "lookup_member", "arguments": "ssn=<REDACTED_SSN_1>"}
    assert assistant["content"] is None


def test_tool_call_arguments_stay_valid_json(redacted: dict[str, Any]) -> None:
    call = redacted["messages"][2]["tool_calls"][0]
    assert call["id"] == "call_1"
    assert call["function"]["name"] == "lookup_member"
    assert json.loads(call["function"]["arguments"]) == {
        "ssn": "<REDACTED_SSN_1>",
        "npi": "<REDACTED_NPI_1>",
        "note": "urgent",
        "n": 2,
    }


def test_top_level_user_prediction_and_metadata_are_redacted(redacted: dict[str, Any]) -> None:
    assert redacted["user"] == "<REDACTED_EMAIL_1>"
    assert redacted["prediction"] == {"type": "content", "content": "Member SSN: <REDACTED_SSN_1>"}
    assert redacted["metadata"] == {
        "session": "caller <REDACTED_PHONE_1>",
        "tags": ["ssn <REDACTED_SSN_1>", 3],
        "flags": {"vip": True},
    }


def test_parameters_schemas_and_non_text_parts_are_untouched(redacted: dict[str, Any]) -> None:
    original = chat_body()
    for key in ("model", "temperature", "max_tokens", "stream", "tools"):
        assert redacted[key] == original[key]
    assert redacted["messages"][1]["content"][1] == original["messages"][1]["content"][1]
    assert redacted["messages"][3]["tool_call_id"] == "call_1"


def test_input_is_not_mutated(redactor: PiiRedactor) -> None:
    body = chat_body()
    before = copy.deepcopy(body)
    result = redact_chat_body(body, redactor, PlaceholderMemo())
    assert body == before
    assert result is not body
    assert result["messages"] is not body["messages"]


def test_same_value_gets_same_placeholder_across_messages(redacted: dict[str, Any]) -> None:
    dumped = json.dumps(redacted["messages"])
    assert "<REDACTED_SSN_2>" not in dumped
    assert dumped.count("<REDACTED_SSN_1>") == 4


def test_arguments_that_are_not_json_are_redacted_as_text(redactor: PiiRedactor) -> None:
    arguments = '{"ssn": "234-56-7890"'
    assert redact_tool_arguments(arguments, redactor, PlaceholderMemo()) == '{"ssn": "<REDACTED_SSN_1>"'


def test_escaped_json_cannot_hide_an_identifier(redactor: PiiRedactor) -> None:
    arguments = '{"ssn": "234\\u002d56\\u002d7890"}'
    assert json.loads(redact_tool_arguments(arguments, redactor, PlaceholderMemo())) == {"ssn": "<REDACTED_SSN_1>"}


def test_arguments_without_identifiers_keep_their_formatting(redactor: PiiRedactor) -> None:
    arguments = '{\n  "count": 2,\n  "note": "call back"\n}'
    assert redact_tool_arguments(arguments, redactor, PlaceholderMemo()) is arguments


def test_unexpected_message_shapes_are_scrubbed_not_skipped(redactor: PiiRedactor) -> None:
    body = {"messages": [f"SSN {SSN}", {"role": "user", "content": {"odd": f"SSN {SSN}"}, "extra": EMAIL}]}
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["messages"] == [
        "SSN <REDACTED_SSN_1>",
        {"role": "user", "content": {"odd": "SSN <REDACTED_SSN_1>"}, "extra": "<REDACTED_EMAIL_1>"},
    ]


def test_assistant_response_message_can_be_redacted_for_traces(redactor: PiiRedactor) -> None:
    message = {"role": "assistant", "content": f"Your SSN {SSN} is on file.", "refusal": None}
    assert redact_message(message, redactor, PlaceholderMemo()) == {
        "role": "assistant",
        "content": "Your SSN <REDACTED_SSN_1> is on file.",
        "refusal": None,
    }


def test_failure_inside_the_walk_is_an_engine_error(redactor: PiiRedactor) -> None:
    nested: list[Any] = [f"SSN {SSN}"]
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(PiiEngineError, match="RecursionError"):
        redact_chat_body({"metadata": nested}, redactor, PlaceholderMemo())


def test_a_body_that_is_not_a_mapping_is_an_engine_error(redactor: PiiRedactor) -> None:
    with pytest.raises(PiiEngineError):
        redact_chat_body(["not", "a", "body"], redactor, PlaceholderMemo())  # type: ignore[arg-type]
