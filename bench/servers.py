"""Start, check and stop every process of a benchmark run: the fakes and the servers under test.

Each process gets its own session (process group), its output goes to a log file in the run
directory, and stopping sends SIGTERM to the group, then SIGKILL after a bounded wait, so a
run never leaves a server behind. Start-up time is measured from ``Popen`` to the first 200
from the server's health route.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Variables that any of the servers reads: none may leak in from the caller's environment.
_FOREIGN_PREFIXES = ("LITELLM_", "LANGFUSE_", "OPENAI_", "REDIS_", "TRACING_")
_FOREIGN_NAMES = {"DATABASE_URL", "SECRETS_PATH", "GATEWAY_CONFIG", "WORKERS", "PORT", "HOST", "LOG_LEVEL"}


class StartError(RuntimeError):
    """A process did not come up; the message names its log."""


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_FOREIGN_PREFIXES) and key not in _FOREIGN_NAMES
    }
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network fetch of the cost map at import
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One started process (and its group) with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    ready_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the group, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, cwd: Path = REPO) -> Process:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed with this process
    popen = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    return Process(name, popen, log_path, time.perf_counter())


def wait_healthy(process: Process, url: str, timeout_s: float) -> float:
    """Poll ``url`` until it answers 200; returns seconds since the process was started."""
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if not process.alive():
                raise StartError(f"{process.name} exited with {process.popen.returncode}: see {process.log_path}")
            try:
                if client.get(url).status_code == 200:
                    process.ready_s = time.perf_counter() - process.started_at
                    return process.ready_s
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    process.stop()
    raise StartError(f"{process.name} did not answer {url} within {timeout_s:.0f} s: see {process.log_path}")


# --- the fakes ----------------------------------------------------------------------------------


@dataclass
class Fake:
    """A test double served by ``bench/serve_fake.py``; its port is read from its first line."""

    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def start_fake(name: str, args: list[str], log_dir: Path, timeout_s: float = 30.0, *, port: int = 0) -> Fake:
    """``port`` 0 lets the OS choose; a fixed one restarts a double where it was."""
    argv = [sys.executable, "-m", "bench.serve_fake", *args, "--port", str(port)]
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=clean_environment({}),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    process = Process(name, popen, log_path, time.perf_counter())
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline and not line.startswith(b"port="):
        line = popen.stdout.readline()
        if not line and popen.poll() is not None:
            break
    if not line.startswith(b"port="):
        process.stop()
        raise StartError(f"{name} did not start: see {log_path}")
    return Fake(process, int(line.split(b"=")[1]))


def upstream_content(chunks: int) -> str:
    """A reply of ``chunks`` pieces of five characters each, so every stream chunk carries text."""
    sentence = "The claim was reviewed and approved under the standard terms of the member plan. "
    text = sentence * (5 * chunks // len(sentence) + 1)
    return text[: 5 * chunks]


# --- the servers under test ---------------------------------------------------------------------


@dataclass
class Target:
    """A server under test: how to start it, where to send completions, which tree to measure.

    ``base_urls`` maps an upstream latency (ms) to the base URL that reaches it and ``models``
    the latency to the model name that selects it; the direct target is the upstream itself,
    so its process (and the tree measured) changes with the latency.
    """

    key: str
    label: str
    completion_path: str
    health_path: str
    argv: list[str] | None
    env: dict[str, str]
    port: int = 0
    workers: int = 1
    tracked: bool = False
    require_header: str = ""
    cwd: Path = REPO
    process: Process | None = None
    upstream_processes: dict[int, Process] = field(default_factory=dict)
    upstream_urls: dict[int, str] = field(default_factory=dict)
    first_request_ms: float = 0.0
    requests_served: int = 0

    @property
    def is_direct(self) -> bool:
        return self.argv is None

    def base_url(self, delay_ms: int) -> str:
        return self.upstream_urls[delay_ms] if self.is_direct else f"http://{HOST}:{self.port}"

    def pid(self, delay_ms: int) -> int:
        if self.is_direct:
            return self.upstream_processes[delay_ms].pid
        assert self.process is not None
        return self.process.pid

    def url(self, delay_ms: int, rollout_id: str) -> str:
        path = self.completion_path.format(rollout_id=rollout_id)
        return self.base_url(delay_ms) + path

    def start(self, log_dir: Path, timeout_s: float) -> None:
        if self.is_direct:
            return
        assert self.argv is not None
        self.process = spawn(self.key, self.argv, self.env, log_dir, cwd=self.cwd)
        wait_healthy(self.process, f"http://{HOST}:{self.port}{self.health_path}", timeout_s)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def startup_s(self) -> float:
        return self.process.ready_s if self.process is not None else 0.0


TRACKED_PATH = (
    "/rollout_id/{rollout_id}/invocation_id/inv-1/experiment_id/bench/run_id/run-1/row_id/row-1/chat/completions"
)


def write_yaml(path: Path, document: object) -> Path:
    """YAML is a superset of JSON: JSON text is a valid configuration for every server here."""
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def catalogue(models: dict[str, str], provider_model: str) -> dict[str, object]:
    """LiteLLM's ``model_list`` routing each model name to its upstream base URL."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": provider_model, "api_base": base, "api_key": "sk-bench"},
            }
            for name, base in models.items()
        ]
    }


