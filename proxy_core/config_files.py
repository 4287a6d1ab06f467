"""The two YAML files a deployment provides: the secrets file and the model catalogue.

Both are parsed into strict models (unknown keys fail) so a typo is reported at start-up. The
secrets file keeps the original gateway's format (``langfuse_keys`` + ``default_project_id``) and
adds optional gateway API keys. The catalogue keeps LiteLLM's ``config.yaml`` shape
(``model_list`` / ``litellm_settings``) so an existing LiteLLM configuration can be reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from proxy_core.ids import identifier_problem
from proxy_core.policy_config import GovernanceConfig

ENV_REFERENCE_PREFIX = "os.environ/"
WILDCARD = "*"
# What the shipped wildcard entry lets through: hosted providers that authenticate with an API key
# (the client's bearer token, or the provider's usual variable on the server). Not listed, so
# refused until an operator lists them: providers that sign with the host's ambient cloud identity
# (bedrock, sagemaker, vertex_ai, azure with Entra ID …) and those that default to a server on
# localhost (ollama, lm_studio, vllm, hosted_vllm …).
DEFAULT_WILDCARD_PROVIDERS = (
    "openai",
    "anthropic",
    "gemini",
    "mistral",
    "cohere_chat",
    "groq",
    "fireworks_ai",
    "together_ai",
    "deepseek",
    "xai",
    "openrouter",
    "perplexity",
    "deepinfra",
    "cerebras",
)


class ConfigError(Exception):
    """A configuration file or setting is invalid; the message says which and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LangfuseProject(_Strict):
    """Credentials of one Langfuse project; ``host`` overrides the gateway-wide ``LANGFUSE_HOST``."""

    public_key: str = Field(min_length=1)
    secret_key: SecretStr
    host: str | None = None

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("host must start with http:// or https://")
        return value.rstrip("/") if value else value


class ApiKey(_Strict):
    """A gateway API key and the projects it may use (``"*"`` means every project)."""

    key: SecretStr
    projects: tuple[str, ...] = Field(min_length=1)
    name: str | None = None

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("gateway API keys must be at least 16 characters")
        return value


class SecretsFile(_Strict):
    """``secrets.yaml``: Langfuse credentials per project, the default project, gateway keys."""

    langfuse_keys: dict[str, LangfuseProject] = Field(default_factory=dict)
    default_project_id: str | None = None
    api_keys: tuple[ApiKey, ...] = ()

    @field_validator("langfuse_keys")
    @classmethod
    def _check_project_ids(cls, value: dict[str, LangfuseProject]) -> dict[str, LangfuseProject]:
        for project_id in value:
            problem = identifier_problem(project_id)
            if problem is not None:
                raise ValueError(f"project id {project_id!r} {problem}")
        return value

    @model_validator(mode="after")
    def _check_default_project(self) -> SecretsFile:
        """With Langfuse projects the default is one of them; without, any id (the embedded store)."""
        default = self.default_project_id
        if default is None:
            return self
        if self.langfuse_keys and default not in self.langfuse_keys:
            raise ValueError(f"default_project_id {default!r} is not in langfuse_keys")
        problem = identifier_problem(default)
        if problem is not None:
            raise ValueError(f"default_project_id {default!r} {problem}")
        return self


class Deployment(_Strict):
    """One entry of ``model_list``: the public model name and the LiteLLM parameters behind it."""

    model_name: str = Field(min_length=1)
    litellm_params: dict[str, Any]
    model_info: dict[str, Any] = Field(default_factory=dict)
    # The wildcard entry only: the LiteLLM providers whose models it passes through (None: any).
    providers: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check_providers(self) -> Deployment:
        if self.providers is None:
            return self
        if not self.is_wildcard:
            raise ValueError(f'providers applies to the "*" entry only, not to {self.model_name!r}')
        if not self.providers or any(not name.strip() or name != name.lower() for name in self.providers):
            raise ValueError("providers must list LiteLLM provider names in lower case (e.g. openai, anthropic)")
        return self

    @field_validator("litellm_params")
    @classmethod
    def _check_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("model"), str) or not value["model"]:
            raise ValueError("litellm_params.model is required")
        return {key: _resolve_env_reference(item) for key, item in value.items()}

    @property
    def is_wildcard(self) -> bool:
        return self.model_name == WILDCARD


class LiteLLMSettings(_Strict):
    """The subset of LiteLLM's ``litellm_settings`` the gateway honours per request."""

    drop_params: bool = True
    num_retries: int | None = Field(default=None, ge=0, le=10)
    request_timeout: float | None = Field(default=None, gt=0)
    # Accepted for compatibility with LiteLLM proxy configs; the gateway always traces with
    # its own Langfuse OpenTelemetry logger, per project.
    callbacks: tuple[str, ...] = ()
    success_callback: tuple[str, ...] = ()
    failure_callback: tuple[str, ...] = ()


RoutingStrategy = Literal[
    "simple-shuffle", "least-busy", "usage-based-routing-v2", "latency-based-routing", "cost-based-routing"
]


