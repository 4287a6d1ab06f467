"""A relayed stream's chunks fold back into the completion a non-streamed call would have returned."""

from __future__ import annotations

from typing import Any

from proxy_core.adapters.chunk_assembly import ChunkAssembler


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    header = {"id": "c1", "created": 7, "model": "m", "object": "chat.completion.chunk"}
    return {**header, "choices": list(choices), **extra}


def delta(index: int = 0, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish_reason}


def assemble(*chunks: dict[str, Any]) -> dict[str, Any]:
    assembler = ChunkAssembler()
    for item in chunks:
        assembler.add(item)
    return assembler.completion()


def test_text_is_joined_and_the_header_kept() -> None:
    completion = assemble(
        chunk(delta(role="assistant", content="")),
        chunk(delta(content="Hel")),
        chunk(delta(content="lo")),
        chunk(delta(finish_reason="stop")),
    )
    assert completion == {
        "id": "c1",
        "created": 7,
        "model": "m",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    }


def test_tool_call_arguments_are_joined_per_index() -> None:
    first = {"index": 0, "id": "t0", "type": "function", "function": {"name": "get", "arguments": '{"a"'}}
    second = {"index": 1, "id": "t1", "type": "function", "function": {"name": "put", "arguments": "{}"}}
    completion = assemble(
        chunk(delta(role="assistant", tool_calls=[first])),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}, second])),
        chunk(delta(finish_reason="tool_calls")),
    )
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "t0", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}},
        {"id": "t1", "type": "function", "function": {"name": "put", "arguments": "{}"}},
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_choices_stay_apart_and_usage_comes_from_the_last_chunk() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assembler = ChunkAssembler()
    for item in (
        chunk(delta(0, content="a"), delta(1, content="b")),
        chunk(delta(1, content="c", finish_reason="stop"), delta(0, content="d", finish_reason="length")),
        chunk(usage=usage),
    ):
        assembler.add(item)
    completion = assembler.completion()
    assert [c["message"]["content"] for c in completion["choices"]] == ["ad", "bc"]
    assert [c["finish_reason"] for c in completion["choices"]] == ["length", "stop"]
    assert completion["usage"] == usage
    assert assembler.usage == usage
    assert assembler.chunks == 3


def test_reasoning_and_refusal_are_kept_apart_from_content() -> None:
    completion = assemble(
        chunk(delta(reasoning_content="think ")),
        chunk(delta(reasoning_content="hard")),
        chunk(delta(refusal="no")),
    )
    message = completion["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None, "reasoning_content": "think hard", "refusal": "no"}


def test_an_empty_stream_is_an_empty_completion() -> None:
    assert assemble() == {"object": "chat.completion", "choices": []}


def test_text_past_the_budget_is_cut_with_a_marker_saying_how_much() -> None:
    assembler = ChunkAssembler(max_text_bytes=10)
    for text in ("abcd", "éfgh", "ijkl", "mnop"):  # 4 + 5 + 4 + 4 bytes
        assembler.add(chunk(delta(content=text)))
    assembler.add(chunk(delta(finish_reason="stop")))
    content = assembler.completion()["choices"][0]["message"]["content"]
    assert content == "abcdéfghi" + "\n[trace output cut at 10 bytes: 7 more bytes went to the client untraced]"
    assert assembler.chunks == 5


def test_a_character_is_never_cut_in_half() -> None:
    assembler = ChunkAssembler(max_text_bytes=5)
    assembler.add(chunk(delta(content="abcd"), delta(1, content="x")))
    assembler.add(chunk(delta(content="€€")))  # 3 bytes each: neither fits in the 1 byte left for index 0
    choices = assembler.completion()["choices"]
    assert (
        choices[0]["message"]["content"]
        == "abcd\n[trace output cut at 5 bytes: 6 more bytes went to the client untraced]"
    )
    assert choices[1]["message"]["content"] == "x"  # not cut itself: no marker
    assert assembler.budget.left == 0


def test_tool_call_arguments_count_toward_the_budget() -> None:
    call = {"index": 0, "id": "t0", "type": "function", "function": {"name": "get", "arguments": "x" * 100}}
    assembler = ChunkAssembler(max_text_bytes=53)
    assembler.add(chunk(delta(tool_calls=[call])))
    message = assembler.completion()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "get", "arguments": "x" * 50}
    assert message["content"].endswith("50 more bytes went to the client untraced]")


def test_a_stream_within_the_budget_is_kept_whole() -> None:
    assembler = ChunkAssembler(max_text_bytes=8)
    assembler.add(chunk(delta(content="12345678")))
    assert assembler.completion()["choices"][0]["message"]["content"] == "12345678"
    assert assembler.budget.omitted == 0
