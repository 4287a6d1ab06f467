"""Trace delivery against the Langfuse emulator: outages spooled and replayed, 413s split, nothing lost."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

import httpx
import pytest
import redis.asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from proxy_core.adapters.memory_spool import MemorySpanSpool
from proxy_core.adapters.otlp_intake import LangfuseOtlpIntake
from proxy_core.adapters.otlp_json import OtlpJsonCodec, encode_fragment
from proxy_core.adapters.redis_spool import RedisSpanSpool, spool_keys
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.trace_delivery import TraceDelivery
from proxy_core.services.trace_ports import SpanSpool
from proxy_core.services.trace_projects import DeliveryTuning
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import PROJECTS, GatewayFactory, rollout_path

OTEL = "/api/public/otel"
FAST = DeliveryTuning(live_timeout_s=1.0, replay_timeout_s=2.0, lease_s=2.0, tick_s=0.05, backoff_base_s=0.05,
                      backoff_cap_s=0.2)  # fmt: skip


class _Capture(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def fragments(marker: str, count: int, *, content: str = "hello") -> list[bytes]:
    """``count`` encoded spans, each tagged with its own insertion id ``{marker}-{n}``."""
    capture = _Capture()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(capture))
    for n in range(count):
        span = provider.get_tracer("litellm").start_span(f"{marker}-{n}")
        span.set_attributes(
            {"langfuse.trace.tags": json.dumps([f"insertion_id:{marker}-{n}"]), "langfuse.observation.input": content}
        )
        span.end()
    provider.shutdown()
    return [encode_fragment(span, None) for span in capture.spans]


def arrived(langfuse: LangfuseState, marker: str, project: str = "proj-a") -> set[str]:
    """The insertion ids of ``marker`` the emulator holds (each once, however often it was sent)."""
    ids = set()
    for span in langfuse.spans(project):
        for tag in json.loads(str(span.attributes.get("langfuse.trace.tags", "[]"))):
            if tag.startswith(f"insertion_id:{marker}-"):
                ids.add(tag.removeprefix("insertion_id:"))
    return ids


def target(url: str, project: str = "proj-a", secret: str | None = None) -> LangfuseTarget:
    public_key, secret_key = PROJECTS[project]
    return LangfuseTarget(project, public_key, secret or secret_key, url)


async def until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def memory_spool() -> MemorySpanSpool:
    return MemorySpanSpool(max_bytes=64 * 1024 * 1024)


@pytest.fixture
async def redis_spool(redis_url: str, key_prefix: str) -> AsyncIterator[RedisSpanSpool]:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield RedisSpanSpool(client, prefix=key_prefix, max_bytes=64 * 1024 * 1024, ttl_s=600, timeout_s=5)
    await client.aclose()


def delivery_to(targets: Mapping[str, LangfuseTarget] | Callable[[], Mapping[str, LangfuseTarget]],
                spool: SpanSpool, tuning: DeliveryTuning = FAST) -> TraceDelivery:  # fmt: skip
    current = targets if callable(targets) else (lambda: targets)
    return TraceDelivery(
        targets=current, intake=LangfuseOtlpIntake(), spool=spool, codec=OtlpJsonCodec(), tuning=tuning
    )


async def test_spans_are_delivered_live(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, memory_spool: MemorySpanSpool
) -> None:
    marker = uuid.uuid4().hex[:8]
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url)}, memory_spool)
    delivery.start()
    delivery.submit("proj-a", fragments(marker, 25))
    await until(lambda: len(arrived(langfuse, marker)) == 25)
    await delivery.close(time.monotonic() + 2)
    counts = delivery.report()["projects"]["proj-a"]["spans"]
    assert (counts["queued"], counts["exported"], counts["spooled"], counts["dropped"]) == (25, 25, 0, 0)
    posts = langfuse.requests_to(f"{OTEL}/v1/traces")
    assert all(post.project_id == "proj-a" for post in posts)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_an_outage_is_spooled_then_replayed_when_langfuse_answers_again(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, memory_spool: MemorySpanSpool,
    status: int,
) -> None:  # fmt: skip
    marker = uuid.uuid4().hex[:8]
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url)}, memory_spool)
    delivery.start()
    langfuse.inject(OTEL, status, count=1_000_000, retry_after=0 if status == 429 else None)
    for start in range(0, 300, 50):
        delivery.submit("proj-a", fragments(f"{marker}{start}", 50))
        await asyncio.sleep(0.05)
    await until(lambda: delivery.report()["projects"]["proj-a"]["spans"]["spooled"] == 300)
    project = delivery.report()["projects"]["proj-a"]
    assert project["langfuse"] == "down"
    assert project["spool"]["spans"] == 300
    assert not delivery.backlog_full("proj-a")
    langfuse.clear_faults()
    await until(lambda: delivery.report()["projects"]["proj-a"]["spool"]["spans"] == 0)
    await delivery.close(time.monotonic() + 2)
    counts = delivery.report()["projects"]["proj-a"]["spans"]
    assert sum(len(arrived(langfuse, f"{marker}{start}")) for start in range(0, 300, 50)) == 300
    assert (counts["replayed"], counts["dropped"], counts["rejected"]) == (300, 0, 0)
    assert delivery.report()["projects"]["proj-a"]["langfuse"] == "up"


async def test_a_refused_connection_is_spooled_and_delivered_once_langfuse_is_back(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, memory_spool: MemorySpanSpool
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    where = {"proj-a": target(dead)}
    delivery = delivery_to(lambda: where, memory_spool)
    delivery.start()
    marker = uuid.uuid4().hex[:8]
    delivery.submit("proj-a", fragments(marker, 40))
    await until(lambda: delivery.report()["projects"]["proj-a"]["spans"]["spooled"] == 40)
    where["proj-a"] = target(langfuse_server[0].url)  # Langfuse is back (at its address)
    await until(lambda: delivery.report()["projects"]["proj-a"]["spans"]["replayed"] == 40)
    await delivery.close(time.monotonic() + 2)
    assert len(arrived(langfuse, marker)) == 40


async def test_413_splits_the_batch_and_a_span_over_the_limit_is_sent_cut(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, memory_spool: MemorySpanSpool
) -> None:
    """One oversized span must not take the others down: they share its batch, not its fate."""
    langfuse.max_ingest_bytes = 256 * 1024
    marker = uuid.uuid4().hex[:8]
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url)}, memory_spool)
    delivery.start()
    small = fragments(f"{marker}s", 40)
    big = fragments(f"{marker}b", 1, content="x" * 1_000_000)
    delivery.submit("proj-a", small[:20] + big + small[20:])
    await until(lambda: len(arrived(langfuse, f"{marker}s")) == 40 and len(arrived(langfuse, f"{marker}b")) == 1)
    await delivery.close(time.monotonic() + 2)
    counts = delivery.report()["projects"]["proj-a"]["spans"]
    assert (counts["exported"], counts["rejected"], counts["dropped"], counts["spooled"]) == (41, 0, 0, 0)
    assert counts["truncated"] >= 1
    (cut,) = [s for s in langfuse.spans("proj-a") if s.name == f"{marker}b-0"]
    assert str(cut.attributes["langfuse.observation.input"]).endswith("characters removed]")
    assert any(post.status == 413 for post in langfuse.requests_to(f"{OTEL}/v1/traces"))


async def test_refused_credentials_are_rejected_not_spooled(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, memory_spool: MemorySpanSpool
) -> None:
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url, secret="wrong")}, memory_spool)
    delivery.start()
    delivery.submit("proj-a", fragments("refused", 3))
    await until(lambda: delivery.report()["projects"]["proj-a"]["spans"]["rejected"] == 3)
    await delivery.close(time.monotonic() + 2)
    assert delivery.report()["projects"]["proj-a"]["spans"]["spooled"] == 0


async def test_a_full_spool_drops_what_does_not_fit_and_reports_a_full_backlog(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState
) -> None:
    marker = uuid.uuid4().hex[:8]
    batch = fragments(marker, 50)
    spool = MemorySpanSpool(max_bytes=sum(len(f) for f in batch[:30]))
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url)}, spool)
    delivery.start()
    langfuse.inject(OTEL, 503, count=1_000_000)
    delivery.submit("proj-a", batch)
    await until(lambda: delivery.report()["projects"]["proj-a"]["spans"]["dropped"] == 20)
    assert delivery.backlog_full("proj-a")
    assert delivery.report()["projects"]["proj-a"]["spans"]["spooled"] == 30
    langfuse.clear_faults()
    await until(lambda: len(arrived(langfuse, marker)) == 30)
    await until(lambda: not delivery.backlog_full("proj-a"))
    await delivery.close(time.monotonic() + 2)


async def test_another_replica_delivers_what_a_stopped_one_spooled(
    langfuse_server: tuple[ServerThread, LangfuseState],
    langfuse: LangfuseState,
    redis_spool: RedisSpanSpool,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
) -> None:
    """Spans left in the Redis spool by a replica that stopped during an outage reach Langfuse
    through another, once Langfuse answers again, and only in their own project."""
    marker = uuid.uuid4().hex[:8]
    targets = {name: target(langfuse_server[0].url, name) for name in ("proj-a", "proj-b")}
    first = delivery_to(targets, redis_spool)
    first.start()
    langfuse.inject(OTEL, 503, count=1_000_000)
    first.submit("proj-a", fragments(f"{marker}a", 120))
    first.submit("proj-b", fragments(f"{marker}b", 30))
    await until(lambda: first.totals()["spooled"] == 150)
    await first.close(time.monotonic() + 2)
    assert await redis_client.zcard(spool_keys(key_prefix, "proj-a")[0]) == 120
    for key in spool_keys(key_prefix, "proj-a"):
        assert 0 < await redis_client.ttl(key) <= 600, "every spool key carries a TTL"
    langfuse.clear_faults()
    second = delivery_to(targets, redis_spool)
    second.start()
    await until(
        lambda: len(arrived(langfuse, f"{marker}a")) == 120 and len(arrived(langfuse, f"{marker}b", "proj-b")) == 30
    )
    await until(lambda: second.totals()["replayed"] == 150)
    await second.close(time.monotonic() + 2)
    assert arrived(langfuse, f"{marker}b") == set(), "proj-b's spans went to proj-a"
    assert await redis_client.zcard(spool_keys(key_prefix, "proj-a")[0]) == 0
    assert int(await redis_client.get(spool_keys(key_prefix, "proj-a")[2]) or 0) == 0


async def test_a_replica_that_dies_mid_replay_leaves_its_lease_to_the_others(
    langfuse_server: tuple[ServerThread, LangfuseState], langfuse: LangfuseState, redis_spool: RedisSpanSpool
) -> None:
    marker = uuid.uuid4().hex[:8]
    await redis_spool.push("proj-a", fragments(marker, 10))
    claimed = await redis_spool.claim("proj-a", max_bytes=1 << 20, max_count=100, lease_s=1.0)
    assert len(claimed) == 10  # a replica took them, then died without acking
    assert await redis_spool.claim("proj-a", max_bytes=1 << 20, max_count=100, lease_s=1.0) == []
    delivery = delivery_to({"proj-a": target(langfuse_server[0].url)}, redis_spool)
    delivery.start()
    await until(lambda: len(arrived(langfuse, marker)) == 10, timeout_s=10)
    await delivery.close(time.monotonic() + 2)


async def test_a_full_backlog_refuses_tracked_calls_before_the_provider_and_serves_the_rest(
    gateway_factory: GatewayFactory, langfuse: LangfuseState, upstream_state: UpstreamState
) -> None:
    """A rollout whose trace can never be kept can never be complete: no tokens are spent on it."""
    gateway = gateway_factory(trace_spool_max_bytes=1024 * 1024, tracing_export_timeout_ms=500)
    langfuse.inject(OTEL, 503, count=1_000_000)
    big = "y" * 200_000
    headers = {"authorization": "Bearer sk-client"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as http:
        tracked = f"/{rollout_path('full')}/chat/completions"

        async def ask(path: str, text: str) -> httpx.Response:
            return await http.post(path, json={"model": "fake", "messages": [{"role": "user", "content": text}]})

        served = 0
        while (refused := await ask(tracked, big)).status_code == 200:  # 200 kB a span, a 1 MiB spool
            served += 1
            assert served < 30, "the full backlog never refused a tracked call"
            await asyncio.sleep(0.2)
        assert served >= 3
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "trace_backlog_full"
        assert int(refused.headers["retry-after"]) >= 1
        paid = len(upstream_state.completion_requests)
        assert (await ask(tracked, "again")).status_code == 503
        assert len(upstream_state.completion_requests) == paid, "a refused tracked call reached the provider"
        assert (await ask("/chat/completions", "untracked")).status_code == 200, "untracked calls are served"
        ready = (await http.get("/ready")).json()
        assert ready["tracing"]["projects"]["proj-a"]["spool"]["full"] is True
        assert ready["spans"]["dropped"] > 0
        langfuse.clear_faults()
        deadline = time.monotonic() + 30
        while (await ask(tracked, "after")).status_code != 200:
            assert time.monotonic() < deadline, "tracked calls were still refused once the backlog drained"
            await asyncio.sleep(0.3)
