"""An optional cache of identical non-streamed requests, per project, in the rollout store.

Off by default (the shipped configuration is "no cache"). A hit still goes through LiteLLM as a
replay of the stored answer, so it gets its own insertion id, its own trace and its usage and
cost; only the provider call is saved. Clients opt out per request with ``Cache-Control:
no-cache`` (or ``x-cache: no-cache``). A failing cache never fails a request.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from proxy_core.config_files import ResponseCacheSettings
from proxy_core.services.llm import LlmCall
from proxy_core.services.store import GuardedStore


def request_digest(call: LlmCall) -> str:
    """What makes two requests identical: model, deployment, messages and every parameter.

    A deployment that uses the caller's own provider key caches per key (the key only enters
    the hash): otherwise a caller whose key the provider would refuse, or never sees, could be
    served an answer another caller paid for.
    """
    material = {
        "model": call.model,
        "deployment": {k: v for k, v in call.deployment_params.items() if k != "api_key"},
        "caller_key": call.api_key,
        "api_base": call.api_base,
        "messages": call.messages,
        "params": call.params,
        "extra_body": call.extra_body,
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


class ResponseCache:
    def __init__(self, store: GuardedStore, settings: ResponseCacheSettings) -> None:
        self._store = store
        self._settings = settings

    async def lookup(self, project_id: str, call: LlmCall, allowed: bool) -> str | None:
        """The call's cache key when caching applies (setting ``call.replay`` on a hit), else None."""
        if not self._settings.enabled or not allowed:
            return None
        key = request_digest(call)
        cached = await self._store.cached_response(project_id, key)
        if cached is not None:
            try:
                replay: Any = orjson.loads(cached)
            except orjson.JSONDecodeError:
                return key
            if isinstance(replay, dict):
                call.replay = replay
        return key

    async def store(self, project_id: str, key: str, body: dict[str, Any]) -> None:
        await self._store.cache_response(project_id, key, orjson.dumps(body), self._settings.ttl_s)
