"""pytest fixtures serving the fakes, for any test suite of the project.

Enable them from a ``conftest.py`` with ``from tests.fakes.fixtures import *``
(or ``pytest_plugins = ["tests.fakes.fixtures"]`` in the root conftest).  The
servers start once per session; the function-scoped fixtures reset their state
so every test starts clean.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .langfuse import FakeLangfuse
from .upstream import FakeUpstream

__all__ = [
    "FAKE_LANGFUSE_PROJECTS",
    "fake_langfuse",
    "fake_langfuse_server",
    "fake_upstream",
    "fake_upstream_server",
]

FAKE_LANGFUSE_PROJECTS: dict[str, tuple[str, str]] = {
    "proj-a": ("pk-lf-a", "sk-lf-a"),
    "proj-b": ("pk-lf-b", "sk-lf-b"),
}


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake provider with recorded traffic and defaults reset."""
    fake_upstream_server.state.reset()
    return fake_upstream_server


@pytest.fixture(scope="session")
def fake_langfuse_server() -> Iterator[FakeLangfuse]:
    with FakeLangfuse(FAKE_LANGFUSE_PROJECTS) as langfuse:
        yield langfuse


@pytest.fixture
def fake_langfuse(fake_langfuse_server: FakeLangfuse) -> FakeLangfuse:
    """The session's Langfuse emulator with data, faults and switches reset."""
    fake_langfuse_server.state.reset()
    return fake_langfuse_server
