"""Serve the gateway (with the fake provider, then with Langfuse or the embedded store) and run eval-protocol's client.

Run with ``make compat``: it builds the client's own venv (``.venv-compat``) and calls this with
the gateway's interpreter. Redis on 127.0.0.1:6379; keys go under a prefix of their own. Two runs:

1. ``eval_protocol_driver.py``: a chat through the client's tracing URL, and the trace read back;
2. a whole ``RemoteRolloutProcessor`` evaluation (``remote_eval.py``, pytest) whose rows run on
   ``remote_agent.py``, which reports to the gateway's ``/logs``; the processor polls ``/status``.

Then, against a gateway with no Langfuse project (the embedded trace store), the driver again and
the docs' examples marked ``python compat``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy_core.app import create_app  # noqa: E402
from proxy_core.config_files import LangfuseProject, SecretsFile  # noqa: E402
from proxy_core.settings import Settings  # noqa: E402
from tests.doc_examples import PAGES, Block, runnable  # noqa: E402
from tests.fakes.langfuse import create_langfuse_app  # noqa: E402
from tests.fakes.langfuse_state import LangfuseState  # noqa: E402
from tests.fakes.server import ServerThread  # noqa: E402
from tests.fakes.upstream import UpstreamState, create_upstream_app  # noqa: E402

HERE = Path(__file__).parent
ROLLOUT_TIMEOUT_S = 30.0  # the client's default is 120 s; a working rollout needs a fraction of one
NORMAL_PROMPTS = ("What is two plus two?", "Name a primary colour.")
FAILING_PROMPT = "please fail this row"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the remote agent exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the remote agent did not answer at {url} within {timeout_s:.0f} s")


def client_environment(home: str, gateway_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The client's environment: no key, nothing sent to the hosted service, EP's files in ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in ("FIREWORKS_API_KEY", "EP_REMOTE_API_KEY", "GATEWAY_URL")}
    env.update(
        HOME=home,
        EP_NO_UPLOAD="1",
        EP_DISABLE_AUTO_BROWSER="1",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        FW_TRACING_GATEWAY_BASE_URL=gateway_url,
        **extra,
    )
    return env


def run_remote_evaluation(client_python: str, gateway_url: str, provider_url: str) -> list[dict[str, Any]]:
    """Serve the agent, run the evaluation with pytest, return each row's outcome."""
    with tempfile.TemporaryDirectory(prefix="compat-remote-") as home:
        results = Path(home) / "results.jsonl"
        agent_port = free_port()
        env = client_environment(
            home,
            gateway_url,
            {
                "COMPAT_AGENT_URL": f"http://127.0.0.1:{agent_port}",
                "COMPAT_GATEWAY_URL": gateway_url,
                "COMPAT_PROVIDER_URL": provider_url,
                "COMPAT_RESULTS": str(results),
                "COMPAT_ROLLOUT_TIMEOUT_S": str(ROLLOUT_TIMEOUT_S),
            },
        )
        agent = subprocess.Popen([client_python, str(HERE / "remote_agent.py"), str(agent_port)], env=env)
        try:
            wait_until_serving(f"http://127.0.0.1:{agent_port}/docs", agent)
            (Path(home) / "pytest.ini").write_text("[pytest]\n")
            command = [client_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", f"{home}/pytest.ini"]
            command += ["--rootdir", home, str(HERE / "remote_eval.py")]
            subprocess.run(command, env=env, timeout=300, check=False)
        finally:
            agent.terminate()
            agent.wait(timeout=10)
        lines = results.read_text().splitlines() if results.exists() else []
        return [json.loads(line) for line in lines]


def judge(outcomes: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the rows' outcomes (nothing, when every rule holds)."""
    by_prompt = {outcome["prompt"]: outcome for outcome in outcomes}
    problems = [] if len(outcomes) == 3 else [f"expected 3 rows, got {len(outcomes)}"]
    for prompt in NORMAL_PROMPTS:
        row = by_prompt.get(prompt)
        if row is None:
            problems.append(f"no outcome for {prompt!r}")
            continue
        if (row["code"], row["message"]) != (100, "Rollout finished"):
            problems.append(f"{prompt!r} ended {row['code']} {row['message']!r}, not 100 'Rollout finished'")
        if (row["last_role"], row["last_content"]) != ("assistant", f"echo: {prompt}"):
            problems.append(f"{prompt!r} ends with {row['last_role']}: {row['last_content']!r}")
        if (row["extra"] or {}).get("agent") != "compat-agent" or row["extra"].get("answer_chars") != len(
            f"echo: {prompt}"
        ):
            problems.append(f"{prompt!r} lacks the agent's extras: {row['extra']!r}")
    failed = by_prompt.get(FAILING_PROMPT)
    expected_message = "compat-agent could not finish row"
    if failed is None or failed["code"] != 13 or expected_message not in (failed["message"] or ""):
        problems.append(f"the failing row ended {failed!r}, not 13 with the agent's message")
    for outcome in outcomes:
        if outcome["seconds_since_start"] >= ROLLOUT_TIMEOUT_S:
            problems.append(f"{outcome['prompt']!r} took the whole timeout ({outcome['seconds_since_start']} s)")
    return problems


def run_driver(client_python: str, gateway_url: str, provider_url: str, examples: list[Block]) -> int:
    """The driver, then ``examples`` (the docs' eval-protocol examples), against one gateway."""
    driver = str(HERE / "eval_protocol_driver.py")
    status = subprocess.run([client_python, driver, gateway_url, f"{provider_url}/v1"], timeout=300).returncode
    for example in examples:
        if status != 0:
            break
        print(f"{example.where()}:", flush=True)
        status = subprocess.run([client_python, "-c", example.for_gateway(gateway_url)], timeout=300).returncode
    return status


def main(client_python: str) -> int:
    state = LangfuseState({"ep": ("pk-lf-ep", "sk-lf-ep")})
    with (
        ServerThread(create_upstream_app(UpstreamState())) as upstream,
        ServerThread(create_langfuse_app(state=state)) as langfuse,
    ):
        project = LangfuseProject(public_key="pk-lf-ep", secret_key="sk-lf-ep", host=langfuse.url)  # type: ignore[arg-type]
        common: dict[str, Any] = {
            "allowed_base_urls": (f"{upstream.url}/v1",),
            "tracing_batch_delay_ms": 50,
            "redis_url": "redis://127.0.0.1:6379/0",
            "redis_key_prefix": f"compat-{uuid.uuid4().hex[:8]}",
        }
        with_langfuse = Settings(secrets=SecretsFile(langfuse_keys={"ep": project}, default_project_id="ep"), **common)
        with ServerThread(create_app(with_langfuse), loop="asyncio") as gateway:
            # The client only rewrites base URLs that start with http://localhost.
            gateway_url = gateway.url.replace("127.0.0.1", "localhost")
            status = run_driver(client_python, gateway_url, upstream.url, [])
            if status != 0:
                return status
            outcomes = run_remote_evaluation(client_python, gateway_url, f"{upstream.url}/v1")
        examples = [block for page in PAGES for block in runnable(page, "compat")]
        with ServerThread(create_app(Settings(secrets=SecretsFile(), **common)), loop="asyncio") as gateway:
            status = run_driver(client_python, gateway.url.replace("127.0.0.1", "localhost"), upstream.url, examples)
            if status != 0:
                return status
    for outcome in sorted(outcomes, key=lambda o: o["prompt"]):
        print(f"remote rollout {outcome['prompt']!r}: {outcome['code']} {outcome['message']!r} "
              f"after {outcome['seconds_since_start']} s (timeout {ROLLOUT_TIMEOUT_S:.0f} s), "
              f"{outcome['seconds_after_agent_finished'] or '-'} s after the agent logged FINISHED")  # fmt: skip
    problems = judge(outcomes)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"eval-protocol RemoteRolloutProcessor: {len(outcomes)} rows ended as expected")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
