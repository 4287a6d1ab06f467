"""Where PII is removed, per project: before the provider call, and again before export.

* ``redact`` mode (default): the request body, and the header values that become trace fields
  (``x-session-id``, ``x-user-id``, ``x-metadata-*``), are redacted before LiteLLM sees them, so
  the provider, the trace and every log see placeholders only.
* ``trace_only``: the provider receives the original text (e.g. under a BAA); only traces and
  logs are redacted.
* In both modes spans are redacted once more as they are exported (``span_redaction``): this
  catches what a model echoes back in its output and what LiteLLM copies into its raw-request
  child span, which its own masking options do not cover.

Both stages fail closed: a request whose redaction fails is refused (500 ``sanitizer_error``),
and a span whose redaction fails is dropped rather than exported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, overload

from proxy_core.errors import SanitizerError
from proxy_core.policy_config import GovernanceConfig, PiiPolicy
from proxy_core.services.pii import PiiEngineError, PiiRedactor, PlaceholderMemo, redact_chat_body, redact_text_value

TextRedactor = Callable[[str], str]
# How one endpoint's body is walked (``redact_chat_body``, ``redact_responses_body`` …).
BodyWalk = Callable[[dict[str, Any], PiiRedactor, PlaceholderMemo], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SpanRedaction:
    """How to redact one project's spans at export.

    ``new_redactor`` is called once per span, so one value gets one placeholder within a span.
    ``outputs_only``: in ``redact`` mode everything the gateway sent was already redacted, so only
    what came back (outputs) can hold new PII; in ``trace_only`` mode every attribute is redacted.
    """

    new_redactor: Callable[[], TextRedactor]
    outputs_only: bool


# Redaction runs at about 3 MB/s of PII-dense text: a body this large would hold up every other
# request of the worker for tens of milliseconds or more (8.6 MB: 2.8 s), so it is redacted on a
# thread of its own, where the event loop still gets the interpreter every switch interval.
OFF_LOOP_BYTES = 256 * 1024


class RequestRedaction:
    """One request's redaction: its body and the header values its trace receives, one memo.

    Sharing the memo keeps one value on one placeholder wherever it arrived: an e-mail sent both
    as ``x-user-id`` and as the body's ``user`` is ``<REDACTED_EMAIL_1>`` in both places. Header
    values are redacted in exactly the mode the body is (``redact``); in ``trace_only`` mode they
    reach the trace only as span attributes, which are redacted at export, and in ``off`` mode
    nothing is. Without a redactor this is the identity.
    """

    __slots__ = ("_executor", "_memo", "_redactor")

    def __init__(self, redactor: PiiRedactor | None, executor: Executor | None = None) -> None:
        self._redactor = redactor
        self._memo = PlaceholderMemo()
        self._executor = executor

    async def body_of(self, body: dict[str, Any], size: int, walk: BodyWalk = redact_chat_body) -> dict[str, Any]:
        """``body`` (``size`` bytes as received) redacted as ``body`` does, off the event loop when large."""
        if self._redactor is None or self._executor is None or size < OFF_LOOP_BYTES:
            return self.body(body, walk)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.body, body, walk)

    def body(self, body: dict[str, Any], walk: BodyWalk = redact_chat_body) -> dict[str, Any]:
        """The body to send upstream (``walk``: the layout of the endpoint's body)."""
        if self._redactor is None:
            return body
        try:
            return walk(body, self._redactor, self._memo)
        except PiiEngineError:
            raise _refused() from None

    @overload
    def text(self, value: str) -> str: ...

    @overload
    def text(self, value: None) -> None: ...

    def text(self, value: str | None) -> str | None:
        """A header value bound for the trace (session id, user id, metadata); ``None`` stays ``None``."""
        if value is None or self._redactor is None:
            return value
        try:
            return self._redactor.redact(value, self._memo)
        except PiiEngineError:
            raise _refused() from None

    def value(self, value: Any) -> Any:
        """Any JSON value with every string inside it redacted (keys, numbers and structure kept)."""
        if self._redactor is None:
            return value
        try:
            return redact_text_value(value, self._redactor, self._memo)
        except (PiiEngineError, RecursionError):  # RecursionError: nested deeper than the walk can go
            raise _refused() from None


def _refused() -> SanitizerError:
    return SanitizerError("The request could not be sanitized; it was not forwarded.")


class Sanitizer:
    def __init__(self, config: GovernanceConfig) -> None:
        self._config = config
        self._redactors: dict[tuple[str, ...], PiiRedactor] = {}
        self._large_bodies: ThreadPoolExecutor | None = None

    def _large_body_executor(self) -> ThreadPoolExecutor:
        """One thread, started on first use: large bodies wait for each other, not for the loop."""
        if self._large_bodies is None:
            self._large_bodies = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact-large")
        return self._large_bodies

    def close(self) -> None:
        """Stop the large-body thread (a redaction under way finishes; queued ones are dropped)."""
        if self._large_bodies is not None:
            self._large_bodies.shutdown(wait=False, cancel_futures=True)
            self._large_bodies = None

    def _redactor(self, policy: PiiPolicy) -> PiiRedactor:
        redactor = self._redactors.get(policy.member_id_patterns)
        if redactor is None:
            redactor = self._redactors[policy.member_id_patterns] = PiiRedactor(policy.member_id_patterns)
        return redactor

    def warm_up(self, project_ids: list[str]) -> None:
        """Compile every project's patterns at start-up (a bad pattern fails there, not later)."""
        for project_id in project_ids:
            policy = self._config.pii_for(project_id)
            if policy.mode != "off":
                self._redactor(policy)

    def for_request(self, project_id: str) -> RequestRedaction:
        """The redaction of one request: active in ``redact`` mode, the identity otherwise."""
        policy = self._config.pii_for(project_id)
        if policy.mode != "redact":
            return RequestRedaction(None)
        return RequestRedaction(self._redactor(policy), self._large_body_executor())

    def for_stored_text(self, project_id: str) -> RequestRedaction:
        """Redaction of text the gateway keeps (an agent's log records): active unless PII is off.

        Kept text is read back like a trace, so ``trace_only`` redacts it too.
        """
        policy = self._config.pii_for(project_id)
        if policy.mode == "off":
            return RequestRedaction(None)
        return RequestRedaction(self._redactor(policy))

    def span_redaction(self, project_id: str) -> SpanRedaction | None:
        """Export-stage redaction for the spans of ``project_id`` (None when PII is off for it)."""
        policy = self._config.pii_for(project_id)
        if policy.mode == "off":
            return None
        redactor = self._redactor(policy)

        def for_one_span() -> TextRedactor:
            memo = PlaceholderMemo()
            return lambda text: redactor.redact(text, memo)

        return SpanRedaction(for_one_span, outputs_only=policy.mode == "redact")
