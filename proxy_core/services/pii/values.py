"""The walk for values of no known layout: every string inside them is redacted.

Fields the gateway does not understand (provider-specific extras, odd message shapes) get this
walk, so an unknown layout is scrubbed rather than skipped and cannot become a way around the
redactor.
"""

from __future__ import annotations

from typing import Any

from .engine import PiiRedactor, PlaceholderMemo


def redact_text_value(value: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """``value`` with every string inside it redacted, recursing through lists and dicts.

    Integers are checked too (``{"npi": 1234567893}`` in tool arguments or metadata) and become
    their placeholder string when they match; booleans, floats, ``None`` and dict keys are kept.
    """
    if isinstance(value, str):
        return redactor.redact(value, memo)
    if isinstance(value, dict):
        return {key: redact_text_value(item, redactor, memo) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_text_value(item, redactor, memo) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return _redact_integer(value, redactor, memo)
    return value


def _redact_integer(value: int, redactor: PiiRedactor, memo: PlaceholderMemo) -> int | str:
    text = str(value)
    redacted = redactor.redact(text, memo)
    return value if redacted == text else redacted
