"""Header values that reach a trace get the body's redaction: in the same modes, with the same memo."""

from __future__ import annotations

import pytest

from proxy_core.errors import SanitizerError
from proxy_core.policy_config import GovernanceConfig
from proxy_core.services.governance import Governance
from proxy_core.services.pii import engine
from proxy_core.services.sanitizer import Sanitizer

EMAIL = "canary.person@example.org"
SESSION = "ssn-219-09-9999"
CONFIG = GovernanceConfig.model_validate(
    {
        "projects": {
            "redacted": {"pii": {"mode": "redact"}, "required_metadata": ["payer_id", "plan"]},
            "traced": {"pii": {"mode": "trace_only"}},
            "open": {"pii": {"mode": "off"}},
        }
    }
)


@pytest.fixture
def sanitizer() -> Sanitizer:
    return Sanitizer(CONFIG)


def test_header_ids_share_the_bodys_placeholders_in_redact_mode(sanitizer: Sanitizer) -> None:
    redaction = sanitizer.for_request("redacted")
    body = redaction.body({"model": "m", "user": EMAIL, "messages": [{"role": "user", "content": "SSN 234-56-7890"}]})
    assert body["user"] == "<REDACTED_EMAIL_1>"
    assert redaction.text(EMAIL) == "<REDACTED_EMAIL_1>"
    assert redaction.text(SESSION) == "ssn-<REDACTED_SSN_2>"
    assert redaction.text("user-9") == "user-9"
    assert redaction.text(None) is None


@pytest.mark.parametrize("project", ["traced", "open"])
def test_header_ids_are_kept_where_the_body_is(sanitizer: Sanitizer, project: str) -> None:
    """In ``trace_only`` mode the trace's copy is redacted at export, as for the body's ``user``."""
    redaction = sanitizer.for_request(project)
    body = {"model": "m", "user": EMAIL, "messages": [{"role": "user", "content": "hi"}]}
    assert redaction.body(body) is body
    assert redaction.text(EMAIL) == EMAIL
    assert redaction.text(SESSION) == SESSION


def test_a_failing_engine_refuses_the_header_too(sanitizer: Sanitizer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, text: str, memo: object) -> str:
        raise engine.PiiEngineError("PII redaction failed: RuntimeError")

    monkeypatch.setattr(engine.PiiRedactor, "redact", broken)
    with pytest.raises(SanitizerError, match="could not be sanitized"):
        sanitizer.for_request("redacted").text(EMAIL)


def test_required_metadata_from_headers_is_redacted_and_body_metadata_kept(sanitizer: Sanitizer) -> None:
    """Body metadata was redacted with the body; a header value is redacted after it is checked."""
    redaction = sanitizer.for_request("redacted")
    body = redaction.body({"model": "m", "messages": [], "metadata": {"plan": EMAIL}})
    decided = Governance(CONFIG, None).apply(
        "redacted", {"x-metadata-payer-id": "219-09-9999"}, body["metadata"], None, redaction.text
    )
    assert decided.required_metadata == {"payer_id": "<REDACTED_SSN_1>", "plan": "<REDACTED_EMAIL_1>"}
    assert set(decided.extra_tags) == {"payer_id:<REDACTED_SSN_1>", "plan:<REDACTED_EMAIL_1>"}
