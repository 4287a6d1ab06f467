"""Gateway settings: the one place that reads the environment and the configuration files.

Sources, in order of precedence: keyword arguments (tests), environment variables, defaults.
The environment names for the variables the original gateway defined (``PORT``, ``REDIS_HOST``,
``SECRETS_PATH``, ``LANGFUSE_HOST``, ``REQUEST_TIMEOUT``, ``LOG_LEVEL``) are kept as they were so a
deployment of it can switch over without edits. Files named by the settings (the secrets file and
the model catalogue) are loaded and validated here too, so that a bad deployment fails at start-up
with one message instead of on the first request. What they load is never read from the
environment: a ``SECRETS`` variable standing in for the secrets file would also drop the gateway's
API keys, and with them authentication.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from proxy_core.config_files import ConfigError, ModelCatalog, SecretsFile, load_catalog, load_secrets
from proxy_core.policy_config import EnvironmentName
from proxy_core.production import production_problems
from proxy_core.redis_options import NO_REDIS_TARGET, RedisMode, RedisOptions, redis_target

SecretsSourceName = Literal["file", "aws-secretsmanager"]
DEFAULT_LANGFUSE_HOST = "https://us.cloud.langfuse.com"
DEFAULT_SECRETS_PATH = Path("proxy_core/secrets.yaml")
DEFAULT_GATEWAY_CONFIG = Path("config_no_cache.yaml")


# Redis settings that also mean something without Redis (the in-process store's TTL, …).
USED_WITHOUT_REDIS = frozenset({"redis_key_prefix", "redis_key_ttl_s", "redis_timeout_s"})


class NotFromEnvironment:
    """Marks a field no environment variable sets (``Annotated[..., NotFromEnvironment]``)."""


class _EnvironmentVariables(EnvSettingsSource):
    """The environment, minus the fields marked ``NotFromEnvironment``; a value that cannot be
    parsed is a ``ConfigError`` naming its variable, not pydantic-settings' ``SettingsError``."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        if NotFromEnvironment in field.metadata:
            return None
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:  # the JSON decoder's message quotes no part of the value
            detail = f" as JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ConfigError(f"{field_name.upper()}: cannot be parsed{detail}") from None


