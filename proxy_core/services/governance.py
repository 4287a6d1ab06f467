"""Per-project rules applied to every call: required metadata, session ids, environment profile.

The organisation must be able to find every call again (by tenant, by payer …), so a project can
require metadata keys; a call that lacks one is refused before any provider spend, with every
missing key named. Present keys become ``key:value`` tags and trace metadata.

Values from the body's metadata arrive already redacted with the rest of the body; values taken
from ``x-metadata-*`` headers are redacted here with the request's redaction, after they are
checked, so a client's error names what it sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy_core.errors import InvalidRequestError
from proxy_core.ids import identifier_problem
from proxy_core.policy_config import EnvironmentProfile, Experiment, GovernanceConfig, ProjectPolicy

METADATA_HEADER_PREFIX = "x-metadata-"
MAX_METADATA_VALUE = 256

HeaderRedaction = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class CallGovernance:
    """What the rules decided for one call."""

    required_metadata: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    session_generated: bool = False
    extra_tags: tuple[str, ...] = ()
    tracing_enabled: bool = True
    environment: str | None = None


def _header_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name[len(METADATA_HEADER_PREFIX) :].replace("-", "_"): value
        for name, value in headers.items()
        if name.lower().startswith(METADATA_HEADER_PREFIX)
    }


def _required(
    policy: ProjectPolicy, headers: Mapping[str, str], body_metadata: Mapping[str, Any], redact: HeaderRedaction
) -> dict[str, str]:
    from_headers = _header_metadata(headers)
    values: dict[str, str] = {}
    missing = []
    for key in policy.required_metadata:
        raw = from_headers.get(key, body_metadata.get(key))
        if raw is None or raw == "":
            missing.append(key)
            continue
        value = str(raw)
        problem = identifier_problem(value)
        if problem is not None or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequestError(
                f"Invalid metadata {key!r}: {problem or 'too long'}.", param=f"metadata.{key}", code="invalid_metadata"
            )
        values[key] = redact(value) if key in from_headers else value
    if missing:
        raise InvalidRequestError(
            "Missing required metadata: " + ", ".join(missing) + " (send them as x-metadata-<key> headers "
            "or in the body's metadata).",
            param="metadata",
            code="missing_required_metadata",
        )
    return values


class Governance:
    """Applies the configuration's project policies and the selected environment profile."""

    def __init__(self, config: GovernanceConfig, environment: str | None) -> None:
        self._config = config
        self._environment = environment
        profile = config.environments.get(environment) if environment else None  # type: ignore[call-overload]
        self._profile: EnvironmentProfile = profile or EnvironmentProfile()

    def experiments_for(self, project_id: str) -> tuple[Experiment, ...]:
        return self._config.policy_for(project_id).experiments

    def apply(
        self,
        project_id: str,
        headers: Mapping[str, str],
        body_metadata: Mapping[str, Any],
        session_id: str | None,
        redact_header: HeaderRedaction,
    ) -> CallGovernance:
        """What the project's rules decide for one call.

        ``session_id`` arrives already redacted. ``redact_header`` is the request's redaction
        (``RequestRedaction.text``), applied to the ``x-metadata-*`` values read here; it is
        required, so no caller can forget it.
        """
        policy = self._config.policy_for(project_id)
        required = _required(policy, headers, body_metadata, redact_header)
        generated = session_id is None and policy.generate_session_id
        tags = tuple(self._profile.langfuse.default_tags) + tuple(f"{k}:{v}" for k, v in required.items())
        return CallGovernance(
            required_metadata=required,
            session_id=uuid.uuid4().hex if generated else session_id,
            session_generated=generated,
            extra_tags=tags,
            tracing_enabled=self._profile.langfuse.enabled,
            environment=self._environment,
        )
