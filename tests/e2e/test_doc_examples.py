"""The README's and docs' examples, run as written against a real gateway process.

Each page with runnable examples gets a gateway of its own, started as ``make run`` starts one
on a fresh clone (no Redis, no secrets file, the shipped catalogue) unless the page gives its
own gateway configuration. Its examples run in order, as a reader would run them: a shell block
with ``bash -euo pipefail`` (``curl`` fails on an HTTP error, so an error answer fails the test),
a Python block with the project's interpreter (the ``openai`` client raises on one).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_examples import PAGES, ROOT, Block, blocks, gateway_config, runnable
from tests.e2e.process import GatewayProcess

pytestmark = pytest.mark.e2e

CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl --fail-with-body --max-time 60 "$@"; }\n'
EXAMPLE_TIMEOUT_S = 90


def run(block: Block, gateway_url: str) -> subprocess.CompletedProcess[str]:
    code = block.for_gateway(gateway_url)
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", CURL_FAILS_ON_HTTP_ERRORS + code]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, cwd=ROOT)


@pytest.mark.parametrize("page", [page for page in PAGES if runnable(page)], ids=lambda page: page.name)
def test_examples_run(page: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "config_no_cache.yaml", tmp_path)
    env = {"LOG_LEVEL": "WARNING"}
    config = gateway_config(page)
    if config is not None:
        (tmp_path / "gateway.yaml").write_text(config)
        env["GATEWAY_CONFIG"] = str(tmp_path / "gateway.yaml")
    gateway = GatewayProcess(env, tmp_path)
    try:
        gateway.wait_ready()
        for block in runnable(page):
            done = run(block, gateway.url)
            assert done.returncode == 0, (
                f"{block.where()} failed ({done.returncode}):\n{block.body}\n--- stdout\n{done.stdout}\n"
                f"--- stderr\n{done.stderr}\n--- gateway log\n{gateway.log.read_text()}"
            )
    finally:
        gateway.terminate()
        gateway.kill()


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "from-the-sdk.md"], ids=lambda page: page.name)
def test_every_example_of_the_getting_started_pages_is_run_or_marked(page: Path) -> None:
    """On the pages a newcomer copies from, a shell or Python example is run, or says why not."""
    unmarked = [
        block.where()
        for block in blocks(page)
        if block.language in ("bash", "python") and not block.marks & {"run", "compat", "no-run"}
    ]
    assert unmarked == []
    assert len(runnable(page)) >= 4