def gateway_target(
    *,
    key: str,
    workers: int,
    run_dir: Path,
    models: dict[str, str],
    provider_model: str,
    langfuse_url: str,
    redis_url: str,
    key_prefix: str,
    sanitizer: str,
    extra_env: dict[str, str],
) -> Target:
    """The gateway as users run it: tracked route, Redis, tracing to the Langfuse emulator.

    ``sanitizer`` is the PII mode for every project (``pii_defaults.mode``: ``redact``,
    ``trace_only`` or ``off``). The response cache is off: every request must reach the provider.
    """
    secrets = write_yaml(
        run_dir / "gateway-secrets.yaml",
        {
            "langfuse_keys": {
                "bench": {"public_key": "pk-lf-bench", "secret_key": "sk-lf-bench", "host": langfuse_url}
            },
            "default_project_id": "bench",
        },
    )
    config = write_yaml(
        run_dir / "gateway-catalogue.yaml",
        {
            **catalogue(models, provider_model),
            "pii_defaults": {"mode": sanitizer},
            "response_cache": {"enabled": False},
        },
    )
    port = free_port()
    env = clean_environment(
        {
            "HOST": HOST,
            "PORT": str(port),
            "WORKERS": str(workers),
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
            "SECRETS_PATH": str(secrets),
            "GATEWAY_CONFIG": str(config),
            "LOG_LEVEL": "WARNING",
            **extra_env,
        }
    )
    label = "gateway" if workers == 1 else f"gateway ×{workers}"
    return Target(
        key=key,
        label=label,
        completion_path=TRACKED_PATH,
        health_path="/health",
        argv=[sys.executable, "-m", "proxy_core"],
        env=env,
        port=port,
        workers=workers,
        tracked=True,
        require_header="x-insertion-id",
    )


def proxy_target(
    *, key: str, workers: int, run_dir: Path, models: dict[str, str], provider_model: str, litellm_bin: Path
) -> Target:
    """The LiteLLM proxy in its most favourable setting: no database, no callbacks, no auth."""
    config = write_yaml(
        run_dir / f"litellm-proxy-{workers}w.yaml",
        {
            **catalogue(models, provider_model),
            "litellm_settings": {"drop_params": True, "num_retries": 0, "callbacks": [], "success_callback": []},
            "router_settings": {"num_retries": 0},
            "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
        },
    )
    port = free_port()
    env = clean_environment({"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION"})
    argv = [str(litellm_bin), "--config", str(config), "--host", HOST, "--port", str(port)]
    argv += ["--num_workers", str(workers)]
    label = "LiteLLM proxy" if workers == 1 else f"LiteLLM proxy ×{workers}"
    return Target(
        key=key,
        label=label,
        completion_path="/chat/completions",
        health_path="/health/liveliness",
        argv=argv,
        env=env,
        port=port,
        workers=workers,
        cwd=run_dir,
    )


def floor_target(*, models: dict[str, str], provider_model: str) -> Target:
    """The minimal FastAPI + SDK app of ``bench/floor_app.py`` on uvloop + httptools."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--host", HOST, "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return Target(
        key="floor",
        label="floor (FastAPI + SDK)",
        completion_path="/v1/chat/completions",
        health_path="/health",
        argv=argv,
        env=clean_environment({"BENCH_FLOOR_MODELS": json.dumps(models), "BENCH_FLOOR_PROVIDER_MODEL": provider_model}),
        port=port,
    )


def direct_target(upstreams: dict[int, Fake]) -> Target:
    """The fake provider itself: the latency and CPU that every other target adds to."""
    return Target(
        key="direct",
        label="direct",
        completion_path="/v1/chat/completions",
        health_path="/v1/models",
        argv=None,
        env={},
        upstream_processes={delay: fake.process for delay, fake in upstreams.items()},
        upstream_urls={delay: fake.url for delay, fake in upstreams.items()},
    )


# --- the LiteLLM proxy's own virtualenv ---------------------------------------------------------


def ensure_litellm_proxy(venv: Path, log_dir: Path, timeout_s: float = 900.0) -> Path:
    """The ``litellm`` command of a separate virtualenv, created on first use.

    ``litellm[proxy]`` pins versions that clash with the project's, so it never goes into the
    project's environment. It is installed at the project's LiteLLM version, with httptools so
    that uvicorn serves it with the same HTTP parser as the gateway.
    """
    binary = venv / "bin" / "litellm"
    version = metadata.version("litellm")
    marker = venv / f".bench-litellm-proxy-{version}"
    if binary.exists() and marker.exists():
        return binary
    log_path = log_dir / "litellm-proxy-install.log"
    print(f"installing litellm[proxy]=={version} into {venv} (first use; log: {log_path})", file=sys.stderr)
    with open(log_path, "wb") as log:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={version}", "httptools"],
        ]
        for step in steps:
            result = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
            if result.returncode != 0:
                raise StartError(f"installing the LiteLLM proxy failed ({' '.join(step)}): see {log_path}")
    marker.touch()
    return binary
