"""The secrets in force: one snapshot replaced whole, refreshes that fail keep the last good one."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import pytest

from proxy_core.config_files import ConfigError, ModelCatalog, SecretsFile, SecretsFileSource, parse_secrets
from proxy_core.errors import AuthenticationError, NotFoundError
from proxy_core.retry import RetryableError
from proxy_core.secrets_wiring import secrets_snapshot
from proxy_core.services.secrets import CurrentSecrets, load_at_start, refresh_once
from proxy_core.settings import Settings

KEY_1 = "gw-first-key-0123456789"
KEY_2 = "gw-second-key-0123456789"
VERSION_1 = f"""
langfuse_keys:
  p: {{public_key: pk-lf-1, secret_key: sk-lf-1}}
default_project_id: p
api_keys:
  - {{name: one, key: {KEY_1}, projects: [p]}}
"""
VERSION_2 = f"""
{{"langfuse_keys": {{"p": {{"public_key": "pk-lf-2", "secret_key": "sk-lf-2"}},
                    "q": {{"public_key": "pk-lf-q", "secret_key": "sk-lf-q", "host": "http://127.0.0.1:9"}}}},
 "default_project_id": "p",
 "api_keys": [{{"name": "two", "key": "{KEY_2}", "projects": ["*"]}}]}}
"""


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def current(text: str = VERSION_1, **values: object) -> CurrentSecrets:
    secrets = parse_secrets(text, "test")
    settings = Settings(
        **{"secrets": secrets, "catalog": ModelCatalog(), "langfuse_host": "http://lf.invalid", **values}
    )
    return CurrentSecrets(partial(secrets_snapshot, settings, None), secrets)


class Source:
    """A source whose next answer each test sets (the real ones are tested against moto)."""

    name = "the test's source"

    def __init__(self, *answers: SecretsFile | Exception) -> None:
        self.answers = list(answers)
        self.loads = 0

    def load(self) -> SecretsFile:
        self.loads += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_views_follow_the_snapshot_in_force() -> None:
    secrets = current()
    projects, auth = secrets.projects(), secrets.auth()
    assert (await auth.authenticate(bearer(KEY_1))).name == "one"
    assert projects.resolve(None).tracing is not None
    assert projects.resolve(None).tracing.public_key == "pk-lf-1"  # type: ignore[union-attr]
    assert projects.project_at("http://lf.invalid", "pk-lf-1") == "p"

    assert secrets.replace(parse_secrets(VERSION_2, "test")) is True
    with pytest.raises(AuthenticationError):
        await auth.authenticate(bearer(KEY_1))
    assert (await auth.authenticate(bearer(KEY_2))).name == "two"
    assert projects.resolve("p").tracing.secret_key == "sk-lf-2"  # type: ignore[union-attr]
    assert projects.resolve("q").tracing.host == "http://127.0.0.1:9"  # type: ignore[union-attr]
    assert projects.project_at("http://127.0.0.1:9", "pk-lf-q") == "q"
    assert projects.project_at("http://lf.invalid", "pk-lf-1") is None, "a rotated key no longer names p"
    assert not auth.forwards_client_key


def test_trace_export_finds_the_projects_a_refresh_brings() -> None:
    """Spans are routed and redacted by their destination's project: one a refresh adds is known."""
    secrets = current()
    projects = secrets.projects()
    assert projects.project_at("http://127.0.0.1:9", "pk-lf-q") is None
    secrets.replace(parse_secrets(VERSION_2, "test"))
    assert projects.project_at("http://127.0.0.1:9/", "pk-lf-q") == "q"


def test_projects_sharing_a_langfuse_project_must_share_their_pii_rules() -> None:
    shared = f"""
langfuse_keys:
  a: {{public_key: pk-shared, secret_key: sk-shared}}
  b: {{public_key: pk-shared, secret_key: sk-shared}}
api_keys:
  - {{name: one, key: {KEY_1}, projects: [a, b]}}
"""
    catalog = ModelCatalog.model_validate({"projects": {"b": {"pii": {"mode": "trace_only"}}}})
    with pytest.raises(ConfigError, match="projects a, b send traces to the same Langfuse project"):
        current(shared, catalog=catalog)
    same_rules = ModelCatalog.model_validate({"pii_defaults": {"mode": "trace_only"}})
    assert current(shared, catalog=same_rules).projects().project_at("http://lf.invalid", "pk-shared") == "a"
    secrets = current(catalog=catalog)
    with pytest.raises(ConfigError, match="different PII rules"):
        secrets.replace(parse_secrets(shared, "test"))
    assert secrets.projects().project_at("http://lf.invalid", "pk-lf-1") == "p", "a refused refresh changes nothing"


async def test_equal_secrets_rebuild_nothing() -> None:
    secrets = current()
    before = secrets.snapshot
    assert secrets.replace(parse_secrets(VERSION_1, "again")) is False
    assert secrets.snapshot is before


