"""Responses and Anthropic bodies: their text redacted, their ids, roles, names and types kept."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from proxy_core.services.pii import PiiEngineError, PiiRedactor, PlaceholderMemo
from proxy_core.services.pii.endpoints import redact_messages_body, redact_responses_body

SSN = "234-56-7890"
EMAIL = "jane.roe@example.org"
PHONE = "312-555-0147"


@pytest.fixture
def redactor() -> PiiRedactor:
    return PiiRedactor(())


def responses_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "instructions": f"Caller {EMAIL}",
        "metadata": {"ticket": f"phone {PHONE}"},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": f"SSN {SSN}"},
                    {"type": "input_image", "image_url": "data:image/png;base64,MTIzNDU2Nzg5MDEyMzQ1"},
                ],
            },
            {
                "type": "function_call",
                "id": "fc_1234567890",
                "call_id": "call_5551234567",
                "name": "lookup",
                "arguments": json.dumps({"ssn": SSN}),
            },
            {"type": "function_call_output", "call_id": "call_5551234567", "output": f"mail {EMAIL}"},
            {"role": "assistant", "content": f"Your SSN is {SSN}"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": f"by SSN like {SSN}",
                "parameters": {"type": "object", "properties": {"ssn": {"type": "string"}}},
            }
        ],
    }


def test_responses_text_is_redacted_and_structure_kept(redactor: PiiRedactor) -> None:
    body = responses_body()
    original = copy.deepcopy(body)
    redacted = redact_responses_body(body, redactor, PlaceholderMemo())
    assert body == original, "the input is never mutated"
    text = json.dumps(redacted)
    assert [needle for needle in (SSN, EMAIL, PHONE) if needle in text] == []
    message, call, output, answer = redacted["input"]
    assert message["content"][0] == {"type": "input_text", "text": "SSN <REDACTED_SSN_1>"}
    assert message["content"][1] == body["input"][0]["content"][1], "binary parts are kept as they are"
    assert (call["id"], call["call_id"], call["name"], call["type"]) == (
        "fc_1234567890",
        "call_5551234567",
        "lookup",
        "function_call",
    )
    assert json.loads(call["arguments"]) == {"ssn": "<REDACTED_SSN_1>"}
    assert output == {"type": "function_call_output", "call_id": "call_5551234567", "output": "mail <REDACTED_EMAIL_1>"}
    assert answer == {"role": "assistant", "content": "Your SSN is <REDACTED_SSN_1>"}
    assert redacted["tools"][0]["name"] == "lookup"
    assert list(redacted["tools"][0]["parameters"]["properties"]) == ["ssn"]
    assert redacted["instructions"] == "Caller <REDACTED_EMAIL_1>"
    assert redacted["metadata"] == {"ticket": "phone <REDACTED_PHONE_1>"}


def test_a_string_input_is_redacted(redactor: PiiRedactor) -> None:
    assert (
        redact_responses_body({"input": f"SSN {SSN}"}, redactor, PlaceholderMemo())["input"] == "SSN <REDACTED_SSN_1>"
    )


def test_anthropic_blocks_are_redacted_and_structure_kept(redactor: PiiRedactor) -> None:
    body = {
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": f"Caller {EMAIL}"}],
        "metadata": {"user_id": EMAIL},
        "messages": [
            {"role": "user", "content": f"SSN {SSN}"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_5551234567", "name": "lookup", "input": {"phone": PHONE}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_5551234567",
                        "content": [{"type": "text", "text": f"mail {EMAIL}"}],
                    }
                ],
            },
        ],
        "tools": [
            {
                "name": "lookup",
                "description": f"by phone like {PHONE}",
                "input_schema": {"type": "object", "properties": {"phone": {"type": "string"}}},
            }
        ],
    }
    redacted = redact_messages_body(body, redactor, PlaceholderMemo())
    text = json.dumps(redacted)
    assert [needle for needle in (SSN, EMAIL, PHONE) if needle in text] == []
    assert redacted["system"] == [{"type": "text", "text": "Caller <REDACTED_EMAIL_1>"}]
    assert redacted["messages"][0] == {"role": "user", "content": "SSN <REDACTED_SSN_1>"}
    use = redacted["messages"][1]["content"][0]
    assert (use["id"], use["name"], use["input"]) == ("toolu_5551234567", "lookup", {"phone": "<REDACTED_PHONE_1>"})
    result = redacted["messages"][2]["content"][0]
    assert result["tool_use_id"] == "toolu_5551234567"
    assert result["content"] == [{"type": "text", "text": "mail <REDACTED_EMAIL_1>"}]
    assert list(redacted["tools"][0]["input_schema"]["properties"]) == ["phone"]
    assert redacted["metadata"] == {"user_id": "<REDACTED_EMAIL_1>"}
    assert redacted["max_tokens"] == 100


def test_a_failure_inside_the_walk_is_an_engine_error(redactor: PiiRedactor) -> None:
    nested: list[Any] = [f"SSN {SSN}"]
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(PiiEngineError, match="RecursionError"):
        redact_messages_body({"messages": [{"role": "user", "content": nested}]}, redactor, PlaceholderMemo())
    with pytest.raises(PiiEngineError, match="RecursionError"):
        redact_responses_body({"input": [{"role": "user", "content": nested}]}, redactor, PlaceholderMemo())
