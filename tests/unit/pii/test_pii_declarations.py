"""Declarations and unknown fields: their text is redacted, their structure is kept."""

from __future__ import annotations

from typing import Any

from proxy_core.services.pii import PiiRedactor, PlaceholderMemo
from proxy_core.services.pii.declarations import redact_schema

REDACTOR = PiiRedactor()
SSN = "234-56-7890"
EMAIL = "jane.roe@example.org"
NPI = 1234567893


def redacted(schema: dict[str, Any]) -> Any:
    return redact_schema(schema, REDACTOR, PlaceholderMemo())


def test_property_names_that_look_like_keywords_are_walked_as_schemas() -> None:
    schema = {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": f"SSN {SSN}"},
            "enum": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{2}-[0-9]{4}$"},
        },
        "required": ["description", "enum"],
    }
    assert redacted(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "SSN <REDACTED_SSN_1>"},
            "enum": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{2}-[0-9]{4}$"},
        },
        "required": ["description", "enum"],
    }


def test_limits_are_kept_and_sample_values_redacted() -> None:
    schema = {
        "type": "integer",
        "minimum": 0,
        "maximum": NPI,
        "default": NPI,
        "examples": [NPI, 7],
        "$ref": "#/$defs/member",
        "$defs": {"member": {"title": f"Member {EMAIL}", "format": "email"}},
    }
    assert redacted(schema) == {
        "type": "integer",
        "minimum": 0,
        "maximum": NPI,
        "default": "<REDACTED_NPI_1>",
        "examples": ["<REDACTED_NPI_1>", 7],
        "$ref": "#/$defs/member",
        "$defs": {"member": {"title": "Member <REDACTED_EMAIL_1>", "format": "email"}},
    }


def test_unknown_keywords_and_nested_subschemas_are_scrubbed_not_skipped() -> None:
    schema = {
        "x-note": f"SSN {SSN}",
        "x-samples": {"first": EMAIL},
        "anyOf": [{"type": "string", "$comment": f"was {EMAIL}"}, {"type": "null"}],
        "items": {"const": f"SSN {SSN}"},
        "additionalProperties": False,
    }
    assert redacted(schema) == {
        "x-note": "SSN <REDACTED_SSN_1>",
        "x-samples": {"first": "<REDACTED_EMAIL_1>"},
        "anyOf": [{"type": "string", "$comment": "was <REDACTED_EMAIL_1>"}, {"type": "null"}],
        "items": {"const": "SSN <REDACTED_SSN_1>"},
        "additionalProperties": False,
    }
