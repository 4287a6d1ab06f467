"""How each endpoint's stream ends: recorded before its terminal event, an in-band error otherwise."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from proxy_core.errors import StoreUnavailableError
from proxy_core.services import sse
from proxy_core.services.llm import CallInfo
from proxy_core.services.streaming import OpenedStream, relay


class Events:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.closed = False

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        for event in self._events:
            yield event

    async def aclose(self) -> None:
        self.closed = True

    @property
    def info(self) -> CallInfo:
        return CallInfo(prompt_tokens=1, completion_tokens=2)


async def run(
    events: list[dict[str, Any]], framing: sse.StreamFraming, fail: bool = False
) -> tuple[list[str], list[bytes]]:
    source = Events(events)
    chunks = aiter(source)
    first = await anext(chunks)
    log: list[str] = []

    async def on_complete(info: CallInfo) -> None:
        log.append(f"recorded after {len(frames)} frames")
        if fail:
            raise StoreUnavailableError("down")

    frames: list[bytes] = []
    async for frame in relay(
        OpenedStream(first, chunks, source), on_complete=on_complete, strip_usage=False, framing=framing
    ):
        frames.append(frame)
    assert source.closed
    return log, frames


RESPONSES = [
    {"type": "response.created"},
    {"type": "response.output_text.delta", "delta": "hi"},
    {"type": "response.completed"},
]


async def test_responses_are_recorded_before_the_completed_event() -> None:
    log, frames = await run(RESPONSES, sse.RESPONSES_FRAMING)
    assert log == ["recorded after 2 frames"]
    assert frames[-1] == b'event: response.completed\ndata: {"type":"response.completed"}\n\n'


async def test_a_store_failure_replaces_the_terminal_event_with_an_error_event() -> None:
    log, frames = await run(RESPONSES, sse.RESPONSES_FRAMING, fail=True)
    assert log == ["recorded after 2 frames"]
    assert len(frames) == 3
    assert frames[-1].startswith(b"event: error\ndata: ")
    event = orjson.loads(frames[-1].split(b"data: ", 1)[1])
    assert event["sequence_number"] == 2
    assert event["code"] == "store_unavailable"
    assert event["error"]["code"] == "store_unavailable"


async def test_the_error_event_follows_the_providers_numbering() -> None:
    """The provider's numbers are relayed as they are (here with gaps): the error event takes the
    number after the last one, so the numbers the client sees still only increase."""
    numbered = [{**event, "sequence_number": number} for event, number in zip(RESPONSES, (0, 4, 9), strict=True)]
    log, frames = await run(numbered, sse.RESPONSES_FRAMING, fail=True)
    assert log == ["recorded after 2 frames"]
    assert [orjson.loads(frame.split(b"data: ", 1)[1])["sequence_number"] for frame in frames] == [0, 4, 5]


async def test_a_stream_without_its_terminal_event_is_not_recorded() -> None:
    log, frames = await run([{"type": "message_start"}, {"type": "content_block_delta"}], sse.MESSAGES_FRAMING)
    assert log == []
    event = orjson.loads(frames[-1].split(b"data: ", 1)[1])
    assert event == {
        "type": "error",
        "error": {
            "message": "The provider's stream ended before it was complete.",
            "type": "api_error",
            "param": None,
            "code": "incomplete_stream",
        },
    }


async def test_chat_streams_are_recorded_at_the_end_before_done() -> None:
    log, frames = await run([{"choices": [{"delta": {"content": "a"}}]}], sse.CHAT_FRAMING)
    assert log == ["recorded after 1 frames"]
    assert frames[-1] == sse.DONE
