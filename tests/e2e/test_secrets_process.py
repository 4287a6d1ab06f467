"""`python -m proxy_core` with its secrets in AWS Secrets Manager (moto): it starts from the secret,
and a missing secret stops it with one line naming the secret, exit status 2, before ``/health``
ever answers (a malformed one: ``tests/integration/test_aws_secrets.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import ROOT, GatewayProcess, free_port
from tests.fakes.aws import MotoServer

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "gw-from-aws-secrets-manager-0123"


def aws_environment(moto_server: MotoServer, tmp_path: Path, secret_id: str) -> dict[str, str]:
    return {
        **moto_server.env(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "SECRETS_SOURCE": "aws-secretsmanager",
        "SECRETS_AWS_SECRET_ID": secret_id,
    }


def run_until_exit(env: dict[str, str], cwd: Path) -> tuple[int, list[str], int]:
    """Run the gateway to its end, probing ``/health`` all along: (exit status, stderr lines, answers)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_", "LANGFUSE_", "AWS_"))}
    full_env.update(env, PORT=str(port), HOST="127.0.0.1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy_core"], cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    answers = 0
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
            answers += 1
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate(timeout=10)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    return process.returncode, lines, answers


def test_the_gateway_starts_from_the_secret(moto_server: MotoServer, tmp_path: Path) -> None:
    secret_id = moto_server.new_secret(f'{{"api_keys": [{{"key": "{GATEWAY_KEY}", "projects": ["*"]}}]}}')
    gateway = GatewayProcess(aws_environment(moto_server, tmp_path, secret_id), tmp_path)
    try:
        gateway.wait_ready()
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        url = f"{gateway.url}/v1/chat/completions"
        assert httpx.post(url, json=body, timeout=30).status_code == 401
        answer = httpx.post(url, json=body, headers={"authorization": f"Bearer {GATEWAY_KEY}"}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        gateway.terminate()


def test_a_missing_secret_stops_start_up_with_one_line_naming_it(moto_server: MotoServer, tmp_path: Path) -> None:
    status, lines, answers = run_until_exit(aws_environment(moto_server, tmp_path, "gateway/never-created"), tmp_path)
    assert (status, answers) == (2, 0)
    assert lines == [
        "proxy_core: invalid configuration: "
        "AWS Secrets Manager secret 'gateway/never-created' does not exist (region eu-west-1)"
    ]
