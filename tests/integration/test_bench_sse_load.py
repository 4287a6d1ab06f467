"""The long-streams benchmark's raw-socket SSE client counts what it reads, and fails what it must.

It replaces httpx in ``bench/long_streams.py``, so its verdicts carry the benchmark's "no error"
figure: a stream counts only if it is a 200 ending in ``[DONE]``; a refused request, a stream cut
mid-body and a body cut inside its chunked framing are errors. Run against the fake provider.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench.sse_load import run
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def _body(prompt: str) -> bytes:
    return json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()


def _load(upstream: FakeUpstream, prompt: str, streams: int, limit_s: float = 10.0) -> dict[str, Any]:
    url = f"{upstream.base_url}/chat/completions"
    return asyncio.run(run(url, _body(prompt), streams, limit_s))


def test_counts_every_chunk_of_every_stream(upstream: FakeUpstream) -> None:
    result = _load(upstream, "hello there [[chunks=5]] [[chunk_delay_ms=20]]", streams=6)
    assert result["streams"] == 6
    assert result["errors"] == 0
    assert result["chunks"] == 6 * 7  # role, 5 pieces of content, finish; [DONE] is not a chunk
    assert 0.1 <= float(result["stream_p50_ms"]) / 1000 < 5.0  # 5 × 20 ms of pacing at least


def test_a_refused_request_is_an_error(upstream: FakeUpstream) -> None:
    result = _load(upstream, "no [[status=429]]", streams=3)
    assert (result["streams"], result["errors"]) == (0, 3)
    assert str(result["first_error"]).startswith("HTTP/1.1 429")


def test_a_stream_cut_before_done_is_an_error(upstream: FakeUpstream) -> None:
    result = _load(upstream, "cut [[chunks=5]] [[cut_after=2]]", streams=2)
    assert (result["streams"], result["errors"]) == (0, 2)
    assert "before the end" in str(result["first_error"]) or "without [DONE]" in str(result["first_error"])


def test_a_stream_past_its_time_limit_is_an_error(upstream: FakeUpstream) -> None:
    result = _load(upstream, "slow [[chunks=3]] [[chunk_delay_ms=400]]", streams=2, limit_s=0.3)
    assert (result["streams"], result["errors"]) == (0, 2)
    assert str(result["first_error"]).startswith("TimeoutError")
