"""Which provider model and deployment parameters serve a requested model name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy_core.config_files import ConfigError, ModelCatalog
from proxy_core.errors import NotFoundError


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
    """Exact names from the catalogue first, then the ``*`` pass-through when configured."""

    def __init__(self, catalog: ModelCatalog) -> None:
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
        wildcard = next((d for d in catalog.model_list if d.is_wildcard), None)
        self._wildcard_params: dict[str, Any] | None = None
        if wildcard is not None:
            self._wildcard_params = {k: v for k, v in wildcard.litellm_params.items() if k != "model"}

    def resolve(self, model: str) -> ResolvedModel:
        resolved = self._by_name.get(model)
        if resolved is not None:
            return resolved
        if self._wildcard_params is not None:
            return ResolvedModel(model, dict(self._wildcard_params))
        raise NotFoundError(
            f"The model {model!r} does not exist on this gateway.", param="model", code="model_not_found"
        )
