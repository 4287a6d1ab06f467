"""Serve the gateway (with the fake provider, then with Langfuse or the embedded store) and run eval-protocol's client.

Run with ``make compat``: it builds the client's own venv (``.venv-compat``) and calls this with
the gateway's interpreter. Redis on 127.0.0.1:6379; keys go under a prefix of their own.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

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


def run_client(client_python: str, settings: Settings, provider_url: str, examples: list[Block]) -> int:
    """The driver, then the docs' eval-protocol examples, against one gateway."""
    with ServerThread(create_app(settings), loop="asyncio") as gateway:
        # The client only rewrites base URLs that start with http://localhost.
        gateway_url = gateway.url.replace("127.0.0.1", "localhost")
        driver = str(Path(__file__).with_name("eval_protocol_driver.py"))
        code = subprocess.run([client_python, driver, gateway_url, f"{provider_url}/v1"], timeout=300).returncode
        for example in examples:
            if code != 0:
                break
            print(f"{example.where()}:", flush=True)
            code = subprocess.run([client_python, "-c", example.for_gateway(gateway_url)], timeout=300).returncode
        return code


def main(client_python: str) -> int:
    """The client against a gateway tracing to Langfuse, then against one with the embedded store."""
    state = LangfuseState({"ep": ("pk-lf-ep", "sk-lf-ep")})
    with (
        ServerThread(create_upstream_app(UpstreamState())) as upstream,
        ServerThread(create_langfuse_app(state=state)) as langfuse,
    ):
        project = LangfuseProject(public_key="pk-lf-ep", secret_key="sk-lf-ep", host=langfuse.url)  # type: ignore[arg-type]
        common = {
            "allowed_base_urls": (f"{upstream.url}/v1",),
            "tracing_batch_delay_ms": 50,
            "redis_url": "redis://127.0.0.1:6379/0",
            "redis_key_prefix": f"compat-{uuid.uuid4().hex[:8]}",
        }
        with_langfuse = Settings(secrets=SecretsFile(langfuse_keys={"ep": project}, default_project_id="ep"), **common)
        embedded = Settings(secrets=SecretsFile(), **common)
        examples = [block for page in PAGES for block in runnable(page, "compat")]
        for settings, shown in ((with_langfuse, []), (embedded, examples)):
            code = run_client(client_python, settings, upstream.url, shown)
            if code != 0:
                return code
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
