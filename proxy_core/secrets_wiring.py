"""The secrets in force, as the composition root builds them: from which source, into what.

Part of the composition root (``app.py``): it picks the secrets' source adapter (a file, or AWS
Secrets Manager) and turns each version of the secrets into the snapshot the services read — the
project table, the authentication provider — refusing a version the gateway must not run with.
"""

from __future__ import annotations

from functools import partial

from proxy_core.adapters.aws_secrets import AwsSecretsManagerSource
from proxy_core.adapters.embedded_traces import embedded_target
from proxy_core.config_files import ConfigError, SecretsFile, SecretsFileSource
from proxy_core.production import production_problems
from proxy_core.services.auth import ALL_PROJECTS, AuthProvider, NoAuth, StaticApiKeys
from proxy_core.services.projects import UNCONFIGURED_PROJECT, ProjectTable
from proxy_core.services.secrets import CurrentSecrets, SecretsSnapshot, SecretsSource, load_at_start
from proxy_core.settings import Settings


def build_auth(secrets: SecretsFile) -> AuthProvider:
    keys = secrets.api_keys
    if not keys:
        return NoAuth()
    return StaticApiKeys(
        (key.name or f"key-{index}", key.key.get_secret_value(), key.projects) for index, key in enumerate(keys)
    )


# How long start-up keeps trying a secret manager it cannot reach before it gives up (exit 2).
SECRETS_START_WITHIN_S = 15.0


def build_secrets_source(settings: Settings) -> SecretsSource | None:
    """Where the secrets are (re-)read from; None when they were handed over directly (tests)."""
    if settings.secrets_source == "aws-secretsmanager":
        assert settings.secrets_aws_secret_id is not None  # the settings require it
        return AwsSecretsManagerSource(settings.secrets_aws_secret_id, region=settings.aws_region)
    if "secrets" in settings.model_fields_set:
        return None
    return SecretsFileSource(settings.secrets_path)


def secrets_snapshot(settings: Settings, auth: AuthProvider | None, secrets: SecretsFile) -> SecretsSnapshot:
    """What the gateway builds from one version of the secrets (at start-up and on each refresh)."""
    if settings.environment == "production":
        problems = production_problems(secrets, settings.catalog)
        if problems:
            raise ConfigError("refusing to run in production: " + "; ".join(problems))
    projects = project_table(settings, secrets)
    for group in projects.shared_destinations():
        # Spans are redacted at export by their destination's project: projects sharing one
        # Langfuse project must share their PII rules, or one's spans would leave under the
        # other's rules (an SSN in the clear).
        if len({settings.catalog.pii_for(project_id) for project_id in group}) > 1:
            raise ConfigError(
                f"projects {', '.join(sorted(group))} send traces to the same Langfuse project "
                "but have different PII rules; give them the same rules or their own keys"
            )
    return SecretsSnapshot(
        secrets=secrets,
        projects=projects,
        auth=auth or build_auth(secrets),
    )


def project_table(settings: Settings, secrets: SecretsFile) -> ProjectTable:
    """The secrets' Langfuse projects; without any, projects trace to the embedded store.

    The embedded store accepts the projects the configuration names — the gateway configuration's
    ``projects:``, the gateway API keys' projects, the default project — and calls that name no
    project (a namespace of their own). Any other id is a 404, as with Langfuse, so that a key
    bound to some projects reaches exactly those, and a typo is an error, not a new project.
    """
    if secrets.langfuse_keys:
        return ProjectTable.of(secrets.langfuse_keys, secrets.default_project_id, settings.langfuse_host)
    named = {*settings.catalog.projects, *(p for key in secrets.api_keys for p in key.projects if p != ALL_PROJECTS)}
    if secrets.default_project_id is not None:
        named.add(secrets.default_project_id)
    targets = {project_id: embedded_target(project_id) for project_id in sorted(named | {UNCONFIGURED_PROJECT})}
    return ProjectTable(targets, secrets.default_project_id)


def current_secrets(settings: Settings, source: SecretsSource | None, auth: AuthProvider | None) -> CurrentSecrets:
    """The secrets in force: the file the settings loaded, or the secret manager's, fetched now."""
    initial = settings.secrets
    if settings.secrets_source != "file" and source is not None:
        initial = load_at_start(source, SECRETS_START_WITHIN_S)
    return CurrentSecrets(partial(secrets_snapshot, settings, auth), initial)
