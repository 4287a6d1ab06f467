"""The AWS Secrets Manager source against moto's emulator, reached through the standard AWS environment."""

from __future__ import annotations

from pathlib import Path

import pytest

import proxy_core.serving
from proxy_core.adapters.aws_secrets import AwsSecretsManagerSource
from proxy_core.config_files import ConfigError, parse_secrets
from proxy_core.main import main
from proxy_core.retry import RetryableError
from tests.e2e.process import free_port
from tests.fakes.aws import REGION, MotoServer

SECRETS_YAML = """
langfuse_keys:
  p: {public_key: pk-lf-p, secret_key: sk-lf-p, host: "http://127.0.0.1:1"}
default_project_id: p
api_keys:
  - {name: team, key: gw-0123456789abcdef, projects: [p]}
"""
SECRETS_JSON = (
    '{"langfuse_keys": {"p": {"public_key": "pk-lf-p", "secret_key": "sk-lf-p", "host": "http://127.0.0.1:1"}},'
    ' "default_project_id": "p", "api_keys": [{"name": "team", "key": "gw-0123456789abcdef", "projects": ["p"]}]}'
)


@pytest.mark.parametrize("text", [SECRETS_YAML, SECRETS_JSON])
def test_the_secret_string_is_the_secrets_file(aws_env: MotoServer, text: str) -> None:
    name = aws_env.new_secret(text)
    loaded = AwsSecretsManagerSource(name, region=REGION).load()
    assert loaded == parse_secrets(SECRETS_YAML, "expected")
    assert loaded.api_keys[0].key.get_secret_value() == "gw-0123456789abcdef"


def test_the_current_version_is_read(aws_env: MotoServer) -> None:
    name = aws_env.new_secret(SECRETS_YAML)
    source = AwsSecretsManagerSource(name, region=REGION)
    aws_env.put(name, SECRETS_YAML.replace("sk-lf-p", "sk-lf-rotated"))
    assert source.load().langfuse_keys["p"].secret_key.get_secret_value() == "sk-lf-rotated"


def test_a_missing_secret_is_named(aws_env: MotoServer) -> None:
    with pytest.raises(ConfigError) as info:
        AwsSecretsManagerSource("gateway/no-such-secret", region=REGION).load()
    assert str(info.value) == (f"AWS Secrets Manager secret 'gateway/no-such-secret' does not exist (region {REGION})")


def test_a_malformed_secret_is_named_and_not_quoted(aws_env: MotoServer) -> None:
    name = aws_env.new_secret("langfuse_keys: {p: {public_key: pk, secret_key: sk-never-printed")
    with pytest.raises(ConfigError) as info:
        AwsSecretsManagerSource(name, region=REGION).load()
    message = str(info.value)
    assert message.startswith(f"AWS Secrets Manager secret {name!r} is not valid YAML or JSON: ")
    assert "sk-never-printed" not in message


def test_a_secret_of_the_wrong_shape_is_named(aws_env: MotoServer) -> None:
    name = aws_env.new_secret('{"langfuse_keys": {"p": {"public_key": "pk"}}}')
    with pytest.raises(ConfigError) as info:
        AwsSecretsManagerSource(name, region=REGION).load()
    assert str(info.value) == f"AWS Secrets Manager secret {name!r}: langfuse_keys.p.secret_key: Field required"


def test_a_binary_secret_cannot_hold_the_secrets(aws_env: MotoServer) -> None:
    name = aws_env.new_secret(SECRETS_JSON.encode())
    with pytest.raises(ConfigError, match="has no SecretString"):
        AwsSecretsManagerSource(name, region=REGION).load()


def test_an_unreachable_endpoint_is_worth_retrying(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RetryableError, match="could not be reached"):
        AwsSecretsManagerSource("gateway/anything", region=REGION).load()


def test_without_a_region_the_secret_cannot_be_found(aws_env: MotoServer) -> None:
    with pytest.raises(ConfigError) as info:
        AwsSecretsManagerSource("gateway/anything").load()
    assert str(info.value) == (
        "AWS Secrets Manager secret 'gateway/anything': no AWS region is configured (set AWS_REGION)"
    )


def test_a_malformed_secret_stops_start_up_with_one_line_naming_it(
    aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``main`` as ``python -m proxy_core`` runs it, in process; it must stop before serving."""

    def serve(options: object) -> int:
        raise AssertionError("the gateway started serving")

    monkeypatch.setattr(proxy_core.serving, "serve", serve)
    monkeypatch.chdir(tmp_path)
    name = aws_env.new_secret('{"api_keys": [{"key": "gw-too-short", "projects": ["*"]}]}')
    monkeypatch.setenv("SECRETS_SOURCE", "aws-secretsmanager")
    monkeypatch.setenv("SECRETS_AWS_SECRET_ID", name)
    monkeypatch.setenv("AWS_REGION", REGION)
    assert main() == 2
    assert capsys.readouterr().err.splitlines() == [
        f"proxy_core: invalid configuration: AWS Secrets Manager secret {name!r}: "
        "api_keys.0.key: Value error, gateway API keys must be at least 16 characters"
    ]
