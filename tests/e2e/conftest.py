"""Fixtures of the process-level tests: the fake provider and the Langfuse emulator, in threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.process import PROJECT, flush_only_env
from tests.fakes.langfuse import create_langfuse_app
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app


@pytest.fixture
def fakes() -> Iterator[tuple[ServerThread, UpstreamState, ServerThread, LangfuseState]]:
    upstream_state = UpstreamState()
    langfuse_state = LangfuseState({PROJECT[0]: (PROJECT[1], PROJECT[2])})
    with (
        ServerThread(create_upstream_app(upstream_state)) as upstream,
        ServerThread(create_langfuse_app(state=langfuse_state)) as langfuse,
    ):
        yield upstream, upstream_state, langfuse, langfuse_state


@pytest.fixture
def flush_only(
    fakes: tuple[ServerThread, UpstreamState, ServerThread, LangfuseState],
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
) -> tuple[dict[str, str], LangfuseState]:
    """A traced gateway's environment whose spans leave only at shutdown, and the emulator's state."""
    upstream, _, langfuse, langfuse_state = fakes
    return flush_only_env(tmp_path, upstream.url, langfuse.url, redis_url, key_prefix), langfuse_state
