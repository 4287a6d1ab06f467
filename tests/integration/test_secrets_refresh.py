"""A gateway started from AWS Secrets Manager (moto) that re-reads its secret: rotated Langfuse keys,
new projects and new gateway keys apply without a restart, and a broken secret changes nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from proxy_core.app import create_app
from proxy_core.settings import Settings
from tests.fakes.aws import REGION, MotoServer
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import catalog_for, rollout_path

OLD_KEY = "gw-before-rotation-0123456789"
NEW_KEY = "gw-after-rotation-0123456789"
INVALID_KEY = {
    "error": {"message": "Invalid API key.", "type": "authentication_error", "param": None, "code": "invalid_api_key"}
}


def secret(langfuse_url: str, projects: dict[str, tuple[str, str]], key: str, allowed: list[str]) -> str:
    """The secret's string: the secrets file's schema, as JSON."""
    return orjson.dumps(
        {
            "langfuse_keys": {
                pid: {"public_key": pk, "secret_key": sk, "host": langfuse_url} for pid, (pk, sk) in projects.items()
            },
            "default_project_id": next(iter(projects)),
            "api_keys": [{"name": "eval-team", "key": key, "projects": allowed}],
        }
    ).decode()


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


class Client:
    def __init__(self, url: str) -> None:
        self.url = url

    def complete(self, key: str, project: str, rollout: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/project_id/{project}/{rollout_path(rollout)}/chat/completions",
            json={"model": "fake-keyed", "messages": [{"role": "user", "content": "hello"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )


def traced_in(langfuse: LangfuseState, project: str, response: httpx.Response) -> bool:
    """Whether ``project`` received the trace of ``response`` (the emulator accepts a project's
    spans only with the key pair it holds for it now)."""
    assert response.status_code == 200, response.text
    tag = f"insertion_id:{response.headers['x-insertion-id']}"
    langfuse.wait_for(lambda: any(tag in trace.tags for trace in langfuse.traces(project)), timeout=10)
    return True


@pytest.fixture
def langfuse_emulator() -> Iterator[tuple[ServerThread, LangfuseState]]:
    state = LangfuseState({"rot": ("pk-lf-old", "sk-lf-old")})
    with ServerThread(create_langfuse_app(state=state)) as server:
        yield server, state


def test_rotation_applies_without_a_restart_and_a_broken_refresh_keeps_the_last_good_secrets(
    aws_env: MotoServer,
    langfuse_emulator: tuple[ServerThread, LangfuseState],
    upstream: tuple[ServerThread, UpstreamState],
    redis_url: str,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    langfuse_server, langfuse = langfuse_emulator
    name = aws_env.new_secret(secret(langfuse_server.url, {"rot": ("pk-lf-old", "sk-lf-old")}, OLD_KEY, ["rot"]))
    settings = Settings(
        secrets_source="aws-secretsmanager",
        secrets_aws_secret_id=name,
        aws_region=REGION,
        secrets_refresh_s=1,
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        catalog=catalog_for(upstream[0].url),
        tracing_batch_delay_ms=50,
    )
    caplog.set_level(logging.INFO, logger="proxy_core.secrets")
    server = ServerThread(create_app(settings), loop="asyncio").start()
    gateway = Client(server.url)
    try:
        # Started from the secret: its gateway key is required, its Langfuse keys trace.
        assert traced_in(langfuse, "rot", gateway.complete(OLD_KEY, "rot", "before"))
        assert gateway.complete(NEW_KEY, "rot", "before").json() == INVALID_KEY

        # Rotation: Langfuse replaces the project's key pair (the old one stops working there), a
        # project is added, and the gateway key is replaced by one for every project.
        langfuse.add_project("rot", "pk-lf-new", "sk-lf-new")
        langfuse.add_project("new", "pk-lf-added", "sk-lf-added")
        rotated = {"rot": ("pk-lf-new", "sk-lf-new"), "new": ("pk-lf-added", "sk-lf-added")}
        aws_env.put(name, secret(langfuse_server.url, rotated, NEW_KEY, ["*"]))
        wait_until(lambda: gateway.complete(NEW_KEY, "rot", "probe").status_code == 200)
        after = gateway.complete(OLD_KEY, "rot", "after")
        assert (after.status_code, after.json()) == (401, INVALID_KEY)
        assert traced_in(langfuse, "rot", gateway.complete(NEW_KEY, "rot", "after"))
        assert traced_in(langfuse, "new", gateway.complete(NEW_KEY, "new", "after"))

        # A broken secret: the refresh fails, says so, and the rotated secrets stay in force.
        aws_env.put(name, '{"langfuse_keys": {"rot": ')
        wait_until(lambda: "the last good secrets stay in force" in caplog.text)
        assert gateway.complete(OLD_KEY, "rot", "broken").json() == INVALID_KEY
        assert traced_in(langfuse, "rot", gateway.complete(NEW_KEY, "rot", "broken"))
        assert traced_in(langfuse, "new", gateway.complete(NEW_KEY, "new", "broken"))
    finally:
        server.stop()
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.startswith(f"refreshing the secrets from AWS Secrets Manager secret {name!r} failed (")
    assert "sk-lf-new" not in caplog.text
    assert NEW_KEY not in caplog.text
