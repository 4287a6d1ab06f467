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
    del visible["max_tokens"]  # a number, not text: it stays as it is
    dumped = json.dumps(visible)
    for value in (SSN, PHONE, EMAIL, str(NPI), "345-67-8901", "1245319599"):
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


def test_tool_descriptions_are_redacted_and_their_structure_kept(redacted: dict[str, Any]) -> None:
    assert redacted["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_member",
                "description": "Find a member by SSN such as <REDACTED_SSN_2> or NPI <REDACTED_NPI_2>.",
                "parameters": {"type": "object", "properties": {"ssn": {"type": "string"}}},
            },
        }
    ]


def test_parameters_and_non_text_parts_are_untouched(redacted: dict[str, Any]) -> None:
    original = chat_body()
    for key in ("model", "temperature", "max_tokens", "stream"):
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


def test_stop_sequences_and_identifier_parameters_are_redacted(redactor: PiiRedactor) -> None:
    """A stop sequence could only ever match the placeholder: the model never sees the original."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stop": [EMAIL, "END"],
        "safety_identifier": EMAIL,
        "prompt_cache_key": f"member-{SSN}",
    }
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["stop"] == ["<REDACTED_EMAIL_1>", "END"]
    assert redacted["safety_identifier"] == "<REDACTED_EMAIL_1>"
    assert redacted["prompt_cache_key"] == "member-<REDACTED_SSN_1>"
    single = redact_chat_body({**body, "stop": f"SSN {SSN}"}, redactor, PlaceholderMemo())
    assert single["stop"] == "SSN <REDACTED_SSN_1>"


def test_provider_specific_extra_keys_are_scrubbed_whatever_their_shape(redactor: PiiRedactor) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "my_field": f"SSN {SSN}",
        "vendor_options": {"note": [f"mail {EMAIL}"], "member": NPI, "budget_tokens": 2048, "cache": True},
    }
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["my_field"] == "SSN <REDACTED_SSN_1>"
    assert redacted["vendor_options"] == {
        "note": ["mail <REDACTED_EMAIL_1>"],
        "member": "<REDACTED_NPI_1>",
        "budget_tokens": 2048,
        "cache": True,
    }


def test_structural_parameters_pass_through_unread(redactor: PiiRedactor) -> None:
    """Numbers, enum words and references to declared names are not text, even when they look like PII."""
    tool_name = f"page-{PHONE}"  # a valid tool name that the phone pattern would match
    choice = {"type": "function", "function": {"name": tool_name}}
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": NPI,
        "logit_bias": {str(NPI): 5},
        "tool_choice": choice,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": tool_name, "description": f"Pages {PHONE}"}}],
    }
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["seed"] == NPI
    for key in ("logit_bias", "tool_choice", "stream_options"):
        assert redacted[key] is body[key]
    assert redacted["tools"] == [
        {"type": "function", "function": {"name": tool_name, "description": "Pages <REDACTED_PHONE_1>"}}
    ]


def test_response_format_schema_text_is_redacted_and_its_syntax_kept(redactor: PiiRedactor) -> None:
    """The enum's placeholder is the one the message got, so the model can still pick it."""
    pattern = r"^\d{3}-\d{2}-\d{4}$"

    def response_format(description: str, example: str, choice: str) -> dict[str, Any]:
        schema = {
            "type": "object",
            "required": ["ssn", "contact"],
            "additionalProperties": False,
            "properties": {
                "ssn": {"type": "string", "pattern": pattern, "description": f"like {example}"},
                "contact": {"type": "string", "enum": [choice, "none"]},
            },
        }
        card = {"name": "member_card", "strict": True, "description": description, "schema": schema}
        return {"type": "json_schema", "json_schema": card}

    body = {
        "model": "gpt-4o-mini",
        "response_format": response_format(f"Card for {EMAIL}", SSN, EMAIL),
        "messages": [{"role": "user", "content": f"Send it to {EMAIL}"}],
    }
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["messages"][0]["content"] == "Send it to <REDACTED_EMAIL_1>"
    assert redacted["response_format"] == response_format(
        "Card for <REDACTED_EMAIL_1>", "<REDACTED_SSN_1>", "<REDACTED_EMAIL_1>"
    )


def test_legacy_functions_and_unknown_tool_kinds_are_declarations_too(redactor: PiiRedactor) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "functions": [{"name": "lookup", "description": f"By SSN {SSN}", "parameters": {"type": "object"}}],
        "tools": [{"type": "custom", "custom": {"name": "notes", "description": f"Notes of {EMAIL}"}}],
    }
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["functions"] == [
        {"name": "lookup", "description": "By SSN <REDACTED_SSN_1>", "parameters": {"type": "object"}}
    ]
    assert redacted["tools"] == [
        {"type": "custom", "custom": {"name": "notes", "description": "Notes of <REDACTED_EMAIL_1>"}}
    ]


def test_placeholders_follow_the_conversation_whatever_the_key_order(redactor: PiiRedactor) -> None:
    other_phone = "646-555-0199"
    body = {"stop": [other_phone], "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"call {PHONE}"}]}
    redacted = redact_chat_body(body, redactor, PlaceholderMemo())
    assert redacted["messages"][0]["content"] == "call <REDACTED_PHONE_1>"
    assert redacted["stop"] == ["<REDACTED_PHONE_2>"]
