"""The start-up banner says where the gateway is and where traces and rollouts go, with no secret."""

from __future__ import annotations

from proxy_core.banner import banner, public_url
from proxy_core.config_files import LangfuseProject, ModelCatalog, SecretsFile
from proxy_core.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(**{"secrets": SecretsFile(), "catalog": ModelCatalog(), **values})  # type: ignore[arg-type]


def test_a_fresh_clone_traces_to_the_embedded_store_in_process() -> None:
    assert banner(settings()) == (
        "proxy-core is ready on http://localhost:4000\n"
        "  traces:   the embedded trace store, in this process (no Langfuse project configured); "
        "read back with GET http://localhost:4000/traces?tags=rollout_id:<id>\n"
        "  rollouts: in this process (one process only)\n"
        "  API:      http://localhost:4000/docs"
    )


def test_redis_is_named_without_its_password_and_langfuse_by_host() -> None:
    project = LangfuseProject(public_key="pk-lf-1", secret_key="sk-lf-secret", host="https://lf.example.org")  # type: ignore[arg-type]
    text = banner(
        settings(
            redis_url="redis://:hunter2-password@redis.internal:6380/3",
            redis_key_prefix="team",
            workers=2,
            secrets=SecretsFile(langfuse_keys={"p1": project, "p2": project}),
        )
    )
    assert "hunter2" not in text
    assert "sk-lf-secret" not in text
    assert text.startswith("proxy-core is ready on http://localhost:4000, 2 workers\n")
    assert "  traces:   Langfuse at https://lf.example.org (2 projects);" in text
    assert "  rollouts: Redis at redis.internal:6380/3, keys under 'team'\n" in text
    embedded = banner(settings(redis_host="10.0.0.5", redis_password="pw-secret"))
    assert "the embedded trace store, in Redis at 10.0.0.5:6379/0" in embedded
    assert "pw-secret" not in embedded


def test_the_address_given_is_one_a_person_can_open() -> None:
    assert public_url(settings(host="127.0.0.1", port=8080)) == "http://127.0.0.1:8080"
    assert public_url(settings(host="::")) == "http://localhost:4000"
    assert public_url(settings(host="::1")) == "http://[::1]:4000"
