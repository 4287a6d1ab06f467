"""Settings: environment names, files, and one clear message for a bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

import proxy_core.main
from proxy_core.config_files import DEFAULT_WILDCARD_PROVIDERS, ConfigError, ModelCatalog, load_catalog
from proxy_core.settings import NotFromEnvironment, Settings

ROOT = Path(__file__).resolve().parents[2]

SECRETS = """
langfuse_keys:
  proj-a: {public_key: pk-a, secret_key: sk-a}
  proj-b: {public_key: pk-b, secret_key: sk-b, host: "http://127.0.0.1:1/"}
default_project_id: proj-a
api_keys:
  - {name: team, key: gw-0123456789abcdef, projects: [proj-a]}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("REDIS_", "SECRETS_", "LANGFUSE_", "ALLOWED_", "GATEWAY_", "PORT", "LOG_LEVEL", "AWS_")):
            monkeypatch.delenv(name)


def test_defaults_need_no_files() -> None:
    settings = Settings()
    assert settings.port == 4000
    assert not settings.redis_enabled
    assert settings.secrets.langfuse_keys == {}
    assert settings.catalog == ModelCatalog.embedded_default()
    assert settings.allowed_base_urls == ()


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SECRETS)
    monkeypatch.setenv("PORT", "4100")
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("SECRETS_PATH", str(tmp_path / "s.yaml"))
    monkeypatch.setenv("ALLOWED_BASE_URLS", "http://127.0.0.1:9000/v1, https://x.example.com")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("REQUEST_TIMEOUT", "12.5")
    settings = Settings()
    assert settings.port == 4100
    assert settings.redis_enabled
    assert settings.allowed_base_urls == ("http://127.0.0.1:9000/v1", "https://x.example.com")
    assert settings.log_level == "DEBUG"
    assert settings.request_timeout == 12.5
    assert settings.default_project_id == "proj-a"
    assert settings.secrets.langfuse_keys["proj-b"].host == "http://127.0.0.1:1"
    assert "sk-a" not in repr(settings)
    assert "gw-0123456789abcdef" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("langfuse_keys: {p: {public_key: pk}}", "secret_key"),
        ("langfuse_keys: {}\nunknown_key: 1", "unknown_key"),
        ("langfuse_keys: {p: {public_key: pk, secret_key: sk}}\ndefault_project_id: q", "default_project_id"),
        ("langfuse_keys: {'a,b': {public_key: pk, secret_key: sk}}", "a,b"),
        ("default_project_id: 'a b'", "whitespace"),
        ("api_keys: [{key: short, projects: [p]}]", "16 characters"),
        ("{ not yaml", "not valid YAML"),
    ],
)
def test_bad_secrets_file_names_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml") as info:
        Settings(secrets_path=path)
    assert fragment in str(info.value)


def test_without_langfuse_projects_the_default_project_may_be_any_id(tmp_path: Path) -> None:
    """The embedded trace store's default project: a secrets file with keys, no Langfuse."""
    path = tmp_path / "secrets.yaml"
    path.write_text("default_project_id: team-a\napi_keys: [{key: gw-0123456789abcdef, projects: [team-a]}]\n")
    assert Settings(secrets_path=path).default_project_id == "team-a"


def test_missing_explicit_secrets_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings(secrets_path=tmp_path / "nope.yaml")


def test_catalog_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, api_key: os.environ/MY_KEY}\n"
    )
    with pytest.raises(ConfigError, match="MY_KEY"):
        Settings(gateway_config=path)
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    settings = Settings(gateway_config=path)
    assert settings.catalog.model_list[0].litellm_params["api_key"] == "sk-from-env"


@pytest.mark.parametrize(
    ("secrets", "catalog"),
    [
        ("/tmp/x", "/tmp/y"),  # not JSON: used to stop start-up with a SettingsError traceback
        ('{"default_project_id": null}', '{"model_list": []}'),  # used to replace the files' contents
    ],
)
def test_the_files_contents_cannot_be_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secrets: str, catalog: str
) -> None:
    (tmp_path / "s.yaml").write_text(SECRETS)
    monkeypatch.setenv("SECRETS_PATH", str(tmp_path / "s.yaml"))
    monkeypatch.setenv("SECRETS", secrets)
    monkeypatch.setenv("CATALOG", catalog)
    settings = Settings()
    assert settings.default_project_id == "proj-a"
    assert [key.name for key in settings.secrets.api_keys] == ["team"]  # authentication stays on
    assert settings.catalog == ModelCatalog.embedded_default()


def test_only_the_files_contents_are_hidden_from_the_environment() -> None:
    """Every other field is a documented variable; a new field loaded from a file needs the marker."""
    hidden = {name for name, field in Settings.model_fields.items() if NotFromEnvironment in field.metadata}
    assert hidden == {"secrets", "catalog"}


class _WithStructuredValue(Settings):
    """A field pydantic-settings decodes from JSON, as ``Settings`` no longer has one."""

    limits: dict[str, int] = Field(default_factory=dict)


def test_an_unparsable_structured_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITS", '{"a": ')
    with pytest.raises(ConfigError, match=r"^LIMITS: cannot be parsed as JSON \(Expecting value"):
        _WithStructuredValue()
    monkeypatch.setenv("LIMITS", '{"a": 1}')
    assert _WithStructuredValue().limits == {"a": 1}


def test_an_unparsable_structured_value_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(proxy_core.main, "Settings", _WithStructuredValue)
    monkeypatch.setenv("LIMITS", "[1,")
    assert proxy_core.main.main() == 2
    assert capsys.readouterr().err.splitlines() == [
        "proxy_core: invalid configuration: "
        "LIMITS: cannot be parsed as JSON (Expecting value: line 1 column 4 (char 3))"
    ]


