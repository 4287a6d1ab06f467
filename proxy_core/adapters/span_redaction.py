"""Which values of an exported span a project's redaction rewrites.

In ``redact`` mode everything the gateway sent was redacted before the provider saw it, so only
what came back (outputs, errors) is scanned; in ``trace_only`` mode every string is. Client tags
are always redacted, but the gateway's own (``rollout_id:…``, ``insertion_id:…``) never are:
``/traces`` finds traces by them. Event attributes and the status text are always scanned.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from proxy_core.services.chat_request import RESERVED_TAG_PREFIXES
from proxy_core.services.sanitizer import SpanRedaction

TAGS_ATTRIBUTE = "langfuse.trace.tags"
# Attributes that carry what the provider sent back (and error texts, which may quote it).
OUTPUT_MARKERS = ("output", "completion", "choices", "error", "exception")


@functools.lru_cache(maxsize=1024)  # one test per attribute name, not per attribute of every span
def _carries_output(key: str) -> bool:
    return any(marker in key for marker in OUTPUT_MARKERS)


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list):
        return tuple(redact(item) if isinstance(item, str) else item for item in value)
    return value


def _redact_tags(raw: Any, redact: Callable[[str], str]) -> Any:
    if not isinstance(raw, str):
        return _redact_value(raw, redact)
    try:
        tags = json.loads(raw)
    except ValueError:
        return redact(raw)
    if not isinstance(tags, list):
        return redact(raw)
    kept = [t if isinstance(t, str) and t.startswith(RESERVED_TAG_PREFIXES) else _redact_value(t, redact) for t in tags]
    return json.dumps(kept)


class SpanRedactor:
    """Redacts the values of one span; one instance per span, so one value gets one placeholder."""

    __slots__ = ("_outputs_only", "_redact")

    def __init__(self, redaction: SpanRedaction) -> None:
        self._redact = redaction.new_redactor()
        self._outputs_only = redaction.outputs_only

    def attribute(self, key: str, value: Any) -> Any:
        if key == TAGS_ATTRIBUTE:
            return _redact_tags(value, self._redact)
        if self._outputs_only and not _carries_output(key):
            return value
        return _redact_value(value, self._redact)

    def event_attribute(self, value: Any) -> Any:
        return _redact_value(value, self._redact)

    def text(self, value: str) -> str:
        return self._redact(value)