class RouterSettings(_Strict):
    """LiteLLM ``Router`` options the gateway passes through (validated, unknown keys fail)."""

    routing_strategy: RoutingStrategy = "simple-shuffle"
    fallbacks: tuple[dict[str, tuple[str, ...]], ...] = ()
    num_retries: int = Field(default=0, ge=0, le=10)
    timeout: float | None = Field(default=None, gt=0)
    allowed_fails: int | None = Field(default=None, ge=0)
    cooldown_time: float | None = Field(default=None, ge=0)
    retry_after: float = Field(default=0, ge=0)

    def routed_names(self) -> set[str]:
        """Model names that take part in a fallback chain."""
        names: set[str] = set()
        for chain in self.fallbacks:
            for source, targets in chain.items():
                names.add(source)
                names.update(targets)
        return names


class ResponseCacheSettings(_Strict):
    """An optional cache of identical non-streamed requests (off in the shipped configuration)."""

    enabled: bool = False
    ttl_s: int = Field(default=600, ge=1, le=7 * 86_400)


class ModelCatalog(GovernanceConfig):
    """``config_no_cache.yaml``: which model names the gateway serves and how, plus governance."""

    model_list: tuple[Deployment, ...] = ()
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    response_cache: ResponseCacheSettings = Field(default_factory=ResponseCacheSettings)
    # LiteLLM proxy keys that have no meaning here; accepted so existing files load.
    general_settings: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def embedded_default(cls) -> ModelCatalog:
        """The catalogue used when no file is configured: a demo model and pass-through."""
        return cls(
            model_list=(
                Deployment(
                    model_name="demo",
                    litellm_params={
                        "model": "openai/demo",
                        "mock_response": "Hello from the gateway's demo model.",
                    },
                ),
                Deployment(
                    model_name=WILDCARD, litellm_params={"model": WILDCARD}, providers=DEFAULT_WILDCARD_PROVIDERS
                ),
            )
        )

    def routed_names(self) -> set[str]:
        """Names served through LiteLLM's Router: several deployments, rate limits, or a fallback chain."""
        names = {name for name in self.public_model_names if len(self.deployments_for(name)) > 1}
        limited = {d.model_name for d in self.model_list if {"rpm", "tpm"} & set(d.litellm_params)}
        return names | limited | self.router_settings.routed_names()

    def deployments_for(self, model: str) -> tuple[Deployment, ...]:
        """Deployments serving ``model`` by exact name; empty when only a wildcard could."""
        return tuple(d for d in self.model_list if d.model_name == model)

    @property
    def has_wildcard(self) -> bool:
        return self.wildcard is not None

    @property
    def wildcard(self) -> Deployment | None:
        """The ``"*"`` entry (the first, if several), which serves every name not listed."""
        return next((d for d in self.model_list if d.is_wildcard), None)

    @property
    def has_unrestricted_wildcard(self) -> bool:
        """A ``"*"`` entry without ``providers``: any LiteLLM model string, any provider, passes."""
        wildcard = self.wildcard
        return wildcard is not None and wildcard.providers is None

    @property
    def public_model_names(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for deployment in self.model_list:
            if not deployment.is_wildcard:
                seen.setdefault(deployment.model_name, None)
        return tuple(seen)


def _resolve_env_reference(value: Any) -> Any:
    """Resolve LiteLLM's ``os.environ/NAME`` convention at load time, failing if unset."""
    if isinstance(value, str) and value.startswith(ENV_REFERENCE_PREFIX):
        name = value.removeprefix(ENV_REFERENCE_PREFIX)
        resolved = os.environ.get(name)
        if resolved is None:
            raise ValueError(f"environment variable {name} (referenced as {value}) is not set")
        return resolved
    return value


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(item) for item in error["loc"]) or "(top level)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def load_secrets(path: Path, *, explicit: bool) -> SecretsFile:
    """Load the secrets file; a missing default file means "no tracing", a missing explicit one fails."""
    if not path.is_file():
        if explicit:
            raise ConfigError(f"SECRETS_PATH {path} does not exist")
        return SecretsFile()
    try:
        return SecretsFile.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc


class SecretsFileSource:
    """The secrets file, read again by a refresh (a mounted Kubernetes Secret is updated in place
    when the Secret changes). Once started, a missing file is an error, never "no secrets"."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def name(self) -> str:
        return f"SECRETS_PATH {self._path}"

    def load(self) -> SecretsFile:
        return load_secrets(self._path, explicit=True)


def parse_secrets(text: str, origin: str) -> SecretsFile:
    """Secrets held as text outside a file (a secret manager's value): the secrets file's schema,
    as YAML or JSON (JSON is YAML). ``origin`` names where the text came from in every error.

    A YAML error is reported by its position only: the parser would quote the offending line,
    and in a secret that line may be a key.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{origin} is not valid YAML or JSON: {problem}{where}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{origin} is not a mapping with the secrets file's keys (langfuse_keys, api_keys, …)")
    try:
        return SecretsFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc)}") from None


def load_catalog(path: Path) -> ModelCatalog:
    """Load a LiteLLM-style model catalogue (``model_list`` and friends)."""
    try:
        return ModelCatalog.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
