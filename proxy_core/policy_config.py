"""Governance configuration: what each project requires, and what each environment changes.

These sections live in the gateway configuration file beside ``model_list``:

.. code-block:: yaml

    pii_defaults: {mode: redact}
    projects:
      payer-app:
        pii: {mode: trace_only, required: true, member_id_patterns: ['\\bXKZ\\d{9}\\b']}
        required_metadata: [payer_id]
        generate_session_id: true
    environments:
      production:
        langfuse: {enabled: true, default_tags: [production]}

None of it is secret; credentials stay in the secrets file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy_core.ids import identifier_problem

PiiMode = Literal["redact", "trace_only", "off"]
EnvironmentName = Literal["development", "staging", "production"]
RESERVED_METADATA_KEYS = frozenset(
    {"rollout_id", "insertion_id", "invocation_id", "experiment_id", "run_id", "row_id", "project_id", "tags"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PiiPolicy(_Strict):
    """How a project's PII is handled.

    ``redact``: the provider, Langfuse and logs see only redacted text. ``trace_only``: the
    provider gets the original (e.g. under a BAA) but traces and logs are redacted. ``off``:
    nothing is redacted; refused in production for a project marked ``required``.
    """

    mode: PiiMode = "redact"
    required: bool = False
    member_id_patterns: tuple[str, ...] = ()

    @field_validator("member_id_patterns")
    @classmethod
    def _compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"member_id pattern {pattern!r} is not a valid regular expression: {exc}") from None
        return patterns


class Variant(_Strict):
    """One arm of an experiment: its share, and what it changes (nothing for a control arm)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: int = Field(ge=1, le=10_000)
    model: str | None = None
    prompt_version: int | None = Field(default=None, ge=1)
    prompt_label: str | None = None


class Experiment(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    variants: tuple[Variant, ...] = Field(min_length=2)
    models: tuple[str, ...] = ()  # empty: every model

    @property
    def total_weight(self) -> int:
        return sum(variant.weight for variant in self.variants)

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [variant.name for variant in variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique within an experiment")
        return variants


class ProjectPolicy(_Strict):
    """Per-project rules the gateway enforces on every call."""

    pii: PiiPolicy | None = None
    experiments: tuple[Experiment, ...] = ()
    required_metadata: tuple[str, ...] = ()
    generate_session_id: bool = False

    @field_validator("required_metadata")
    @classmethod
    def _check_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            problem = identifier_problem(key)
            if problem is not None or ":" in key or len(key) > 64:
                raise ValueError(f"required metadata key {key!r} must be a short name without ':' or commas")
            if key in RESERVED_METADATA_KEYS:
                raise ValueError(f"required metadata key {key!r} is reserved by the gateway")
        return keys


class LangfuseProfile(_Strict):
    enabled: bool = True
    default_tags: tuple[str, ...] = ()


class EnvironmentProfile(_Strict):
    """What ``ENVIRONMENT`` selects: whether traces are sent, and default tags for them."""

    langfuse: LangfuseProfile = Field(default_factory=LangfuseProfile)


class GovernanceConfig(_Strict):
    pii_defaults: PiiPolicy = Field(default_factory=PiiPolicy)
    projects: dict[str, ProjectPolicy] = Field(default_factory=dict)
    environments: dict[EnvironmentName, EnvironmentProfile] = Field(default_factory=dict)

    def policy_for(self, project_id: str) -> ProjectPolicy:
        return self.projects.get(project_id, ProjectPolicy())

    def pii_for(self, project_id: str) -> PiiPolicy:
        policy = self.projects.get(project_id)
        return policy.pii if policy is not None and policy.pii is not None else self.pii_defaults
