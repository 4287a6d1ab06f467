"""Which inbound request ids are echoed, which traceparents are recorded, and the log context."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.request_context import (
    current_request,
    enter_request,
    leave_request,
    new_request_id,
    note_project,
    valid_request_id,
    valid_traceparent,
)
from proxy_core.services.pii.engine import PiiRedactor, PlaceholderMemo

VALID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value", [str(uuid.uuid4()), "abc", "req_1.2:3-x", "A" * 128, uuid.uuid4().hex, "01J9Z3ZK1Q7Y8V6X5W4T3S2R1P"]
)
def test_ids_are_echoed(value: str) -> None:
    assert valid_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, "", "A" * 129, "with space", "tab\t", "new\nline", "-dash-first", 'quote"', "ünï", "a/b", "a,b"]
)
def test_anything_else_is_not(value: str | None) -> None:
    assert valid_request_id(value) is None


@given(st.text(max_size=200))
def test_an_echoed_id_is_short_and_printable(value: str) -> None:
    echoed = valid_request_id(value)
    assert echoed is None or (len(echoed) <= 128 and echoed.isascii() and echoed.isprintable() and " " not in echoed)


def test_made_ids_are_uuids_and_differ() -> None:
    first, second = new_request_id(), new_request_id()
    assert first != second
    assert uuid.UUID(first).version == 4
    assert uuid.UUID(first).variant == uuid.RFC_4122
    assert str(uuid.UUID(second)) == second


@pytest.mark.parametrize(
    "value",
    [
        VALID_TRACEPARENT,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later",  # a later version may add fields
    ],
)
def test_w3c_traceparents_are_kept(value: str) -> None:
    assert valid_traceparent(value) == value
    assert valid_traceparent(f"  {value} ") == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase hex
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + "x" * 600,  # unbounded
    ],
)
def test_anything_else_is_dropped(value: str | None) -> None:
    assert valid_traceparent(value) is None


async def test_a_task_started_by_the_request_adds_to_its_context() -> None:
    assert current_request() is None
    context, token = enter_request("req-1")
    try:

        async def service() -> None:
            note_project("proj-a", "ins-1")

        await asyncio.ensure_future(service())  # a task of its own, with a copy of the context
        assert (context.project, context.insertion_id) == ("proj-a", "ins-1")
        assert current_request() is context
    finally:
        leave_request(token)
    assert current_request() is None
    note_project("proj-b", None)  # outside any request: nothing to note, nothing fails


@given(st.binary(min_size=24, max_size=24))
def test_a_recorded_traceparent_is_never_taken_for_pii(raw: bytes) -> None:
    """Its 16-hex parent id can look like a Medicare MBI; redacted, it would join nothing."""
    traceparent = f"00-{raw[:16].hex()}-{raw[16:].hex()}-01"
    assert PiiRedactor().redact(traceparent, PlaceholderMemo()) == traceparent


def test_the_parent_id_that_looked_like_an_mbi_is_kept() -> None:
    traceparent = "00-8f0afcfd70835c05d9eca1feb02a405a-d5c81ed0ad52baa7-01"
    assert PiiRedactor().redact(f"joined to {traceparent}.", PlaceholderMemo()) == f"joined to {traceparent}."
