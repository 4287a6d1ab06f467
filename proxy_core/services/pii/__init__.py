"""PII redaction for chat requests: validated identifiers become per-request placeholders.

Build one ``PiiRedactor`` from configuration at start-up, create a ``PlaceholderMemo`` per
request, and pass the request body through ``redact_chat_body`` before anything else sees it.
"""

from .body import redact_chat_body, redact_content, redact_message, redact_tool_arguments
from .engine import PiiEngineError, PiiRedactor, PlaceholderMemo
from .rules import PiiType
from .values import redact_text_value

__all__ = [
    "PiiEngineError",
    "PiiRedactor",
    "PiiType",
    "PlaceholderMemo",
    "redact_chat_body",
    "redact_content",
    "redact_message",
    "redact_text_value",
    "redact_tool_arguments",
]