def test_invalid_values_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        Settings(port=0)
    with pytest.raises(ValidationError):
        Settings(langfuse_host="cloud.langfuse.com")


def test_several_workers_need_the_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"WORKERS > 1 needs Redis \(REDIS_URL, REDIS_HOST or REDIS_SENTINELS\)"):
        Settings(workers=2)
    assert Settings(workers=2, redis_host="127.0.0.1").workers == 2
    assert Settings(workers=2, redis_url="redis://127.0.0.1:6379/0").workers == 2


def test_cli_reports_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_"))}
    env.update(PORT="not-a-port", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "proxy_core"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "PORT" in lines[0]


def test_cli_reports_a_yaml_error_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("langfuse_keys: {p: {public_key: pk\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS"))}
    env.update(SECRETS_PATH=str(tmp_path / "bad.yaml"), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "proxy_core"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"proxy_core: invalid configuration: {tmp_path / 'bad.yaml'} is not valid YAML: ")


def test_production_refuses_unsafe_configurations(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("langfuse_keys:\n  p: {public_key: pk-lf-..., secret_key: sk-lf-...}\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "projects:\n  p: {pii: {mode: 'off', required: true}}\n"
        "model_list:\n  - {model_name: '*', litellm_params: {model: '*'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        Settings(environment="production", secrets_path=unsafe, gateway_config=config)
    message = str(info.value)
    assert message.startswith("refusing to start in production")
    assert "no gateway API keys" in message
    assert "placeholders" in message
    assert "requires PII sanitization" in message
    assert 'the model catalogue\'s "*" entry has no providers list' in message
    assert 'add providers: [openai, anthropic, …] to the "*" entry' in message

    safe = tmp_path / "safe.yaml"
    safe.write_text(
        "langfuse_keys:\n  p: {public_key: pk-lf-7f3a9, secret_key: sk-lf-91c2e}\n"
        "api_keys:\n  - {key: gw-4c1f0b8e2d7a9c3f, projects: [p]}\n"
    )
    assert Settings(environment="production", secrets_path=safe).environment == "production"
    listed = tmp_path / "listed.yaml"
    listed.write_text("model_list:\n  - {model_name: '*', litellm_params: {model: '*'}, providers: [openai]}\n")
    assert Settings(environment="production", secrets_path=safe, gateway_config=listed).catalog.wildcard
    with pytest.raises(ConfigError, match="refusing to start in production: the model catalogue's"):
        Settings(environment="production", secrets_path=safe, gateway_config=config)
    Settings(environment="staging", secrets_path=unsafe, gateway_config=config)  # only production refuses


def test_secrets_from_aws_secrets_manager_are_configured_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_SOURCE", "aws-secretsmanager")
    monkeypatch.setenv("SECRETS_AWS_SECRET_ID", "gateway/prod")
    monkeypatch.setenv("SECRETS_REFRESH_S", "60")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings()
    assert (settings.secrets_source, settings.secrets_aws_secret_id) == ("aws-secretsmanager", "gateway/prod")
    assert (settings.secrets_refresh_s, settings.aws_region) == (60, "eu-west-1")
    assert settings.secrets.langfuse_keys == {}  # fetched by the application, not by the settings


def test_the_default_source_is_the_file_and_no_refresh() -> None:
    settings = Settings()
    assert (settings.secrets_source, settings.secrets_refresh_s, settings.secrets_aws_secret_id) == ("file", None, None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"secrets_source": "aws-secretsmanager"}, "SECRETS_SOURCE=aws-secretsmanager needs SECRETS_AWS_SECRET_ID"),
        ({"secrets_aws_secret_id": "gateway/prod"}, "SECRETS_AWS_SECRET_ID is set but SECRETS_SOURCE is file"),
        (
            {"secrets_source": "aws-secretsmanager", "secrets_aws_secret_id": "x", "secrets_path": Path("s.yaml")},
            "SECRETS_PATH is set but SECRETS_SOURCE=aws-secretsmanager",
        ),
    ],
)
def test_one_source_names_the_secrets(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**values)


@pytest.mark.parametrize(
    "values",
    [
        {"secrets_source": "vault"},
        {"secrets_refresh_s": 0},
        {"secrets_source": "aws-secretsmanager", "secrets_aws_secret_id": ""},
        {"aws_region": "EU West"},
    ],
)
def test_bad_secrets_source_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)


def test_the_shipped_catalogue_restricts_its_wildcard_like_the_embedded_default() -> None:
    shipped = load_catalog(ROOT / "config_no_cache.yaml")
    assert shipped.wildcard is not None
    assert shipped.wildcard.providers == DEFAULT_WILDCARD_PROVIDERS
    assert ModelCatalog.embedded_default().wildcard == shipped.wildcard
    assert not {"bedrock", "sagemaker", "vertex_ai", "azure", "ollama", "ollama_chat", "lm_studio", "vllm"} & set(
        DEFAULT_WILDCARD_PROVIDERS
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{model_name: demo, litellm_params: {model: openai/demo}, providers: [openai]}", 'the "\\*" entry only'),
        ("{model_name: '*', litellm_params: {model: '*'}, providers: []}", "lower case"),
        ("{model_name: '*', litellm_params: {model: '*'}, providers: [OpenAI]}", "lower case"),
    ],
)
def test_a_misplaced_or_malformed_providers_list_is_a_config_error(tmp_path: Path, entry: str, problem: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"model_list:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=problem):
        load_catalog(config)