class Settings(BaseSettings):
    """Everything the gateway needs to start; validated once, then read-only."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, case_sensitive=False)
    _redis_options: RedisOptions | None = PrivateAttr(default=None)

    # Deployment profile (selects the configuration file's `environments:` block)
    environment: EnvironmentName | None = None

    # HTTP server
    host: str = "0.0.0.0"
    port: int = Field(default=4000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # "json": one JSON object per line (for log collectors); "text": lines for people.
    log_format: Literal["text", "json"] = "text"
    # With SHUTDOWN_FLUSH_TIMEOUT_S, the whole stop fits in Kubernetes' default 30 s grace period.
    graceful_shutdown_timeout_s: float = Field(default=15.0, gt=0)
    # Idle client connections stay open this long: longer than clients keep theirs (httpx and the
    # openai SDK: 5 s; load balancers: 60 s), so a client never sends on one the gateway closed.
    keep_alive_s: int = Field(default=75, ge=1, le=3600)
    # A request's head and body must both arrive within this of its first byte (a total deadline,
    # not an idle timer): a client trickling a byte a second is answered 408 and closed all the same.
    request_head_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # Requests in flight per process (health, readiness and metrics excepted); past it a 503
    # server_overloaded with Retry-After. 0 turns the limit off.
    max_concurrent_requests: int = Field(default=1000, ge=0, le=1_000_000)
    # A provider stream that sends no chunk for this long is ended with an in-band error.
    stream_idle_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # Text of one stream kept for its trace; past it the client still gets everything, the trace a cut.
    max_stream_trace_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    # Rollout store and shared state: one Redis server, a Redis Cluster or a Sentinel-managed master
    redis_mode: RedisMode = "standalone"
    redis_url: SecretStr | None = None
    redis_host: str | None = None
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_username: str | None = Field(default=None, min_length=1)
    redis_password: SecretStr | None = None
    redis_db: int = Field(default=0, ge=0)
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = ()
    redis_sentinel_service: str | None = Field(default=None, min_length=1)
    redis_sentinel_username: str | None = Field(default=None, min_length=1)
    redis_sentinel_password: SecretStr | None = None
    redis_tls: bool = False
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    # Replicas that must confirm an insertion id before it is acknowledged (unset: 0, or 1 with Sentinel).
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    # How long each WAIT gives the replicas; below REDIS_TIMEOUT_S, so a slow replica reads as "not confirmed".
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=30_000)
    redis_key_prefix: str = Field(default="gw", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    redis_key_ttl_s: int = Field(default=86_400, ge=1)
    # Per round trip. Measured on the event loop's clock, so it must allow for a saturated loop:
    # at 0.5 s, a healthy Redis timed out under a full load of streams.
    redis_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # Without Redis: how often expired rollouts, logs and traces are dropped from process memory.
    memory_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)

    # Remote rollouts' log records (/logs, /status), kept beside the rollout with its TTL
    rollout_log_max_entry_bytes: int = Field(default=16_384, ge=512, le=1024 * 1024)
    rollout_log_max_entries: int = Field(default=1000, ge=1, le=100_000)

    # Secrets: a file (SECRETS_PATH) or a secret in AWS Secrets Manager, optionally re-read
    secrets_source: SecretsSourceName = "file"
    secrets_path: Path = DEFAULT_SECRETS_PATH
    secrets_aws_secret_id: str | None = Field(default=None, min_length=1, max_length=2048)
    secrets_refresh_s: float | None = Field(default=None, ge=1, le=86_400)
    # The standard AWS variable, which botocore itself does not read (only AWS_DEFAULT_REGION).
    aws_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")

    # Tracing
    langfuse_host: str = DEFAULT_LANGFUSE_HOST
    trace_name: str = Field(default="chat-completion", min_length=1, max_length=200)
    tracing_queue_size: int = Field(default=8192, ge=64)
    tracing_batch_delay_ms: int = Field(default=1000, ge=10)
    # A live post to Langfuse that takes longer is given up and its spans spooled (then replayed).
    tracing_export_timeout_ms: int = Field(default=2000, ge=100, le=60_000)
    trace_export_max_batch_bytes: int = Field(default=3 * 1024 * 1024, ge=64 * 1024)
    trace_spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    shutdown_flush_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Without Langfuse projects, traces go to the embedded store: in Redis when it is configured,
    # else in process, where this bounds what it holds (the oldest traces go first).
    embedded_traces_max_mb: int = Field(default=100, ge=1, le=65_536)

    # Reading traces back (/traces)
    traces_timeout_s: float = Field(default=60.0, gt=0, le=900)
    traces_poll_max_interval_s: float = Field(default=2.0, ge=0.1, le=60)
    langfuse_read_rps: float = Field(default=5.0, gt=0)
    langfuse_read_burst: int = Field(default=10, ge=1)
    prompt_cache_ttl_s: float = Field(default=60.0, gt=0)

    # Upstream calls
    gateway_config: Path | None = None
    request_timeout: float = Field(default=300.0, gt=0)
    upstream_max_retries: int = Field(default=0, ge=0, le=10)
    allowed_base_urls: Annotated[tuple[str, ...], NoDecode] = ()
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # Any path the gateway does not serve is forwarded here (a LiteLLM proxy server), untracked.
    litellm_proxy_url: str | None = None
    litellm_proxy_api_key: SecretStr | None = None

    # Loaded from the files above; only keyword arguments (tests, embedders) can set them directly.
    secrets: Annotated[SecretsFile, NotFromEnvironment] = Field(default_factory=SecretsFile, exclude=True)
    catalog: Annotated[ModelCatalog, NotFromEnvironment] = Field(
        default_factory=ModelCatalog.embedded_default, exclude=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment; no ``.env`` or secrets directory."""
        return init_settings, _EnvironmentVariables(settings_cls)

    @field_validator("allowed_base_urls", "redis_sentinels", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("litellm_proxy_url")
    @classmethod
    def _check_litellm_proxy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise ValueError("LITELLM_PROXY_URL must be an http(s) base URL without query or fragment")
        return value.strip().rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("langfuse_host")
    @classmethod
    def _check_langfuse_host(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("LANGFUSE_HOST must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        """Work out the Redis target once; refuse a combination that cannot be what was meant."""
        try:
            target = redis_target(self)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._redis_options = target
        if target is None:
            self._check_needs_no_redis()
        return self

    def _check_needs_no_redis(self) -> None:
        """Without Redis each process keeps its own rollout store, counters and budgets: refuse
        what only makes sense when several processes share one (and Redis options that point nowhere).

        Workers are separate processes: ``/traces`` served by one would silently miss the completions
        of the others, and each would count rate limits and spend the Langfuse read budget on its own.
        """
        if self.workers > 1:
            raise ConfigError(f"WORKERS > 1 needs Redis ({NO_REDIS_TARGET}): the workers must share one rollout store")
        orphans = sorted(
            name.upper()
            for name in self.model_fields_set
            if name.startswith("redis_")
            and name not in USED_WITHOUT_REDIS
            and getattr(self, name) not in (None, (), False)
        )
        if orphans:
            raise ConfigError(f"{', '.join(orphans)} set, but no Redis is configured ({NO_REDIS_TARGET})")

    @model_validator(mode="after")
    def _check_secrets_source(self) -> Settings:
        """Each source's variables belong to it alone: a variable of the other source is a
        forgotten ``SECRETS_SOURCE``, which would otherwise start the gateway without its keys."""
        if self.secrets_source == "aws-secretsmanager":
            if self.secrets_aws_secret_id is None:
                raise ConfigError("SECRETS_SOURCE=aws-secretsmanager needs SECRETS_AWS_SECRET_ID")
            if "secrets_path" in self.model_fields_set:
                raise ConfigError("SECRETS_PATH is set but SECRETS_SOURCE=aws-secretsmanager: set one of them")
        elif self.secrets_aws_secret_id is not None:
            raise ConfigError(
                "SECRETS_AWS_SECRET_ID is set but SECRETS_SOURCE is file: set SECRETS_SOURCE=aws-secretsmanager"
            )
        return self

    @model_validator(mode="after")
    def _load_files(self) -> Settings:
        """Read the secrets file and the model catalogue, unless they were given directly.

        A secret in AWS Secrets Manager is fetched by the application (``create_app``), which
        owns the adapters; its production checks run there, once it is loaded.
        """
        if "secrets" not in self.model_fields_set and self.secrets_source == "file":
            explicit = "secrets_path" in self.model_fields_set
            object.__setattr__(self, "secrets", load_secrets(self.secrets_path, explicit=explicit))
        if "catalog" not in self.model_fields_set:
            catalog_path = self.gateway_config
            if catalog_path is None and DEFAULT_GATEWAY_CONFIG.is_file():
                catalog_path = DEFAULT_GATEWAY_CONFIG
            if catalog_path is not None:
                object.__setattr__(self, "catalog", load_catalog(catalog_path))
        if self.environment == "production" and self.secrets_source == "file":
            problems = production_problems(self.secrets, self.catalog)
            if problems:
                raise ConfigError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def redis_enabled(self) -> bool:
        return self.redis_options is not None

    @property
    def redis_options(self) -> RedisOptions | None:
        """The validated Redis target, or None for the in-process default."""
        return self._redis_options

    @property
    def default_project_id(self) -> str | None:
        return self.secrets.default_project_id
