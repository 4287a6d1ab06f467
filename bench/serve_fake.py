"""Serve one of the test doubles (fake provider or Langfuse emulator) in a process of its own.

Benchmarks must not count the doubles' CPU with the server under test, and the doubles must
not share a GIL with the load generator, so each runs here, alone, on uvloop + httptools. The
listening port (``--port 0`` lets the OS choose) is printed on stdout as ``port=N`` once the
socket listens; the process then serves until SIGTERM or SIGINT.

Idle keep-alive connections are kept for ``--keep-alive`` seconds (uvicorn's default is 5 s).
Real providers keep them far longer; with 5 s, a client's pooled connection that sat idle
between two measurement windows can be closed by the server just as the client reuses it,
and the benchmark would count the provider's hang-up as the server's error.

The Langfuse emulator keeps every span it receives; a benchmark sends hundreds of thousands,
so here it forgets its stored data every ``--keep-spans`` spans and only counts them. The
count is served at ``GET /bench/stats`` so a run can check that traces really arrived.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Iterable
from typing import Any

import orjson
import uvicorn

from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_otlp import SpanRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState, create_upstream_app

STATS_PATH = "/bench/stats"


class BoundedLangfuseState(LangfuseState):
    """Emulator state that counts spans and drops stored data before it grows without bound.

    With ``id_log``, the insertion ids of the spans it receives are appended to that file, one per
    line: a count that survives a restart of the emulator (the outage benchmark kills it).
    """

    def __init__(self, projects: dict[str, tuple[str, str]], keep_spans: int, id_log: str | None = None) -> None:
        super().__init__(projects)
        self.keep_spans = keep_spans
        self.spans_total = 0
        self._stored = 0
        self._id_log = open(id_log, "a", encoding="utf-8") if id_log else None  # noqa: SIM115 (the process's lifetime)

    def ingest(self, project_id: str, spans: Iterable[SpanRecord]) -> int:
        spans = list(spans)
        kept = super().ingest(project_id, spans)
        if self._id_log is not None:
            self._id_log.write("".join(f"{insertion_id}\n" for insertion_id in _insertion_ids(spans)))
            self._id_log.flush()
        with self.lock:
            self.spans_total += kept
            self._stored += kept
            if self._stored >= self.keep_spans:
                self.reset()
                self._stored = 0
        return kept


def _insertion_ids(spans: list[SpanRecord]) -> list[str]:
    ids = []
    for span in spans:
        raw = span.attributes.get("langfuse.trace.tags")
        if isinstance(raw, str):
            ids += [tag.removeprefix("insertion_id:") for tag in orjson.loads(raw) if tag.startswith("insertion_id:")]
    return ids


class StatsApp:
    """Answers ``GET /bench/stats`` with the emulator's span count; passes everything else on."""

    def __init__(self, inner: Any, state: BoundedLangfuseState) -> None:
        self.inner, self.state = inner, state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            body = orjson.dumps({"spans_total": self.state.spans_total})
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.inner(scope, receive, send)


def build_app(args: argparse.Namespace) -> Any:
    if args.kind == "upstream":
        upstream = UpstreamState(
            default_delay_ms=args.delay_ms,
            default_chunks=args.chunks,
            default_chunk_delay_ms=args.chunk_delay_ms,
            default_content=args.content,
            record_requests=False,
        )
        return create_upstream_app(upstream)
    projects = {args.project: (args.public_key, args.secret_key)}
    langfuse = BoundedLangfuseState(projects, args.keep_spans, args.id_log)
    return StatsApp(create_langfuse_app(state=langfuse), langfuse)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["upstream", "langfuse"])
    parser.add_argument("--port", type=int, default=0, help="0 lets the OS choose (printed on stdout)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="upstream: latency before answering")
    parser.add_argument("--chunks", type=int, default=3, help="upstream: content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="upstream: pause before each content chunk")
    parser.add_argument("--content", default=None, help="upstream: reply text instead of an echo of the prompt")
    parser.add_argument("--project", default="bench", help="langfuse: project id")
    parser.add_argument("--public-key", default="pk-lf-bench")
    parser.add_argument("--secret-key", default="sk-lf-bench")
    parser.add_argument("--keep-alive", type=int, default=300, help="seconds an idle connection stays open")
    parser.add_argument("--keep-spans", type=int, default=20_000, help="langfuse: forget stored data this often")
    parser.add_argument("--id-log", default=None, help="langfuse: append received insertion ids to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    config = uvicorn.Config(
        build_app(args),
        loop="uvloop",  # uvloop sets TCP_NODELAY on every connection
        http="httptools",
        lifespan="auto",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=args.keep_alive,
        timeout_graceful_shutdown=1,
    )
    print(f"port={sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
