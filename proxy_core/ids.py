"""Identifiers that travel in URL paths, Redis keys and Langfuse tags.

Langfuse splits tag filters on commas and Redis key names must not be ambiguous, so every id
from a path is checked here before it is used anywhere: 1–256 characters, no ``/``, ``,``,
whitespace, control or invisible formatting characters (zero-width spaces and joiners, bidi
overrides, byte-order marks: two ids that print the same in a dashboard must be the same id).
"""

from __future__ import annotations

import re
import unicodedata

from proxy_core.errors import InvalidRequestError

MAX_IDENTIFIER_LENGTH = 256
_FORBIDDEN = re.compile(r"[/,\s\x00-\x1f\x7f-\x9f\u2028\u2029]")


def identifier_problem(value: str) -> str | None:
    """Why ``value`` is not a usable identifier, or None when it is."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return f"must be at most {MAX_IDENTIFIER_LENGTH} characters"
    if _FORBIDDEN.search(value):
        return "must not contain '/', ',', whitespace or control characters"
    if not value.isascii() and any(unicodedata.category(ch) == "Cf" for ch in value):
        return "must not contain invisible formatting characters (zero-width, bidi controls)"
    return None


def validate_identifier(value: str, name: str) -> str:
    """Return ``value`` or raise a 400 that names the offending parameter."""
    problem = identifier_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"Invalid {name}: {problem}.", param=name, code="invalid_identifier")
    return value
