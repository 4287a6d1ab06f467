"""A fresh clone, run as a newcomer runs it: ``make run``, one completion, its trace read back.

The clone holds only what is committed, so a gateway that works only thanks to an untracked file
(a local secrets file, a stray configuration) fails here. The test suite runs it with the
suite's own virtualenv (``make run`` then only checks the pinned set is installed, in seconds);
``python -m tests.e2e.fresh_clone`` runs it the whole way, a new ``.venv`` included, and prints
the wall-clock time from ``git clone`` to the trace read back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.process import free_port

ROOT = Path(__file__).resolve().parents[2]
BANNER = "proxy-core is ready on"
ROLLOUT = "rollout_id/first/invocation_id/i/experiment_id/e/run_id/r/row_id/w"


@dataclass(frozen=True, slots=True)
class Timings:
    clone_s: float
    ready_s: float  # from `make run` to its banner
    loop_s: float  # the completion and its trace read back
    total_s: float
    insertion_id: str


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: none of the gateway's settings."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_", "LANGFUSE_", "GATEWAY_"))}
    kept.pop("PYTHONPATH", None)
    return {**kept, **extra}


def _wait_for_banner(process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if BANNER in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"make run exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    raise TimeoutError(f"make run printed no banner in time:\n{log.read_text(errors='replace')}")


def first_traced_completion(url: str) -> str:
    """The README's first two steps: a tracked completion, then its trace read back."""
    reply = httpx.post(
        f"{url}/{ROLLOUT}/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=60,
    )
    reply.raise_for_status()
    insertion_id = reply.headers["x-insertion-id"]
    read = httpx.get(f"{url}/v1/traces/pointwise", params={"tags": "rollout_id:first", "max_retries": 5}, timeout=60)
    read.raise_for_status()
    (trace,) = read.json()["traces"]
    if f"insertion_id:{insertion_id}" not in trace["tags"]:
        raise AssertionError(f"the trace read back is not the completion's: {trace['tags']}")
    return insertion_id


def run(workdir: Path, *, venv: Path | None = None, timeout_s: float = 900.0) -> Timings:
    """Clone, ``make run`` (in a process group of its own), the loop, then stop it."""
    started = time.monotonic()
    clone = workdir / "proxy-core"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    cloned = time.monotonic()
    port = free_port()
    command = ["make", "run"] + ([f"VENV={venv}"] if venv is not None else [])
    log = workdir / "make-run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=clone,
            env=_clean_env(PORT=str(port)),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_banner(process, log, started + timeout_s)
        ready = time.monotonic()
        insertion_id = first_traced_completion(f"http://127.0.0.1:{port}")
        done = time.monotonic()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return Timings(cloned - started, ready - cloned, done - ready, done - started, insertion_id)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        timings = run(Path(scratch))
    print(
        f"fresh clone to first traced completion read back: {timings.total_s:.1f} s "
        f"(git clone {timings.clone_s:.1f} s, make run to ready {timings.ready_s:.1f} s, "
        f"completion and read-back {timings.loop_s:.2f} s)"
    )
    sys.exit(0)
