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

    @property
    def has_own_key(self) -> bool:
        return "api_key" in self.params


class ModelResolver:
    """Exact names from the catalogue first, then the ``*`` pass-through when configured."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self._by_name: dict[str, ResolvedModel] = {}
        for name in catalog.public_model_names:
            deployments = catalog.deployments_for(name)
            if len(deployments) > 1:
                raise ConfigError(
                    f"model_list has {len(deployments)} deployments named {name!r}; "
                    "give each deployment its own model_name"
                )
            params = dict(deployments[0].litellm_params)
            self._by_name[name] = ResolvedModel(params.pop("model"), params)
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
