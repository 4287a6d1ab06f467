"""Long-lived streams on one gateway worker: errors, peak memory and CPU per chunk at 1 000 streams.

Agents hold streams open for as long as a slow provider takes. The promise checked here: one
gateway worker carries ``--streams`` (1 000) concurrent streams of ``--seconds`` (30 s) each with
no error, a resident set of at most ``--max-rss-mb`` (600 MB), and CPU per relayed chunk within
``--max-cpu-ratio`` (10 %) of the figure at ``--baseline`` (8) streams with the same pacing.

Everything runs as users run it (``bench/servers.py``): the fake provider in its own process,
streaming ``--chunks`` (60) chunks, one every ``seconds / chunks`` (500 ms); the Langfuse
emulator; one ``python -m proxy_core`` worker with Redis, the tracked route, tracing and PII
redaction on. The load is ``bench/sse_load.py`` in a process of its own, opening all the
streams at once over raw sockets and reading each to ``[DONE]`` (httpx's client cost grows with
the number of open connections until it, not the gateway, sets the pace: see that module).

The baseline is measured first, then the full count. Each phase reads the gateway's CPU
(the threads' run time in nanoseconds from ``/proc/<pid>/task/*/schedstat``: utime + stime
step in 10 ms ticks, too coarse for the baseline's fraction of a second; they are kept in the
JSON as a cross-check) from the client's start to its exit and samples its ``VmRSS``
every 250 ms; ``VmHWM`` after the phase is the process's lifetime peak. An idle gateway still
spends CPU (timers, trace export, Redis health), which at 8 streams would be a visible share of
the few hundred chunks, so the idle rate is measured over ``--idle-s`` before each phase and the
ratio is judged on CPU per chunk with it taken off (the raw figures are reported too). Half-way
through each phase ``/health`` is timed, and when the streams fill ``MAX_CONCURRENT_REQUESTS``,
one more completion is sent: it must be refused with a 503, which shows the limit counts the
streams exactly. The provider's CPU share is reported so a saturated fake shows itself, and the
CPU that processes outside the run took meanwhile (the machine's busy time minus the run's own),
so a phase disturbed by other work on a shared machine shows itself too.

Run: ``python -m bench.long_streams [--streams 1000] [--seconds 30] [--baseline 8]`` from the
repository root, with Redis on 127.0.0.1:6379. About two minutes. Prints a table, writes the raw
figures to ``bench/results/long-streams-latest.json``; exit status 0 when every target is met,
1 when one is missed or a stream failed, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.procfs import machine_cpu_seconds, tree_cpu_seconds, tree_cpu_seconds_fine, tree_memory
from bench.servers import (
    HOST,
    Fake,
    StartError,
    Target,
    gateway_target,
    start_fake,
    upstream_content,
)

RESULTS = Path(__file__).with_name("results")
MODEL = "bench-slow"
DEFAULT_MAX_CONCURRENT = 1000  # the gateway's default MAX_CONCURRENT_REQUESTS
_JSON = {"content-type": "application/json"}


@dataclass
class Phase:
    """One measured phase: ``streams`` opened together and read to the end."""

    streams: int
    client: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    gateway_cpu_s: float = 0.0
    gateway_cpu_ticks_s: float = 0.0
    idle_cpu_per_s: float = 0.0
    upstream_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    hwm_mb: float = 0.0
    health_ms: float = 0.0
    foreign_core_share: float = 0.0  # CPU other processes on the machine took meanwhile, in cores
    extra_status: int | None = None  # the completion past the limit, when the streams fill it
    extra_code: str = ""

    @property
    def chunks(self) -> int:
        return int(self.client.get("chunks", 0))

    @property
    def errors(self) -> int:
        """Streams that did not end in ``[DONE]`` (the client's errors), and any that never started."""
        done, failed = int(self.client.get("streams", 0)), int(self.client.get("errors", 0))
        return failed + max(0, self.streams - done - failed)

    def cpu_us_per_chunk(self, *, idle_corrected: bool) -> float:
        spent = self.gateway_cpu_s - (self.idle_cpu_per_s * self.elapsed_s if idle_corrected else 0.0)
        return 1e6 * spent / self.chunks if self.chunks else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "chunks": self.chunks,
            "errors": self.errors,
            "cpu_us_per_chunk_raw": round(self.cpu_us_per_chunk(idle_corrected=False), 1),
            "cpu_us_per_chunk": round(self.cpu_us_per_chunk(idle_corrected=True), 1),
            "upstream_core_share": round(self.upstream_cpu_s / self.elapsed_s, 3) if self.elapsed_s else 0.0,
        }


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it) to ``wanted`` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def write_body(run_dir: Path, *, stream: bool, extra: str = "") -> Path:
    """The main benchmark's chat body (a date, an e-mail address, a phone number: PII to redact)."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for health-plan claim questions."},
            {
                "role": "user",
                "content": "Summarise claim 55012, filed on 2024-03-09 for $1,284.50 after 3 visits, "
                "in two sentences for the member (jane.doe@example.org, (312) 555-0147)." + extra,
            },
        ],
        "temperature": 0.2,
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    path = run_dir / f"body{'-stream' if stream else ''}{'-fast' if extra else ''}.json"
    path.write_text(json.dumps(body))
    return path


class Bench:
    """The processes of a run and the two phases measured against them."""

    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.run_id = f"bench-ls-{secrets.token_hex(4)}"
        self.fakes: dict[str, Fake] = {}
        self.gateway: Target | None = None
        self.limit = DEFAULT_MAX_CONCURRENT
        self.stream_body = write_body(run_dir, stream=True)
        self.plain_body = write_body(run_dir, stream=False)
        self.redis_pid: tuple[int, ...] = ()

    def url(self, phase: str) -> str:
        assert self.gateway is not None
        return self.gateway.url(0, f"{self.run_id}-{phase}")

    def setup(self) -> None:
        args = self.args
        redis_pid = int(redis.Redis.from_url(args.redis_url, socket_timeout=2).info("server")["process_id"])
        self.redis_pid = (redis_pid,) if Path(f"/proc/{redis_pid}").exists() else ()
        delay_ms = 1000 * args.seconds / args.chunks
        upstream = ["upstream", "--chunks", str(args.chunks), "--chunk-delay-ms", str(delay_ms)]
        upstream += ["--content", upstream_content(args.chunks)]
        self.fakes["upstream"] = start_fake("upstream", upstream, self.run_dir)
        self.fakes["langfuse"] = start_fake("langfuse", ["langfuse"], self.run_dir)
        extra_env = {}
        if args.max_concurrent is not None:
            extra_env["MAX_CONCURRENT_REQUESTS"] = str(args.max_concurrent)
            self.limit = args.max_concurrent
        self.gateway = gateway_target(
            key="gateway",
            workers=1,
            run_dir=self.run_dir,
            models={MODEL: f"{self.fakes['upstream'].url}/v1"},
            provider_model="openai/gpt-4o-mini",
            langfuse_url=self.fakes["langfuse"].url,
            redis_url=args.redis_url,
            key_prefix=self.run_id,
            sanitizer="redact",
            extra_env=extra_env,
        )
        log("starting the gateway")
        self.gateway.start(self.run_dir, 90.0)
        self.warm_up()

    def warm_up(self) -> None:
        """One plain and a few unpaced streamed completions: the first calls pay for lazy imports."""
        fast = write_body(self.run_dir, stream=True, extra=" [[chunk_delay_ms=0]]")
        with httpx.Client(timeout=60) as client:
            answer = client.post(self.url("warmup"), content=self.plain_body.read_bytes(), headers=_JSON)
            if answer.status_code != 200:
                raise StartError(f"first completion answered {answer.status_code}: {answer.text[:300]}")
        result = client_result(self.client(self.url("warmup"), fast, self.args.baseline))
        if result["errors"] or result["streams"] != self.args.baseline:
            raise StartError(f"warm-up streams failed: {result}")

    def client(self, url: str, body: Path, streams: int) -> subprocess.Popen[bytes]:
        """The raw-socket stream client: ``streams`` streams opened at once, each read to its end."""
        argv = [sys.executable, "-m", "bench.sse_load", url, "--body-file", str(body)]
        argv += ["--streams", str(streams), "--timeout", str(self.args.seconds * 3 + 30)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def idle_rate(self, pid: int) -> float:
        before, started = tree_cpu_seconds_fine(pid), time.perf_counter()
        time.sleep(self.args.idle_s)
        return (tree_cpu_seconds_fine(pid) - before) / (time.perf_counter() - started)

    def phase(self, streams: int) -> Phase:
        """Open ``streams`` at once, read them to the end, and measure the gateway meanwhile."""
        assert self.gateway is not None
        pid, upstream_pid = self.gateway.pid(0), self.fakes["upstream"].process.pid
        result = Phase(streams=streams, idle_cpu_per_s=self.idle_rate(pid))
        result.rss_start_mb = tree_memory(pid).current_total_mb
        children_before = _children_cpu()
        machine_before, ours_before = machine_cpu_seconds()[0], self.our_cpu()
        cpu_before, ticks_before = tree_cpu_seconds_fine(pid), tree_cpu_seconds(pid)
        upstream_before = tree_cpu_seconds(upstream_pid)
        started = time.perf_counter()
        client = self.client(self.url(f"n{streams}"), self.stream_body, streams)
        probed = False
        peak = result.rss_start_mb
        while client.poll() is None:
            peak = max(peak, tree_memory(pid).current_total_mb)
            if not probed and time.perf_counter() - started >= self.args.seconds / 2:
                self.probe(result, streams)
                probed = True
            time.sleep(0.25)
        result.elapsed_s = time.perf_counter() - started
        result.gateway_cpu_s = tree_cpu_seconds_fine(pid) - cpu_before
        result.gateway_cpu_ticks_s = tree_cpu_seconds(pid) - ticks_before  # cross-check, 10 ms steps
        result.upstream_cpu_s = tree_cpu_seconds(upstream_pid) - upstream_before
        result.client = client_result(client)
        result.client_cpu_s = _children_cpu() - children_before
        foreign = machine_cpu_seconds()[0] - machine_before - (self.our_cpu() - ours_before)
        result.foreign_core_share = max(0.0, foreign) / result.elapsed_s
        result.rss_peak_mb = peak
        result.hwm_mb = tree_memory(pid).peak_total_mb
        return result

    def our_cpu(self) -> float:
        """CPU seconds of every process of the run (Redis included) and of its reaped clients; the
        rest of the machine's busy time is other work, which on a shared machine disturbs a phase."""
        pids = [fake.process.pid for fake in self.fakes.values()] + list(self.redis_pid)
        if self.gateway is not None:
            pids.append(self.gateway.pid(0))
        own = resource.getrusage(resource.RUSAGE_SELF)
        return sum(tree_cpu_seconds(pid) for pid in pids) + own.ru_utime + own.ru_stime + _children_cpu()

    def probe(self, result: Phase, streams: int) -> None:
        """Mid-phase: the gateway must answer its health route; past its limit, refuse one more."""
        assert self.gateway is not None
        base = f"http://{HOST}:{self.gateway.port}"
        with httpx.Client(timeout=30) as client:
            started = time.perf_counter()
            client.get(f"{base}/health").raise_for_status()
            result.health_ms = 1000 * (time.perf_counter() - started)
            if streams >= self.limit:
                answer = client.post(self.url("probe"), content=self.plain_body.read_bytes(), headers=_JSON)
                result.extra_status = answer.status_code
                result.extra_code = str(answer.json().get("error", {}).get("code", "")) if answer.status_code else ""

    def cleanup_redis(self) -> None:
        client = redis.Redis.from_url(self.args.redis_url, socket_timeout=5)
        for key in list(client.scan_iter(match=f"{self.run_id}:*", count=1000)):
            client.delete(key)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for fake in self.fakes.values():
            fake.process.stop()


