"""What a benchmark run measures: its scenarios, and the plan read from the command line.

Every run is bounded: a fixed number of rounds of fixed-length windows, each window also capped
by a request count, so a server that answers far faster than expected still ends the run on time.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LITELLM_VENV = Path("/tmp/litellm-proxy-venv")
# The gateway's request sanitizer (PII redaction): its mode for every project, written to the
# catalogue as ``pii_defaults.mode``. Users run it on (``redact`` is the gateway's default).
SANITIZER_MODES = ("redact", "trace_only", "off")
# Requests per window are bounded by count as well as by time.
MAX_REQUESTS_PER_WINDOW = 200_000
MAX_STREAMS_PER_WINDOW = 20_000
MODEL_FOR_DELAY = {0: "fake", 50: "fake-50ms"}
# The LiteLLM model every target's deployments name (served by the fake provider at its
# api_base): one LiteLLM has a price for, as most deployments are. For a name missing from its
# cost map, LiteLLM's cost calculation fails and formats a traceback on every call (about 0.5 ms
# of CPU per SDK call); ``--provider-model openai/fake-model`` measures that case.
DEFAULT_PROVIDER_MODEL = "openai/gpt-4o-mini"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    concurrency: int
    delay_ms: int
    stream: bool = False


def scenarios(stream_concurrency: int) -> list[Scenario]:
    return [
        Scenario("c1-0ms", "c=1, 0 ms", 1, 0),
        Scenario("c16-0ms", "c=16, 0 ms", 16, 0),
        Scenario("c64-0ms", "c=64, 0 ms", 64, 0),
        Scenario("c16-50ms", "c=16, 50 ms", 16, 50),
        Scenario("stream", f"streams, c={stream_concurrency}, 0 ms", stream_concurrency, 0, stream=True),
    ]


WORKER_SCENARIO = Scenario("c64-0ms", "c=64, 0 ms", 64, 0)


@dataclass
class Plan:
    rounds: int
    window_s: float
    warmup_s: float
    stream_concurrency: int
    stream_chunks: int
    targets: list[str]
    workers: bool
    soak: bool
    soak_checkpoints: list[int]
    soak_targets: list[str]
    soak_max_s: float
    redis_url: str
    litellm_venv: Path
    gateway_env: dict[str, str]
    sanitizer: str
    pii_bench: bool
    startup_timeout_s: float
    mode: str
    retries: int
    disturbed_share: float
    provider_model: str = DEFAULT_PROVIDER_MODEL


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmark suite: start everything, measure in alternating rounds, print the table.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one round of short windows (smoke run, ~2 min)")
    mode.add_argument("--soak", action="store_true", help="memory of one worker after 10 000 and 50 000 requests")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 1)")
    parser.add_argument("--window", type=float, help="seconds per measured window (default 8; --quick: 3)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each window (default 2)")
    parser.add_argument("--stream-concurrency", type=int, default=8)
    parser.add_argument("--stream-chunks", type=int, default=200, help="content chunks per streamed completion")
    parser.add_argument(
        "--targets",
        default="direct,gateway,proxy,floor",
        help="comma-separated subset of direct,gateway,proxy,floor (default: all)",
    )
    parser.add_argument("--no-workers", action="store_true", help="skip the 2-worker comparison")
    parser.add_argument("--soak-requests", default="10000,50000", help="--soak: cumulative request checkpoints")
    parser.add_argument("--soak-targets", default="gateway", help="--soak: comma-separated gateway,proxy,floor")
    parser.add_argument("--soak-max-seconds", type=float, default=600.0, help="--soak: time bound per checkpoint")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=DEFAULT_LITELLM_VENV,
        help="virtualenv for litellm[proxy], created on first use (default: %(default)s)",
    )
    parser.add_argument(
        "--sanitizer",
        choices=SANITIZER_MODES,
        default="redact",
        help="the gateway's PII mode for every project (default: %(default)s, as users run it)",
    )
    parser.add_argument(
        "--gateway-env", action="append", default=[], metavar="NAME=VALUE", help="extra gateway environment"
    )
    parser.add_argument(
        "--provider-model",
        default=DEFAULT_PROVIDER_MODEL,
        help="LiteLLM model of every target's deployments, served by the fake provider (default: %(default)s)",
    )
    parser.add_argument("--no-pii-bench", action="store_true", help="do not append bench/pii_bench.py's table")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument(
        "--retries", type=int, help="times a disturbed window is measured again (default 2; --quick: 1)"
    )
    parser.add_argument(
        "--disturbed-share",
        type=float,
        default=0.25,
        help="CPU of other processes (share of one core) that makes a window disturbed (default %(default)s)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    gateway_env: dict[str, str] = {}
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--gateway-env wants NAME=VALUE, got {item!r}")
        gateway_env[name] = value
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    soak_targets = [name.strip() for name in args.soak_targets.split(",") if name.strip()]
    unknown = (set(targets) - {"direct", "gateway", "proxy", "floor"}) | (
        set(soak_targets) - {"gateway", "proxy", "floor"}
    )
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return Plan(
        rounds=args.rounds or (1 if quick else 3),
        window_s=args.window or (3.0 if quick else 8.0),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        stream_concurrency=args.stream_concurrency,
        stream_chunks=args.stream_chunks,
        targets=targets,
        workers=not args.no_workers and bool({"gateway", "proxy"} & set(targets)),
        soak=args.soak,
        soak_checkpoints=sorted(int(value) for value in args.soak_requests.split(",")),
        soak_targets=soak_targets,
        soak_max_s=args.soak_max_seconds,
        redis_url=args.redis_url,
        litellm_venv=args.litellm_venv,
        gateway_env=gateway_env,
        sanitizer=args.sanitizer,
        pii_bench=not args.no_pii_bench and not quick and not args.soak,
        startup_timeout_s=args.startup_timeout,
        mode="soak" if args.soak else ("quick" if quick else "full"),
        retries=args.retries if args.retries is not None else (1 if quick else 2),
        disturbed_share=args.disturbed_share,
        provider_model=args.provider_model,
    )
