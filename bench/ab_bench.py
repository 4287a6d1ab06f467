"""CPU per request of the gateway against another copy of its code, in alternating windows.

A change's cost is smaller than the drift of a shared machine between two runs, so the two
versions are measured in turns under the same load, many times: window pairs alternate their
order (before → after, then after → before), each window preceded by an unmeasured warm-up, and
the result is the median over pairs of each pair's ratio. Both gateways run for the whole
comparison, as users run them (tracked route, Redis, tracing to the Langfuse emulator, PII
sanitizer on), against one fake provider.

    git archive <commit> | tar -x -C /tmp/before        # the code before, anywhere
    python -m bench.ab_bench --before /tmp/before        # this checkout is "after"

With ``--simultaneous`` the two are loaded at the same time instead, each by its own wrk, and
each window's CPU is read for both over the same seconds: on a machine shared with other work,
whatever the others do then weighs on both alike (alternating windows leave each version its own
share of the neighbours' bursts).

Each window also scrapes ``--scrape-path`` of both gateways once (``/metrics``: what a Prometheus
does every 15-60 s; the code before answers it 404), so the page's cost is inside the figure.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

from bench.load import Window, measure_wrk, require_wrk
from bench.servers import REPO, Fake, Target, gateway_target, start_fake, upstream_content

RESULTS = REPO / "bench" / "results"
_JSON = {"content-type": "application/json"}
BODY = {
    "model": "fake",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for health-plan claim questions."},
        {
            "role": "user",
            "content": "Summarise claim 55012, filed on 2024-03-09 for $1,284.50 after 3 visits, "
            "in two sentences for the member (jane.doe@example.org, (312) 555-0147).",
        },
    ],
    "temperature": 0.2,
    "max_tokens": 256,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a directory holding the code before")
    parser.add_argument("--after", type=Path, default=REPO, help="the code after (default: this checkout)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each window")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay-ms", type=int, default=50, help="the fake provider's latency")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--scrape-path", default="/metrics")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--simultaneous", action="store_true", help="load both at once in every window")
    return parser.parse_args(argv)


def _gateway(name: str, code: Path, args: argparse.Namespace, run_dir: Path, fakes: dict[str, Fake]) -> Target:
    extra = dict(item.split("=", 1) for item in args.gateway_env)
    target = gateway_target(
        key=name,
        workers=1,
        run_dir=run_dir / name,
        models={"fake": f"{fakes['upstream'].url}/v1"},
        provider_model="openai/gpt-4o-mini",
        langfuse_url=fakes["langfuse"].url,
        redis_url=args.redis_url,
        key_prefix=f"bench-ab-{uuid.uuid4().hex[:8]}",
        sanitizer="redact",
        extra_env=extra,
    )
    target.cwd = code.resolve()
    target.env["PYTHONPATH"] = str(code.resolve())
    return target


def _forget_keys(redis_url: str, prefixes: list[str]) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    for prefix in prefixes:
        for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
            client.delete(key)


def _windows(
    names: tuple[str, ...], targets: dict[str, Target], body: Path, args: argparse.Namespace, number: int
) -> dict[str, Window]:
    """A warm-up and a measured window of each target in ``names``, all at the same time."""

    def load(name: str, seconds: float) -> Window:
        target = targets[name]
        url = target.url(0, f"ab-{number}-{name}")
        return measure_wrk(
            target.pid(0),
            url,
            body,
            concurrency=args.concurrency,
            duration_s=seconds,
            max_requests=10**6,
            require_header=target.require_header,
        )

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda name: load(name, args.warmup), names))
        return dict(zip(names, pool.map(lambda name: load(name, args.window), names), strict=True))


def compare(args: argparse.Namespace) -> dict[str, object]:
    require_wrk()
    run_dir = RESULTS / "ab-latest"
    for sub in ("before", "after"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    body = run_dir / "body.json"
    body.write_text(json.dumps(BODY))
    upstream_args = ["upstream", "--delay-ms", str(args.delay_ms), "--chunks", "3", "--content", upstream_content(3)]
    fakes = {
        "upstream": start_fake("upstream", upstream_args, run_dir),
        "langfuse": start_fake("langfuse", ["langfuse"], run_dir),
    }
    targets = {name: _gateway(name, getattr(args, name), args, run_dir, fakes) for name in ("before", "after")}
    pairs: list[dict[str, float]] = []
    try:
        for target in targets.values():
            target.start(run_dir, 120.0)
        for number in range(args.pairs):
            order = ("before", "after") if number % 2 == 0 else ("after", "before")
            groups = [order] if args.simultaneous else [(name,) for name in order]
            pair: dict[str, float] = {}
            for group in groups:
                for name, window in _windows(group, targets, body, args, number).items():
                    httpx.get(targets[name].base_url(0) + args.scrape_path, timeout=10)
                    if window.errors:
                        raise RuntimeError(f"{name}: {window.errors} errors, first: {window.first_error}")
                    pair[f"{name}_cpu_ms"] = window.cpu_ms_per_request
                    pair[f"{name}_rps"] = window.rps
                    pair[f"{name}_foreign_share"] = window.foreign_share
            pair["ratio"] = pair["after_cpu_ms"] / pair["before_cpu_ms"]
            pairs.append(pair)
            print(
                f"pair {number + 1}: before {pair['before_cpu_ms']:.3f} ms, after {pair['after_cpu_ms']:.3f} ms, "
                f"after/before {pair['ratio']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for target in targets.values():
            target.stop()
        for fake in fakes.values():
            fake.process.stop()
        _forget_keys(args.redis_url, [t.env["REDIS_KEY_PREFIX"] for t in targets.values()])
    return {
        "pairs": pairs,
        "median_before_cpu_ms": statistics.median(p["before_cpu_ms"] for p in pairs),
        "median_after_cpu_ms": statistics.median(p["after_cpu_ms"] for p in pairs),
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        "ratio_range": [min(p["ratio"] for p in pairs), max(p["ratio"] for p in pairs)],
        "lower_in_pairs": sum(p["ratio"] < 1 for p in pairs),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = time.perf_counter()
    result = compare(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ab-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median CPU per request: before {result['median_before_cpu_ms']:.3f} ms, "
        f"after {result['median_after_cpu_ms']:.3f} ms; after/before {result['median_ratio']:.3f} "
        f"(pairs {result['ratio_range'][0]:.3f}-{result['ratio_range'][1]:.3f}, "  # type: ignore[index]
        f"after lower in {result['lower_in_pairs']} of {len(result['pairs'])}); "  # type: ignore[arg-type]
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
