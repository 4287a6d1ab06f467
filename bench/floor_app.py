"""The floor: the least an HTTP app on the LiteLLM SDK can do per completion (chat, Responses, embeddings).

One FastAPI route that passes the body to ``litellm.acompletion`` and returns its answer as
JSON, or as server-sent events when ``stream`` is set. No validation, tracing or storage: a
gateway that calls the SDK as documented costs at least this much, so the gateway's CPU is
compared with it (the gateway also passes its own OpenAI SDK client, which the floor does not).
``BENCH_FLOOR_MODELS`` maps each model name to its upstream base URL (JSON object), and
``BENCH_FLOOR_PROVIDER_MODEL`` is the LiteLLM model sent there (as in the other targets' catalogues).
"""

import json
import os
from collections.abc import AsyncIterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

litellm.suppress_debug_info = True
MODELS: dict[str, str] = json.loads(os.environ.get("BENCH_FLOOR_MODELS", "{}"))
PROVIDER_MODEL = os.environ.get("BENCH_FLOOR_PROVIDER_MODEL", "openai/gpt-4o-mini")
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body = await request.json()
    api_base = MODELS[body.pop("model")]
    kwargs = {**body, "model": PROVIDER_MODEL, "api_base": api_base, "api_key": "sk-bench", "max_retries": 0}
    if not body.get("stream"):
        answer = await litellm.acompletion(**kwargs)
        return Response(orjson.dumps(answer.model_dump()), media_type="application/json")
    stream = await litellm.acompletion(**kwargs)

    async def events() -> AsyncIterator[bytes]:
        async for chunk in stream:
            yield b"data: " + orjson.dumps(chunk.model_dump()) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/v1/responses")
async def responses(request: Request) -> Response:
    """The Responses API the same way: ``litellm.aresponses``, its events as typed SSE."""
    body = await request.json()
    api_base = MODELS[body.pop("model")]
    kwargs = {**body, "model": PROVIDER_MODEL, "api_base": api_base, "api_key": "sk-bench", "max_retries": 0}
    if not body.get("stream"):
        answer = await litellm.aresponses(**kwargs)
        return Response(orjson.dumps(answer.model_dump(warnings=False)), media_type="application/json")
    stream = await litellm.aresponses(**kwargs)

    async def events() -> AsyncIterator[bytes]:
        async for event in stream:
            data = event.model_dump(warnings=False)
            yield b"event: " + str(data.get("type")).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    body = await request.json()
    api_base = MODELS[body.pop("model")]
    kwargs = {**body, "model": PROVIDER_MODEL, "api_base": api_base, "api_key": "sk-bench", "max_retries": 0}
    answer = await litellm.aembedding(**kwargs)
    return Response(orjson.dumps(answer.model_dump(warnings=False)), media_type="application/json")
