"""Streaming load: a fixed number of concurrent SSE completions for a bounded time or count.

wrk cannot time the first event of a stream or check how a stream ended, so streams are
driven by this small asyncio client, in a process of its own (its CPU is not the server's).
Each stream is timed to its first ``data:`` event (time to first byte) and to its end; it is
an error unless it is a 200 that ends with ``data: [DONE]`` and carries no in-band error.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx
import orjson
import uvloop


@dataclass
class Tally:
    streams: int = 0
    events: int = 0
    errors: int = 0
    first_error: str = ""
    ttfb_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = why[:300]


async def one_stream(client: httpx.AsyncClient, url: str, body: bytes, tally: Tally) -> None:
    started = time.perf_counter()
    first: float | None = None
    events, buffer, last = 0, b"", b""
    headers = {"content-type": "application/json"}
    async with client.stream("POST", url, content=body, headers=headers) as response:
        if response.status_code != 200:
            tally.fail(f"{response.status_code} {(await response.aread())[:200]!r}")
            return
        async for piece in response.aiter_raw():
            buffer += piece
            *complete, buffer = buffer.split(b"\n\n")
            for event in complete:
                if not event.startswith(b"data: "):
                    continue
                if first is None:
                    first = time.perf_counter()
                last = event
                if event.startswith(b'data: {"error"'):
                    tally.fail(f"in-band error: {event[:200]!r}")
                    return
                events += 1
    if last != b"data: [DONE]" or first is None:
        tally.fail(f"stream ended without [DONE] after {events} events")
        return
    tally.streams += 1
    tally.events += events - 1  # [DONE] is not a chunk
    tally.ttfb_s.append(first - started)
    tally.total_s.append(time.perf_counter() - started)


async def worker(
    client: httpx.AsyncClient, args: argparse.Namespace, body: bytes, deadline: float, tally: Tally
) -> None:
    while time.perf_counter() < deadline and tally.streams + tally.errors < args.max_streams:
        try:
            await one_stream(client, args.url, body, tally)
        except httpx.HTTPError as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace, body: bytes) -> dict[str, object]:
    tally = Tally()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(args.timeout)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        deadline = started + args.duration
        await asyncio.gather(*(worker(client, args, body, deadline, tally) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "streams": tally.streams,
        "chunks": tally.events,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "elapsed_s": elapsed,
        "ttfb_p50_ms": 1000 * statistics.median(tally.ttfb_s) if tally.ttfb_s else 0.0,
        "ttfb_p99_ms": 1000 * _percentile(tally.ttfb_s, 0.99),
        "stream_p50_ms": 1000 * statistics.median(tally.total_s) if tally.total_s else 0.0,
        "stream_p99_ms": 1000 * _percentile(tally.total_s, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds; streams in flight then finish")
    parser.add_argument("--max-streams", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as handle:
        body = handle.read()
    result = uvloop.run(run(args, body))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