def client_result(client: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The client's JSON tally, once it has exited."""
    out, err = client.communicate()
    if client.returncode != 0:
        raise RuntimeError(f"stream client failed ({client.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(args: argparse.Namespace, base: Phase, full: Phase) -> dict[str, Any]:
    """The three promises, each with its figure and whether it held."""
    ratio = full.cpu_us_per_chunk(idle_corrected=True) / base.cpu_us_per_chunk(idle_corrected=True)
    raw_ratio = full.cpu_us_per_chunk(idle_corrected=False) / base.cpu_us_per_chunk(idle_corrected=False)
    rss = max(full.rss_peak_mb, full.hwm_mb)
    return {
        "no_errors": base.errors == 0 and full.errors == 0,
        "rss_mb": round(rss, 1),
        "rss_ok": rss <= args.max_rss_mb,
        "cpu_ratio": round(ratio, 3),
        "cpu_ratio_raw": round(raw_ratio, 3),
        "cpu_ok": ratio <= 1 + args.max_cpu_ratio,
        "limit_refused_extra": full.extra_status == 503 if full.streams >= args.limit else None,
    }


def table(base: Phase, full: Phase, result: dict[str, Any]) -> str:
    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("streams ok / opened", lambda p: f"{p.streams - p.errors} / {p.streams}"),
        ("chunks read", lambda p: str(p.chunks)),
        (
            "stream p50 / p99 (s)",
            lambda p: f"{p.client['stream_p50_ms'] / 1000:.1f} / {p.client['stream_p99_ms'] / 1000:.1f}",
        ),
        ("first byte p50 / p99 (ms)", lambda p: f"{p.client['ttfb_p50_ms']:.0f} / {p.client['ttfb_p99_ms']:.0f}"),
        ("gateway CPU (s)", lambda p: f"{p.gateway_cpu_s:.2f}"),
        ("idle CPU (ms/s)", lambda p: f"{1000 * p.idle_cpu_per_s:.1f}"),
        ("CPU per chunk (µs)", lambda p: f"{p.cpu_us_per_chunk(idle_corrected=True):.0f}"),
        ("CPU per chunk, raw (µs)", lambda p: f"{p.cpu_us_per_chunk(idle_corrected=False):.0f}"),
        ("RSS start / peak (MB)", lambda p: f"{p.rss_start_mb:.0f} / {max(p.rss_peak_mb, p.hwm_mb):.0f}"),
        ("provider CPU (share of a core)", lambda p: f"{p.upstream_cpu_s / p.elapsed_s:.2f}"),
        ("client CPU (share of a core)", lambda p: f"{p.client_cpu_s / p.elapsed_s:.2f}"),
        ("/health mid-phase (ms)", lambda p: f"{p.health_ms:.1f}"),
        ("other processes (share of a core)", lambda p: f"{p.foreign_core_share:.2f}"),
    ]
    lines = [f"| figure | {base.streams} streams | {full.streams} streams |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {cell(base)} | {cell(full)} |" for name, cell in rows]
    lines.append("")
    lines.append(
        f"errors: {'none' if result['no_errors'] else 'YES'}; peak RSS {result['rss_mb']:.0f} MB "
        f"({'ok' if result['rss_ok'] else 'MISSED'}); CPU per chunk ×{result['cpu_ratio']:.2f} of the baseline "
        f"(raw ×{result['cpu_ratio_raw']:.2f}; {'ok' if result['cpu_ok'] else 'MISSED'})"
    )
    if result["limit_refused_extra"] is not None:
        lines.append(
            f"one completion past the {full.streams} streams: {full.extra_status} {full.extra_code}"
            f" ({'refused as it must be' if result['limit_refused_extra'] else 'NOT refused'})"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams of the full phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each stream")
    parser.add_argument("--chunks", type=int, default=60, help="content chunks per stream, evenly paced")
    parser.add_argument("--baseline", type=int, default=8, help="concurrent streams of the baseline phase")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds the idle CPU rate is measured over")
    parser.add_argument("--max-concurrent", type=int, default=None, help="the gateway's MAX_CONCURRENT_REQUESTS")
    parser.add_argument("--max-rss-mb", type=float, default=600.0)
    parser.add_argument("--max-cpu-ratio", type=float, default=0.10, help="allowed CPU-per-chunk increase")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=RESULTS / "long-streams-latest.json")
    args = parser.parse_args(argv)
    args.limit = args.max_concurrent if args.max_concurrent is not None else DEFAULT_MAX_CONCURRENT
    if args.streams < 1 or args.baseline < 1 or args.chunks < 1 or args.seconds <= 0:
        parser.error("--streams, --baseline and --chunks must be at least 1 and --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fds = raise_fd_limit(4 * args.streams + 1024)  # client and gateway: a socket each way per stream
    RESULTS.mkdir(exist_ok=True)
    run_dir = RESULTS / "run-long-streams"
    run_dir.mkdir(exist_ok=True)
    bench = Bench(args, run_dir)
    try:
        bench.setup()
        log(f"baseline: {args.baseline} streams of {args.seconds:.0f} s")
        base = bench.phase(args.baseline)
        log(f"full: {args.streams} streams of {args.seconds:.0f} s")
        full = bench.phase(args.streams)
    except (StartError, redis.RedisError, httpx.HTTPError) as exc:
        log(f"could not run: {exc}")
        return 2
    finally:
        bench.close()
        bench.cleanup_redis()
    result = verdict(args, base, full)
    document = {"args": {k: str(v) for k, v in vars(args).items()}, "fd_limit": fds, "verdict": result}
    document |= {"baseline": base.as_dict(), "full": full.as_dict()}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(table(base, full, result))
    met = result["no_errors"] and result["rss_ok"] and result["cpu_ok"] and result["limit_refused_extra"] is not False
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
