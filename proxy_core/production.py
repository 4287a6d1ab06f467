"""What a production deployment must not be started with.

Each check names a mistake that would silently weaken the gateway's promises: anyone could
spend the provider keys, a template credential was left in place, a project that handles
protected data would send it unredacted, or any client could pick a provider that signs with the
server's cloud identity or calls a server on its localhost (a ``"*"`` entry without ``providers``).
"""

from __future__ import annotations

from proxy_core.config_files import ModelCatalog, SecretsFile

PLACEHOLDER_MARKERS = ("...", "change-me", "changeme", "placeholder", "example", "xxx")


def _looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS) or lowered in {"pk-lf-", "sk-lf-", ""}


def production_problems(secrets: SecretsFile, catalog: ModelCatalog) -> list[str]:
    """Every reason the configuration is not fit for production (empty when it is)."""
    problems: list[str] = []
    if not secrets.api_keys:
        problems.append("no gateway API keys are configured (api_keys in the secrets file)")
    for key in secrets.api_keys:
        if _looks_like_placeholder(key.key.get_secret_value()):
            problems.append(f"gateway API key {key.name or '(unnamed)'!r} is a placeholder")
    for project_id, project in secrets.langfuse_keys.items():
        if _looks_like_placeholder(project.public_key) or _looks_like_placeholder(
            project.secret_key.get_secret_value()
        ):
            problems.append(f"the Langfuse keys of project {project_id!r} are placeholders")
    if catalog.has_unrestricted_wildcard:
        problems.append(
            'the model catalogue\'s "*" entry has no providers list, so any client may use any LiteLLM '
            "provider, including ones that sign with this server's cloud credentials (bedrock, vertex_ai …) "
            'or call its localhost (ollama …): add providers: [openai, anthropic, …] to the "*" entry'
        )
    for project_id in set(secrets.langfuse_keys) | set(catalog.projects):
        pii = catalog.pii_for(project_id)
        if pii.required and pii.mode == "off":
            problems.append(f"project {project_id!r} requires PII sanitization but it is switched off")
    return problems
