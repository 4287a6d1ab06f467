"""What happens to a request body before it is sanitized: experiments, then managed prompts.

An experiment's variant may replace the model and choose the prompt version; the named prompt
is fetched (cached), compiled with the request's ``prompt_variables`` and put before the
request's own messages. Variables are client data, so this runs before PII sanitization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from proxy_core.errors import InvalidRequestError
from proxy_core.services.experiments import Assignment, assign
from proxy_core.services.governance import Governance
from proxy_core.services.projects import ResolvedProject
from proxy_core.services.prompts import Prompt, PromptCache, compile_messages, prompt_ref

MAX_VARIABLES = 256


@dataclass(slots=True)
class Prepared:
    body: dict[str, Any]
    assignments: list[Assignment] = field(default_factory=list)
    prompt: Prompt | None = None

    def trace_tags(self) -> list[str]:
        tags = [tag for assignment in self.assignments for tag in assignment.tags]
        if self.prompt is not None:
            tags.append(f"prompt:{self.prompt.name}:{self.prompt.version}")
        return tags

    def trace_metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {f"experiment_{a.experiment}": a.variant.name for a in self.assignments}
        if self.prompt is not None:
            metadata.update(prompt_name=self.prompt.name, prompt_version=self.prompt.version)
        return metadata

    def variant_header(self) -> str | None:
        return ",".join(f"{a.experiment}={a.variant.name}" for a in self.assignments) or None


def take_variables(body: dict[str, Any]) -> dict[str, Any]:
    """Remove ``prompt_variables`` from the body (it is never forwarded) and check it."""
    variables = body.pop("prompt_variables", None)
    if variables is None:
        return {}
    if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
        raise InvalidRequestError(
            "'prompt_variables' must be an object of at most 256 entries.",
            param="prompt_variables",
            code="invalid_value",
        )
    for key, value in variables.items():
        if not isinstance(value, str | int | float | bool):
            raise InvalidRequestError(
                f"'prompt_variables.{key}' must be a string or a number.",
                param=f"prompt_variables.{key}",
                code="invalid_value",
            )
    return variables


class RequestPreparer:
    def __init__(self, governance: Governance, prompts: PromptCache) -> None:
        self._governance = governance
        self._prompts = prompts

    async def prepare(
        self,
        project: ResolvedProject,
        headers: Mapping[str, str],
        body: dict[str, Any],
        variables: Mapping[str, Any],
        unit: str | None,
    ) -> Prepared:
        """``unit`` is what keeps a caller in one experiment arm (session, user or rollout id)."""
        body = dict(body)
        prepared = Prepared(body, assign(self._governance.experiments_for(project.store_id), body["model"], unit))
        ref = prompt_ref(headers)
        for assignment in prepared.assignments:
            variant = assignment.variant
            if variant.model is not None:
                body["model"] = variant.model
            if ref is not None and (variant.prompt_version is not None or variant.prompt_label is not None):
                ref = replace(ref, version=variant.prompt_version, label=variant.prompt_label)
        if ref is None:
            if variables:
                raise InvalidRequestError(
                    "'prompt_variables' needs an x-prompt-name header.", param="prompt_variables", code="invalid_value"
                )
            return prepared
        if project.tracing is None:
            raise InvalidRequestError(
                "Managed prompts need a Langfuse project; none is configured for this request.",
                param="x-prompt-name",
                code="prompt_not_found",
            )
        prepared.prompt = await self._prompts.get(project.tracing, ref)
        body["messages"] = compile_messages(prepared.prompt, variables, ref) + list(body["messages"])
        return prepared
