"""Which provider model and deployment parameters serve a requested model name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from proxy_core.config_files import ConfigError, ModelCatalog
from proxy_core.errors import NotFoundError, PermissionDeniedError


class ProviderLookup(Protocol):
    """The LiteLLM provider that serves a model string (with the wildcard's ``api_base``, if any).

    Raises ``NotFoundError`` (``model_not_found``) when no provider can be told from the string.
    """

    def __call__(self, model: str, api_base: str | None) -> str: ...


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """The LiteLLM model string and the operator's parameters for it (keys, api_base, mock …)."""

    litellm_model: str
    params: dict[str, Any]
    routed: bool = False
    first_deployment: dict[str, Any] | None = None

    @property
    def has_own_key(self) -> bool:
        return "api_key" in (self.first_deployment if self.routed and self.first_deployment else self.params)

    def direct(self) -> ResolvedModel:
        """A routed name as one direct call to its first deployment (for a client-chosen upstream)."""
        if not self.routed or self.first_deployment is None:
            return self
        params = dict(self.first_deployment)
        return ResolvedModel(params.pop("model"), params)


class ModelResolver:
    """Exact names from the catalogue first, then the ``*`` pass-through when configured.

    A wildcard with a ``providers`` list passes only models of those providers: a model string
    chooses its provider, and some providers sign with the server's ambient cloud credentials
    (``bedrock/…``) or call a server on localhost (``ollama/…``). ``provider_of`` tells the
    provider (LiteLLM's own rule, which also maps bare names such as ``anthropic.claude-…``).
    """

    def __init__(self, catalog: ModelCatalog, provider_of: ProviderLookup | None = None) -> None:
        self._by_name: dict[str, ResolvedModel] = {}
        routed = catalog.routed_names()
        for name in sorted(routed - set(catalog.public_model_names)):
            raise ConfigError(f"router_settings.fallbacks names {name!r}, which is not in model_list")
        for name in catalog.public_model_names:
            deployments = catalog.deployments_for(name)
            params = dict(deployments[0].litellm_params)
            model = params.pop("model")
            if name in routed:
                # The Router picks the deployment; only the group name travels with the call.
                self._by_name[name] = ResolvedModel(name, {}, routed=True, first_deployment={"model": model, **params})
            else:
                self._by_name[name] = ResolvedModel(model, params)
        wildcard = catalog.wildcard
        self._wildcard_params: dict[str, Any] | None = None
        self._providers: frozenset[str] | None = None
        self._provider_of = provider_of
        if wildcard is not None:
            self._wildcard_params = {k: v for k, v in wildcard.litellm_params.items() if k != "model"}
            if wildcard.providers is not None:
                if provider_of is None:
                    raise ConfigError('the "*" entry lists providers, but no provider lookup was given')
                self._providers = frozenset(wildcard.providers)

    def resolve(self, model: str) -> ResolvedModel:
        resolved = self._by_name.get(model)
        if resolved is not None:
            return resolved
        if self._wildcard_params is not None:
            self._check_provider(model)
            return ResolvedModel(model, dict(self._wildcard_params))
        raise NotFoundError(
            f"The model {model!r} does not exist on this gateway.", param="model", code="model_not_found"
        )

    def _check_provider(self, model: str) -> None:
        if self._providers is None or self._provider_of is None:
            return
        provider = self._provider_of(model, self._wildcard_params.get("api_base") if self._wildcard_params else None)
        if provider not in self._providers:
            allowed = ", ".join(sorted(self._providers))
            raise PermissionDeniedError(
                f"The model {model!r} is served by provider {provider!r}, which this gateway does not pass "
                f"through (allowed: {allowed}). An operator can allow it by adding {provider!r} to the providers "
                f'of the "*" entry in the model catalogue, or by listing the model by name.',
                param="model",
                code="model_provider_not_allowed",
            )
