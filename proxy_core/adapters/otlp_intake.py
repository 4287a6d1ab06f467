"""Langfuse's OTLP/HTTP trace intake (httpx, one pooled client for every project).

Answers are sorted the way the OTLP/HTTP exporter specification and Langfuse's behaviour call
for: 2xx delivered; 413 too large (a smaller batch may pass); 408, 429, every 5xx, a refused or
reset connection and a timeout unavailable (try again later, ``Retry-After`` kept); any other
answer rejected for good (bad credentials, a malformed batch).
"""

from __future__ import annotations

import base64

import httpx

from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.trace_ports import IntakeRejectedError, IntakeTooLargeError, IntakeUnavailableError

OTLP_TRACES_PATH = "/api/public/otel/v1/traces"
# The ingestion version LiteLLM's own exporter announces: Langfuse makes such spans visible at once.
INGESTION_VERSION = "4"


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def basic_auth(public_key: str, secret_key: str) -> str:
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


class LangfuseOtlpIntake:
    """Implements ``TraceIntake`` over Langfuse's OTLP endpoint."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8), follow_redirects=False
        )

    async def post(self, target: LangfuseTarget, body: bytes, *, timeout_s: float) -> None:
        headers = {
            "authorization": basic_auth(target.public_key, target.secret_key),
            "content-type": "application/json",
            "x-langfuse-ingestion-version": INGESTION_VERSION,
        }
        try:
            response = await self._client.post(
                f"{target.host}{OTLP_TRACES_PATH}", content=body, headers=headers, timeout=timeout_s
            )
        except httpx.TransportError as exc:  # refused, reset, timed out, DNS …
            raise IntakeUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if response.is_success:
            return
        if status == 413:
            raise IntakeTooLargeError(f"HTTP 413 for a body of {len(body)} bytes")
        if status in (408, 429) or status >= 500:
            raise IntakeUnavailableError(f"HTTP {status}", retry_after_s=_retry_after_s(response))
        raise IntakeRejectedError(f"HTTP {status}: {response.text[:200]}")

    async def aclose(self) -> None:
        await self._client.aclose()
