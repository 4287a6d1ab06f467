"""What slow clients cost the gateway: RSS while they hold unfinished heads, and when they are closed.

Starts the gateway as users run it (``python -m proxy_core``, default settings, so
``REQUEST_HEAD_TIMEOUT_S`` is 10 s; no Redis, no tracing: neither is touched before a head is
complete), then opens ``--connections`` connections that each send ``--head-kib`` of a request
head that never ends (one header, below the 1 MiB bound on an unfinished head, so it is held,
not refused) and wait. It reads the gateway's ``VmRSS`` before, every 250 ms while the heads are
held (the peak is reported), and 1 s after the last connection was closed, and reports when each
connection was closed, counted from its first byte, and what it was answered. While the heads
are held, one ``/health`` request is timed: the gateway must still answer. A second wave (the
default, ``--waves``) shows whether memory freed after the first is reused or grows again.

Run: ``python -m bench.slow_clients [--connections 200] [--head-kib 1000] [--waves 2]``. About 45 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.servers import HOST, clean_environment, free_port, spawn, wait_healthy


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def hold(port: int, head: bytes) -> tuple[bytes, float]:
    """Send ``head`` (never finished) and read until the gateway closes; (status line, seconds)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    answer = b""
    try:
        writer.write(head)
        await writer.drain()
        while chunk := await reader.read(65536):
            answer += chunk
    except ConnectionError:
        pass
    closed = time.monotonic() - started
    writer.close()
    return answer.split(b"\r\n", 1)[0], closed


async def measure(port: int, pid: int, connections: int, head_kib: int) -> dict[str, object]:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: " + b"v" * (head_kib * 1024)
    before = rss_mib(pid)
    holders = [asyncio.create_task(hold(port, head)) for _ in range(connections)]
    samples: list[float] = []
    health_ms = None
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        while not all(task.done() for task in holders):
            samples.append(rss_mib(pid))
            if health_ms is None and len(samples) == 8:  # 2 s in: every head is being held
                started = time.monotonic()
                assert (await client.get("/health")).status_code == 200
                health_ms = (time.monotonic() - started) * 1000
            await asyncio.sleep(0.25)
    results = [task.result() for task in holders]
    await asyncio.sleep(1.0)
    after = rss_mib(pid)
    closed = sorted(seconds for _, seconds in results)
    statuses: dict[str, int] = {}
    for status, _ in results:
        key = status.decode() or "(closed without an answer)"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "connections": connections,
        "head_kib": head_kib,
        "rss_mib": {"before": round(before), "peak_held": round(max(samples)), "after": round(after)},
        "closed_s": {
            "first": round(closed[0], 2),
            "median": round(statistics.median(closed), 2),
            "last": round(closed[-1], 2),
        },
        "answers": statuses,
        "health_while_held_ms": round(health_ms, 1) if health_ms is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--head-kib", type=int, default=1000)
    parser.add_argument("--waves", type=int, default=2, help="waves of connections, one after the other")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as run_dir:
        env = clean_environment({"HOST": HOST, "PORT": str(port)})
        gateway = spawn("gateway", [sys.executable, "-m", "proxy_core"], env, Path(run_dir))
        try:
            wait_healthy(gateway, f"http://{HOST}:{port}/health", 90)
            time.sleep(1.0)  # let start-up settle before the first RSS reading
            waves = [
                asyncio.run(measure(port, gateway.pid, args.connections, args.head_kib)) for _ in range(args.waves)
            ]
        finally:
            gateway.stop()
    print(json.dumps(waves, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
