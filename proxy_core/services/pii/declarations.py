"""Redaction of what a request declares rather than says: tools, legacy functions, response formats.

A declaration mixes text the model reads (descriptions, titles, examples) with structure that the
provider and the model need unchanged: names, types, property names, ``required``, ``pattern``.
The text is redacted and the structure is kept, because redacting structure breaks the call: the
model calls a tool back by its declared name, arguments are keyed by the property names, a
pattern stops being the same regex.

``enum`` and ``const`` values are redacted even though the model must reproduce them exactly.
The provider must never see PII, and the messages share the same placeholder memo, so an e-mail
in both an ``enum`` and a message becomes the same placeholder in both, and the model can still
choose it. Its answer then holds the placeholder, as every answer does in ``redact`` mode.
Integers in ``enum``, ``const``, ``default`` and ``examples`` are checked like tool-call arguments;
every other number (``minimum``, ``maxLength`` …) is structure.
"""

from __future__ import annotations

from typing import Any

from .engine import PiiRedactor, PlaceholderMemo
from .values import redact_text_value

# Scalar members of a declaration that the provider matches on: the tool's kind, its name, strictness.
_DECLARATION_STRUCTURE = frozenset({"type", "name", "strict"})
# Members holding a JSON schema: a function's parameters, a response format's schema, an Anthropic
# tool's input schema.
_SCHEMA_MEMBERS = frozenset({"parameters", "schema", "input_schema"})
# Schema keywords whose values are syntax (types, regexes, references, property names).
_SCHEMA_SYNTAX = frozenset(
    {
        "type", "format", "pattern", "required", "dependentRequired", "$ref", "$id", "$schema",
        "$anchor", "$dynamicRef", "$dynamicAnchor", "contentEncoding", "contentMediaType",
    }
)  # fmt: skip
# Schema keywords that map names (kept as they are) to subschemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Schema keywords holding text or sample values that the model reads.
_SCHEMA_TEXT = frozenset({"description", "title", "$comment", "examples", "default", "enum", "const"})


def redact_declarations(value: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """``tools`` or legacy ``functions``: a list of declarations."""
    if not isinstance(value, list):
        return redact_declaration(value, redactor, memo)
    return [redact_declaration(item, redactor, memo) for item in value]


def redact_declaration(value: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """One tool, function or ``response_format``, at any depth of its wrappers.

    ``{"type": "function", "function": {...}}``, ``{"type": "json_schema", "json_schema": {...}}``
    and tool kinds the gateway does not know share one walk: their scalar ``type``, ``name`` and
    ``strict`` are kept, ``parameters`` and ``schema`` are walked as JSON schemas, and every other
    string (``description`` and anything unknown) is redacted.
    """
    if not isinstance(value, dict):
        return redact_text_value(value, redactor, memo)
    redacted: dict[str, Any] = {}
    for key, item in value.items():
        if key in _SCHEMA_MEMBERS:
            redacted[key] = redact_schema(item, redactor, memo)
        elif isinstance(item, dict):
            redacted[key] = redact_declaration(item, redactor, memo)
        elif key in _DECLARATION_STRUCTURE and not isinstance(item, list):
            redacted[key] = item
        else:
            redacted[key] = redact_text_value(item, redactor, memo)
    return redacted


def redact_schema(schema: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """A JSON schema with its text redacted and its syntax, names and limits kept.

    A keyword the walk does not know is treated as a subschema when it holds objects or lists and
    as text when it holds a string, so an unknown keyword is scrubbed, not skipped.
    """
    if isinstance(schema, str):
        return redactor.redact(schema, memo)
    if isinstance(schema, list):
        return [redact_schema(item, redactor, memo) for item in schema]
    if not isinstance(schema, dict):
        return schema
    redacted: dict[str, Any] = {}
    for key, item in schema.items():
        if key in _SCHEMA_TEXT:
            redacted[key] = redact_text_value(item, redactor, memo)
        elif key in _SCHEMA_SYNTAX:
            redacted[key] = item
        elif key in _SCHEMA_MAPS and isinstance(item, dict):
            redacted[key] = {name: redact_schema(sub, redactor, memo) for name, sub in item.items()}
        else:
            redacted[key] = redact_schema(item, redactor, memo)
    return redacted
