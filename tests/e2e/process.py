"""The gateway as users run it, `python -m proxy_core` in a process of its own, and what the tests share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.langfuse_state import LangfuseState

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("e2e", "pk-lf-e2e", "sk-lf-e2e")
LONG = "abcdefghijklmnopqrstuvwxyz0123456789"
ROLLOUT = "rollout_id/{r}/invocation_id/i/experiment_id/e/run_id/run/row_id/row"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_", "LANGFUSE_"))}
        full_env.update(env, PORT=str(self.port), HOST="127.0.0.1", PYTHONPATH=str(ROOT))
        self.log = cwd / "gateway.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy_core"],
            cwd=cwd,
            env=full_env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready:\n{self.log.read_text()}")

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        """The log, once it holds ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log.read_text()
            if text in log:
                return log
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not logged:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log_handle.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log_handle.close()


def insertion_ids_received(state: LangfuseState) -> set[str]:
    ids = set()
    for span in state.spans(PROJECT[0]):
        raw = span.attributes.get("langfuse.trace.tags")
        if span.parent_span_id is None and isinstance(raw, str):
            ids.update(t.removeprefix("insertion_id:") for t in json.loads(raw) if t.startswith("insertion_id:"))
    return ids


def flush_only_env(
    tmp_path: Path, upstream_url: str, langfuse_url: str, redis_url: str, key_prefix: str
) -> dict[str, str]:
    """A traced gateway's environment (the e2e project, model ``fake``, Redis) whose spans leave
    only at shutdown: with a ten-minute batch delay, only the shutdown flush can deliver them."""
    secrets = tmp_path / "secrets.yaml"
    project, public_key, secret_key = PROJECT
    secrets.write_text(
        f"langfuse_keys:\n  {project}: {{public_key: {public_key}, secret_key: {secret_key}, host: '{langfuse_url}'}}\n"
        f"default_project_id: {project}\n"
    )
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "model_list:\n  - model_name: fake\n"
        f"    litellm_params: {{model: openai/fake-model, api_base: '{upstream_url}/v1', api_key: sk-up}}\n"
    )
    return {
        "SECRETS_PATH": str(secrets),
        "GATEWAY_CONFIG": str(catalog),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "TRACING_BATCH_DELAY_MS": "600000",
        "LOG_LEVEL": "INFO",
    }


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


LISTEN, ESTABLISHED = "0A", "01"


def tcp_inodes(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets whose local port is ``port`` and whose state is ``state``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                found.add(fields[9])
    return found
