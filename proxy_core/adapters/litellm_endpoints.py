"""The LiteLLM side of the endpoints other than chat: which function, which arguments, which answer.

* Responses go through ``litellm.aresponses``; an OpenAI-format provider receives them natively
  at its ``/responses``, any other through LiteLLM's chat bridge. A streamed one to an
  OpenAI-format provider asks for the stream in the body (``extra_body={"stream": True}``), not
  as ``stream=True``: for the latter LiteLLM 1.106.2 decides per model whether the stream is real
  (``should_fake_stream`` → ``supports_native_streaming``, which answers False for any model
  missing from its price map, such as a fine-tune), and fakes it, one whole answer and then made-up
  events. Asked in the body, it sends the stream request and returns its own streaming iterator,
  the one it uses for the models it knows: the provider's events relayed as they arrive, LiteLLM
  logging the call when ``response.completed`` arrives (the iterator is a stream to its wrapper
  whatever ``stream`` said, so the trace is marked streamed).
* Embeddings through ``litellm.aembedding``; text completions through ``litellm.atext_completion``.
* Anthropic messages through ``litellm.anthropic_messages``: for an ``openai/…`` model LiteLLM
  sends them on as a Responses call, for other providers through its chat bridge.

For ``aresponses`` and ``anthropic_messages`` LiteLLM sends ``metadata=`` to the provider (where
it is the API's own field), so the trace's tags and names travel as ``litellm_metadata=``.

Answers are turned into the dict the client receives and the ``CallInfo`` the rollout totals
need; each endpoint reports usage under its own names (``input_tokens``/``output_tokens`` for
Responses and Anthropic, ``prompt_tokens`` for the others).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import litellm
import orjson

from proxy_core.adapters.chunk_assembly import TextBudget
from proxy_core.adapters.litellm_deployments import DeploymentClients
from proxy_core.adapters.litellm_errors import translate_error
from proxy_core.adapters.litellm_origin import OPENAI_SDK_PROVIDERS, OriginClients, provider_of
from proxy_core.adapters.litellm_stream import StreamLogging, abandoned_reason, schedule
from proxy_core.adapters.litellm_stream import _stream_info as stream_info
from proxy_core.adapters.stream_limits import StreamIdleError, idle_bounded
from proxy_core.errors import GatewayError, InvalidRequestError
from proxy_core.services.llm import CallInfo, Completion, LlmCall, Operation

# The LiteLLM function and the Router method of each operation.
FUNCTIONS = {
    Operation.CHAT: "acompletion",
    Operation.RESPONSES: "aresponses",
    Operation.EMBEDDINGS: "aembedding",
    Operation.TEXT_COMPLETION: "atext_completion",
    Operation.MESSAGES: "anthropic_messages",
}
_ROUTER_METHODS = {**FUNCTIONS, Operation.MESSAGES: "aanthropic_messages"}
# Operations whose ``metadata`` LiteLLM sends to the provider: the trace's goes in ``litellm_metadata``.
_OWN_METADATA = frozenset({Operation.RESPONSES, Operation.MESSAGES})


def litellm_function(operation: Operation) -> Any:
    return getattr(litellm, FUNCTIONS[operation])


def router_method(router: Any, operation: Operation) -> Any:
    return getattr(router, _ROUTER_METHODS[operation])


# LiteLLM's text-completion handler makes a new HTTP client for every call given none, and never
# closes it: a deployment's own SDK client is passed where one can be made. (Its embeddings handler
# caches its clients, and is cheaper with its own: 3.38 against 3.60 ms of CPU per call.)
_SDK_OPERATIONS = frozenset({Operation.TEXT_COMPLETION})
# Its Responses and messages handlers take a shared client from a cache that outlives event loops
# (``litellm_deployments``): they get the gateway's own.
_HTTP_HANDLER_OPERATIONS = frozenset({Operation.RESPONSES, Operation.MESSAGES})


def endpoint_kwargs(
    call: LlmCall, kwargs: dict[str, Any], origins: OriginClients, deployments: DeploymentClients
) -> None:
    """Turn chat's keyword arguments (``_kwargs``) into those of ``call.operation``'s function."""
    del kwargs["messages"]
    trace_metadata = kwargs.pop("metadata")
    if call.operation in _OWN_METADATA:
        kwargs["litellm_metadata"] = trace_metadata
    else:
        kwargs["metadata"] = trace_metadata
    if call.operation is Operation.EMBEDDINGS:
        del kwargs["stream"]
    kwargs.update(call.inputs)
    if call.operation is Operation.RESPONSES and kwargs["stream"] and _streams_natively(call, kwargs):
        # Asked as ``stream`` LiteLLM fakes the stream of a model it has no information on (one
        # whole answer, events made up afterwards); asked in the body it sends the stream request
        # and relays the provider's own events (see the module docstring).
        kwargs["stream"] = False
        kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "stream": True}
    if call.api_base is not None:  # a client-chosen upstream: a client of the gateway's own, never following
        kwargs["client"] = _origin_client(call, kwargs["model"], origins)
    elif not call.routed:
        client = _deployment_client(call, kwargs, deployments)
        if client is not None:
            kwargs["client"] = client


def _streams_natively(call: LlmCall, kwargs: dict[str, Any]) -> bool:
    """Whether a streamed Responses call goes to an OpenAI-format provider's own ``/responses``
    (a single deployment, not a replayed answer): only there is the body's ``stream`` the API's."""
    if call.routed or call.replay is not None:
        return False
    api_base = kwargs.get("api_base")
    try:
        provider = provider_of(call.model, api_base if isinstance(api_base, str) else None)
    except Exception:
        return False  # LiteLLM will refuse the model itself, with its own error
    return provider in OPENAI_SDK_PROVIDERS


def _deployment_client(call: LlmCall, kwargs: dict[str, Any], deployments: DeploymentClients) -> object | None:
    if call.operation in _SDK_OPERATIONS:
        return deployments.for_call(call.deployment_params, call.model, kwargs.get("api_key"), call.max_retries)
    if call.operation in _HTTP_HANDLER_OPERATIONS:
        return deployments.http_handler_for(call.deployment_params, call.model)
    return None


def _origin_client(call: LlmCall, model: str, origins: OriginClients) -> object:
    """Responses and Anthropic messages go out through LiteLLM's HTTP handler, embeddings and text
    completions through the OpenAI SDK: each gets the non-following client of its kind."""
    if call.operation in (Operation.RESPONSES, Operation.MESSAGES):
        origins.for_call(model, call.api_base or "", call.api_key or "", max_retries=call.max_retries)  # refuses
        return origins.http_handler()
    if provider_of(model, call.api_base or "") not in OPENAI_SDK_PROVIDERS:
        raise InvalidRequestError(
            "Embeddings and text completions can be sent to an encoded_base_url only for openai/… models.",
            param="model",
            code="base_url_provider_unsupported",
        )
    return origins.for_call(model, call.api_base or "", call.api_key or "", max_retries=call.max_retries)


def _dump(response: Any) -> dict[str, Any]:
    if isinstance(response, dict):
        return response
    # LiteLLM's logging may swap a Responses usage model for a dict: pydantic would warn, not fail.
    dumped: dict[str, Any] = response.model_dump(warnings=False)
    return dumped


def token_usage(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Usage under chat's names, from any endpoint's (``input_tokens`` → ``prompt_tokens`` …)."""
    if not usage:
        return None
    return {
        "prompt_tokens": usage.get("prompt_tokens") or usage.get("input_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or usage.get("output_tokens") or 0,
        "cost": usage.get("cost"),
    }


def completion_of(call: LlmCall, response: Any) -> Completion:
    body = _dump(response)
    info = stream_info(response, token_usage(body.get("usage")), call.model)
    if call.operation is Operation.RESPONSES and "usage" in body and body["usage"] is not None:
        body["usage"].pop("cost", None)  # LiteLLM's own addition, not a field of the API
    return Completion(body, info)


class EventStream:
    """A LiteLLM stream of any operation as event dicts, remembering usage for its ``CallInfo``.

    Responses events keep the provider's ``sequence_number``; a stream whose first event has none
    is numbered from 0 here (LiteLLM's made-up streams: the chat bridge's, or an answer it was
    asked to stream as ``stream`` for a model it has no information on).
    Text-completion chunks get ``""`` for a choice's missing text, as OpenAI sends. Anthropic
    events arrive as the SSE bytes LiteLLM wrote and are parsed back into dicts.

    LiteLLM logs the call when its stream ends; one closed before that (the client went away,
    the gateway stopped it) is logged here as abandoned, with the text received as its output.
    """

    def __init__(self, wrapper: Any, call: LlmCall, logging: StreamLogging) -> None:
        self._wrapper = wrapper
        self._operation = call.operation
        self._model = call.model
        self._logging = logging
        self._usage: dict[str, Any] = {}
        self._text: list[str] = []
        self._budget = TextBudget(logging.limits.max_trace_bytes)
        self._chunks = 0
        self._ended = False
        self._stopped: str | None = None  # why the gateway ended the stream (the provider went silent)

    async def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        try:
            async for event in self._events():
                self._chunks += 1
                yield event
        except StreamIdleError as exc:
            self._stopped = str(exc)  # traced by ``aclose``, which the relay always calls
            raise
        except GatewayError:
            self._ended = True
            raise
        except Exception as exc:
            self._ended = True
            raise translate_error(exc) from exc
        self._ended = True

    async def _events(self) -> AsyncGenerator[dict[str, Any], None]:
        if self._operation is Operation.MESSAGES:
            async for event in _sse_events(self._provider_chunks()):
                self._note_messages(event)
                yield event
            return
        sequence = 0
        renumber: bool | None = None  # decided by the first event
        async for chunk in self._provider_chunks():
            data = _dump(chunk)
            if self._operation is Operation.RESPONSES:
                # LiteLLM's event models keep ``type`` as its str enum, whose ``str()`` (the SSE
                # ``event:`` line) is the member's name, not the type
                data["type"] = getattr(data.get("type"), "value", data.get("type"))
                if renumber is None:
                    renumber = not isinstance(data.get("sequence_number"), int)
                if renumber:
                    data["sequence_number"] = sequence
                    sequence += 1
                self._note_responses(data)
            else:
                _fill_text(data)
                first = (data.get("choices") or [])[:1]
                self._text.extend(self._budget.take(choice.get("text") or "") for choice in first)
                if data.get("usage"):
                    self._usage = dict(data["usage"])
            yield data

    def _provider_chunks(self) -> AsyncGenerator[Any, None]:
        return idle_bounded(self._wrapper, self._logging.limits.idle_timeout_s)

    def _note_responses(self, event: dict[str, Any]) -> None:
        if event.get("type") == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self._text.append(self._budget.take(event["delta"]))
        response = event.get("response")
        if event.get("type") in ("response.completed", "response.incomplete") and isinstance(response, dict):
            usage = response.get("usage")
            if isinstance(usage, dict):
                self._usage = dict(usage)
                usage.pop("cost", None)

    def _note_messages(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("text"), str):
            self._text.append(self._budget.take(delta["text"]))
        message = event.get("message")
        usage = message.get("usage") if isinstance(message, dict) else event.get("usage")
        if isinstance(usage, dict):
            self._usage.update({key: value for key, value in usage.items() if value})

    async def aclose(self) -> None:
        details = getattr(_logging_object(self._wrapper), "model_call_details", None)
        if not self._ended and self._logging.tracing is not None and isinstance(details, dict):
            self._ended = True
            text = "".join(self._text) + (self._budget.marker() if self._budget.omitted else "")
            partial = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
            reason = self._stopped or abandoned_reason(self._chunks)
            schedule(self._logging.pending, self._logging.tracing.log_abandoned(details, partial, reason))
        await _close_stream(self._wrapper)

    @property
    def info(self) -> CallInfo:
        return stream_info(self._wrapper, token_usage(self._usage), self._model)


async def _close_stream(stream: Any) -> None:
    """Close the provider connection under a stream that may have ended early.

    LiteLLM's Responses iterator has no ``aclose`` (its HTTP response is closed only when read to
    the end) and its text-completion wrapper keeps the chat stream it translates: each is closed
    through what it holds, or the provider connection stays taken until garbage collection.
    """
    for candidate in (stream, getattr(stream, "completion_stream", None)):
        close = getattr(candidate, "aclose", None)
        if close is not None:
            await close()
            return
    response = getattr(stream, "response", None)
    if response is not None and hasattr(response, "aclose"):
        await response.aclose()


def _logging_object(stream: Any) -> Any:
    """The call's LiteLLM logging object, wherever the stream keeps it: on the Responses and text
    iterators themselves; for Anthropic messages, on the Responses iterator (``openai/…``) or the
    wrapper's logging object (chat bridge) under LiteLLM's byte stream."""
    found = getattr(stream, "logging_obj", None)
    if found is not None:
        return found
    bridged = getattr(getattr(stream, "_wrapper", None), "responses_stream", None)
    if bridged is not None:
        return getattr(bridged, "logging_obj", None)
    return getattr(getattr(stream, "_anthropic_wrapper", None), "litellm_logging_obj", None)


def _fill_text(chunk: dict[str, Any]) -> None:
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("text") is None:
            choice["text"] = ""
            choice.pop("reasoning_content", None)


async def _sse_events(stream: Any) -> AsyncGenerator[dict[str, Any], None]:
    """The ``data`` of each SSE event in a stream of byte chunks (events may span chunks)."""
    buffer = b""
    async for chunk in stream:
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            data = b"".join(line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:"))
            if data:
                yield orjson.loads(data)


__all__ = [
    "FUNCTIONS",
    "EventStream",
    "completion_of",
    "endpoint_kwargs",
    "litellm_function",
    "router_method",
]
