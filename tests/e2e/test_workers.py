"""``WORKERS=2``: each worker listens on a socket of its own, and every guarantee still holds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from bench.procfs import process_tree
from tests.e2e.process import (
    ESTABLISHED,
    LISTEN,
    ROLLOUT,
    GatewayProcess,
    insertion_ids_received,
    socket_inodes,
    tcp_inodes,
)
from tests.fakes.langfuse_state import LangfuseState

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")]

CLIENTS = 32


def listeners_by_worker(gateway: GatewayProcess, workers: int, timeout: float = 90) -> dict[int, set[str]]:
    """Each worker's listening sockets on the gateway's port, once ``workers`` of them listen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gateway.log.read_text()}")
        listening = tcp_inodes(gateway.port, LISTEN)
        found = {pid: socket_inodes(pid) & listening for pid in process_tree(gateway.process.pid)[1:]}
        found = {pid: inodes for pid, inodes in found.items() if inodes}
        if len(found) == workers:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"{workers} workers did not listen:\n{gateway.log.read_text()}")


def test_two_workers_share_connections_and_deliver_every_trace_on_sigterm(
    flush_only: tuple[dict[str, str], LangfuseState], tmp_path: Path
) -> None:
    env, langfuse_state = flush_only
    gateway = GatewayProcess({**env, "WORKERS": "2"}, tmp_path)
    clients = [
        httpx.Client(base_url=f"{gateway.url}/{ROLLOUT.format(r='workers')}", timeout=30) for _ in range(CLIENTS)
    ]
    try:
        listeners = listeners_by_worker(gateway, 2)
        first, second = listeners.values()
        assert not first & second, "the workers share one listening socket"
        gateway.wait_ready()
        gateway.wait_for_log("proxy-core is ready on")

        acknowledged = set()
        for n, client in enumerate(clients):  # one keep-alive connection each, kept open
            reply = client.post(
                "/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": f"n={n}"}]}
            )
            assert reply.status_code == 200, reply.text
            acknowledged.add(reply.headers["x-insertion-id"])
        connected = tcp_inodes(gateway.port, ESTABLISHED)
        per_worker = {pid: len(socket_inodes(pid) & connected) for pid in listeners}
        assert sum(per_worker.values()) == CLIENTS
        # The kernel hashes each connection to a listener: fewer than 4 of 32 on one worker has a
        # probability of about 1e-6. One shared socket gives no such spread.
        assert min(per_worker.values()) >= 4, per_worker
        assert insertion_ids_received(langfuse_state) == set()

        code = gateway.terminate(timeout=60)
        assert code in (0, -signal.SIGTERM), gateway.log.read_text()
        assert insertion_ids_received(langfuse_state) == acknowledged
        log = gateway.log.read_text()
        assert log.count("tracing stopped: ended=") == 2
        assert log.count("proxy-core is ready on") == 1, "one banner, from the supervisor, not one per worker"
    finally:
        for client in clients:
            client.close()
        gateway.kill()