async def test_a_refresh_never_switches_authentication_off() -> None:
    secrets = current()
    before = secrets.snapshot
    with pytest.raises(ConfigError, match="never switches gateway authentication off"):
        secrets.replace(parse_secrets("langfuse_keys: {p: {public_key: pk-lf-3, secret_key: sk-lf-3}}", "test"))
    assert secrets.snapshot is before


async def test_a_project_removed_by_a_refresh_is_gone_at_once() -> None:
    secrets = current(VERSION_2)
    projects = secrets.projects()
    projects.resolve("q")
    secrets.replace(parse_secrets(VERSION_1, "test"))
    with pytest.raises(NotFoundError):
        projects.resolve("q")


async def test_production_refuses_a_refreshed_secret_it_would_refuse_at_start() -> None:
    secrets = current(environment="production")
    placeholder = VERSION_2.replace("sk-lf-2", "sk-lf-...")
    with pytest.raises(ConfigError, match="refusing to run in production: the Langfuse keys of project 'p'"):
        secrets.replace(parse_secrets(placeholder, "test"))
    assert secrets.snapshot.secrets.api_keys[0].name == "one"


async def test_a_failed_refresh_keeps_the_last_good_secrets_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    secrets = current()
    auth = secrets.auth()
    source = Source(ConfigError("the test's source: langfuse_keys.p.secret_key: Field required"))
    with caplog.at_level(logging.WARNING, logger="proxy_core.secrets"):
        assert await refresh_once(secrets, source) is False
    assert (await auth.authenticate(bearer(KEY_1))).name == "one"
    assert [record.getMessage() for record in caplog.records] == [
        "refreshing the secrets from the test's source failed (the test's source: langfuse_keys.p.secret_key: "
        "Field required); the last good secrets stay in force"
    ]

    source.answers = [RetryableError("AWS Secrets Manager could not be reached (EndpointConnectionError)")]
    assert await refresh_once(secrets, source) is False
    assert (await auth.authenticate(bearer(KEY_1))).name == "one"

    source.answers = [parse_secrets(VERSION_2, "test")]
    with caplog.at_level(logging.INFO, logger="proxy_core.secrets"):
        assert await refresh_once(secrets, source) is True
    assert caplog.records[-1].getMessage() == (
        "secrets refreshed from the test's source: 2 Langfuse project(s), 1 gateway API key(s)"
    )
    assert "sk-lf-2" not in caplog.text
    assert KEY_2 not in caplog.text


async def test_the_secrets_file_is_read_again_and_a_missing_one_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(VERSION_1)
    secrets = current()
    auth = secrets.auth()
    source = SecretsFileSource(path)
    assert await refresh_once(secrets, source) is False  # unchanged
    path.write_text(VERSION_2)
    assert await refresh_once(secrets, source) is True
    assert (await auth.authenticate(bearer(KEY_2))).name == "two"
    path.unlink()
    assert await refresh_once(secrets, source) is False
    assert (await auth.authenticate(bearer(KEY_2))).name == "two"


def test_start_up_tries_an_unreachable_source_again() -> None:
    good = parse_secrets(VERSION_1, "test")
    source = Source(RetryableError("unreachable"), RetryableError("unreachable"), good)
    assert load_at_start(source, within_s=30) == good
    assert source.loads == 3


def test_start_up_gives_up_on_an_unreachable_source_with_a_config_error() -> None:
    source = Source(RetryableError("AWS Secrets Manager could not be reached (EndpointConnectionError)"))
    with pytest.raises(ConfigError) as info:
        load_at_start(source, within_s=0.3)
    assert str(info.value) == ("the test's source: AWS Secrets Manager could not be reached (EndpointConnectionError)")
    assert source.loads >= 2


def test_a_missing_or_malformed_secret_at_start_up_is_not_retried() -> None:
    source = Source(ConfigError("AWS Secrets Manager secret 'x' does not exist (region eu-west-1)"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_at_start(source, within_s=30)
    assert source.loads == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'langfuse_keys': {p: {public_key: pk, secret_key: 'sk-very-secret\n", "is not valid YAML or JSON: "),
        ('{"langfuse_keys": {"p": {"public_key": "pk", "secret_key": "sk-very-secret"}', "is not valid YAML or JSON: "),
        ("", "is not a mapping"),
        ('["sk-very-secret"]', "is not a mapping"),
        ("langfuse_keys: {p: {public_key: pk}}", "the secret: langfuse_keys.p.secret_key: Field required"),
        ("api_keys: [{key: sk-very-secret, projects: [p]}]", "gateway API keys must be at least 16 characters"),
    ],
)
def test_a_malformed_secret_is_named_and_never_quoted(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secrets(text, "the secret")
    assert str(info.value).startswith("the secret")
    assert message in str(info.value)
    assert "sk-very-secret" not in str(info.value)


def test_yaml_and_json_secrets_are_alike() -> None:
    as_json = parse_secrets('{"langfuse_keys": {"p": {"public_key": "pk", "secret_key": "sk"}}}', "json")
    assert as_json == parse_secrets("langfuse_keys:\n  p: {public_key: pk, secret_key: sk}\n", "yaml")
