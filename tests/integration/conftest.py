"""A real gateway (uvicorn, in a thread) in front of the fake provider and the Langfuse emulator."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest

from proxy_core.app import create_app
from proxy_core.config_files import ApiKey, LangfuseProject, ModelCatalog, SecretsFile
from proxy_core.services.auth import AuthProvider
from proxy_core.settings import Settings
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app

if TYPE_CHECKING:
    from tests.fakes.aws import MotoServer

PROJECTS = {
    "proj-a": ("pk-lf-a", "sk-lf-a"),
    "proj-b": ("pk-lf-b", "sk-lf-b"),
    "proj-c": ("pk-lf-c", "sk-lf-c"),
}
SERVER_PROVIDER_KEY = "sk-server-side-provider-key"
ROLLOUT_PATH = "rollout_id/{r}/invocation_id/inv-1/experiment_id/exp-1/run_id/run-1/row_id/row-1"


def rollout_path(rollout_id: str) -> str:
    return ROLLOUT_PATH.format(r=rollout_id)


def encode_url(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).decode()


@pytest.fixture(scope="session")
def upstream() -> Iterator[tuple[ServerThread, UpstreamState]]:
    state = UpstreamState()
    with ServerThread(create_upstream_app(state)) as server:
        yield server, state


@pytest.fixture(scope="session")
def langfuse_server() -> Iterator[tuple[ServerThread, LangfuseState]]:
    state = LangfuseState(PROJECTS)
    with ServerThread(create_langfuse_app(state=state)) as server:
        yield server, state


@pytest.fixture
def upstream_state(upstream: tuple[ServerThread, UpstreamState]) -> UpstreamState:
    upstream[1].reset()
    return upstream[1]


@pytest.fixture
def langfuse(langfuse_server: tuple[ServerThread, LangfuseState]) -> LangfuseState:
    langfuse_server[1].reset()
    return langfuse_server[1]


def catalog_for(upstream_url: str, *, wildcard: bool | tuple[str, ...] = True) -> ModelCatalog:
    """The test catalogue; ``wildcard``: a ``"*"`` entry (a tuple: with that providers list)."""
    models: list[dict[str, Any]] = [
        {"model_name": "fake", "litellm_params": {"model": "openai/fake-model", "api_base": f"{upstream_url}/v1"}},
        {
            "model_name": "fake-keyed",
            "litellm_params": {
                "model": "openai/fake-model",
                "api_base": f"{upstream_url}/v1",
                "api_key": SERVER_PROVIDER_KEY,
            },
        },
        {"model_name": "demo", "litellm_params": {"model": "openai/demo", "mock_response": "hello from demo"}},
        # A model LiteLLM knows (and prices): it streams Responses natively rather than faking the stream.
        {
            "model_name": "fake-priced",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{upstream_url}/v1"},
        },
    ]
    if wildcard is True:
        models.append({"model_name": "*", "litellm_params": {"model": "*"}})
    elif wildcard:
        models.append({"model_name": "*", "litellm_params": {"model": "*"}, "providers": list(wildcard)})
    return ModelCatalog.model_validate({"model_list": models})


@dataclass
class Gateway:
    server: ServerThread
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, path: str = "", api_key: str = "sk-client", **kwargs: Any) -> openai.OpenAI:
        base = f"{self.url}/{path}".rstrip("/")
        return openai.OpenAI(base_url=base, api_key=api_key, max_retries=0, timeout=30, **kwargs)


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory(
    upstream: tuple[ServerThread, UpstreamState],
    langfuse_server: tuple[ServerThread, LangfuseState],
    redis_url: str,
    key_prefix: str,
) -> Iterator[GatewayFactory]:
    """Start gateways with the test projects, catalogue and a per-test Redis prefix."""
    started: list[ServerThread] = []

    def start(
        *,
        default_project: str | None = "proj-a",
        api_keys: tuple[ApiKey, ...] = (),
        auth: AuthProvider | None = None,
        wildcard: bool | tuple[str, ...] = True,
        **overrides: Any,
    ) -> Gateway:
        secrets = SecretsFile(
            langfuse_keys={
                project_id: LangfuseProject(public_key=pk, secret_key=sk, host=langfuse_server[0].url)  # type: ignore[arg-type]
                for project_id, (pk, sk) in PROJECTS.items()
            },
            default_project_id=default_project,
            api_keys=api_keys,
        )
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "redis_key_prefix": key_prefix,
            "secrets": secrets,
            "catalog": catalog_for(upstream[0].url, wildcard=wildcard),
            "tracing_batch_delay_ms": 50,
            "allowed_base_urls": (f"{upstream[0].url}/v1",),
        }
        values.update(overrides)
        settings = Settings(**values)
        server = ServerThread(create_app(settings, auth=auth), loop="asyncio").start()
        started.append(server)
        return Gateway(server, settings)

    yield start
    for server in started:
        server.stop()


AnthropicFactory = Callable[..., anthropic.Anthropic]


@pytest.fixture
def anthropic_clients() -> Iterator[AnthropicFactory]:
    """``anthropic.Anthropic(**kwargs)`` (no retries), each closed after the test: its HTTP
    client does not close its sockets when it is collected."""
    made: list[anthropic.Anthropic] = []

    def make(**kwargs: Any) -> anthropic.Anthropic:
        client = anthropic.Anthropic(**{"max_retries": 0, "timeout": 30, **kwargs})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    return gateway_factory()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """The emulator's AWS environment, and none of this machine's AWS configuration."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env().items():
        if name != "AWS_REGION":  # boto3 does not read it: the settings pass it on (``region``)
            monkeypatch.setenv(name, value)
    return moto_server
